"""`ratchet report`: a shipped scenario's run, driven by the real CLI on a file clock, as
one self-contained page — checked as text, then opened in real headless Chromium."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, Request

from ui_harness import HOSTILE, Cli, screenshot

pytestmark = pytest.mark.slow  # a scenario of a dozen CLI commands (once per session), and a browser


def report_of(cli: Cli, tmp_path: Path, run_id: str = "renewal-acme") -> Path:
    target = tmp_path / f"{run_id}.html"
    done = cli("report", run_id, "-o", str(target))
    assert done.stdout.strip() == str(target)
    return target


def test_the_page_tells_the_story_with_people_gaps_escalation_and_verification(renewal: Cli, tmp_path: Path) -> None:
    page = report_of(renewal, tmp_path).read_text()

    text = html.unescape(re.sub(r"<[^>]+>", " ", page))
    assert "waited 2 d 1 h for alice or bob" in text  # 03-02 09:00 -> 03-04 10:00, the wait that ran out
    assert "waited 1 d 20 h for alice or bob" in text  # the second wait, until alice
    assert "escalated for 1 h, waiting for a person to resolve it" in text
    assert re.search(r"escalated\s+review\s+timeout", " ".join(text.split()))
    assert re.search(r"resolved\s+carol \[unverified\]\s+retry “alice is back”", " ".join(text.split()))
    assert re.search(r"trigger_received\s+review\s+alice \[unverified\]\s+approve", " ".join(text.split()))
    assert "approve “price ok for 40 seats”" in text
    assert "+ seats = 40" in text  # what alice's approval changed in the data
    assert "verified" in text and "hash chain of all 19 records" in text
    assert re.search(r"sealed\s+\d+ seals by the home's key; sealed through line 18", " ".join(text.split()))
    # the path taken: draft -> review -> send -> sent, drawn as taken; rejected never entered
    for state in ("draft", "review", "send", "sent"):
        assert re.search(rf'<g class="state visited[^"]*" data-state="{state}"', page), state
    assert re.search(r'<g class="state final" data-state="rejected"', page)
    assert len(re.findall(r'<path class="edge taken"', page)) == 4  # ok, approve, ok + the start arrow


def test_hostile_journal_text_is_shown_as_text_never_as_markup(renewal: Cli, tmp_path: Path) -> None:
    page = report_of(renewal, tmp_path, "renewal-evil").read_text()

    assert "<script" not in page and "<img" not in page  # in the comment, and in the data
    assert page.count("&lt;script&gt;window.__pwned = 1&lt;/script&gt;&lt;img src=") == 2
    assert "default-src 'none'" in page  # and the page forbids any fetch or script anyway


def test_an_unknown_run_or_an_unwritable_file_is_one_line_and_exit_1(renewal: Cli, tmp_path: Path) -> None:
    done = renewal("report", "no-such-run", "-o", str(tmp_path / "x.html"), check=False)
    assert done.returncode == 1
    assert done.stderr.startswith("ratchet: error: no run 'no-such-run'") and done.stderr.count("\n") == 1
    assert not (tmp_path / "x.html").exists()
    nowhere = tmp_path / "missing" / "x.html"
    done = renewal("report", "renewal-acme", "-o", str(nowhere), check=False)
    assert (done.returncode, done.stderr) == (
        1, f"ratchet: error: {nowhere}: cannot write the page (No such file or directory); choose another -o FILE\n")


def open_offline(page: Page, target: Path) -> list[str]:
    """Open the file; return the URL of every request the page made."""
    requests: list[str] = []

    def record(request: Request) -> None:
        requests.append(request.url)

    page.on("request", record)
    page.goto(target.as_uri())
    page.wait_for_load_state("load")
    return requests


def test_hostile_text_stays_inert_in_chromium(renewal: Cli, tmp_path: Path, page: Page) -> None:
    target = report_of(renewal, tmp_path, "renewal-evil")
    assert open_offline(page, target) == [target.as_uri()]  # the hostile <img> fetched nothing
    assert page.evaluate("window.__pwned") is None  # and no script of it ran
    approval = page.locator("#timeline tr.person")
    assert HOSTILE in approval.inner_text()  # shown, as text: in the comment...
    assert f"+ note = {HOSTILE}" in approval.inner_text()  # ...and in the data


def test_the_page_opens_in_chromium_with_no_request_but_itself(renewal: Cli, tmp_path: Path, page: Page) -> None:
    target = report_of(renewal, tmp_path)

    assert open_offline(page, target) == [target.as_uri()]  # no font, script, image or stylesheet from anywhere
    timeline = page.locator("#timeline")
    assert timeline.locator("tr.person td.who").inner_text() == "alice [unverified]"  # in-process, no people file
    escalation = timeline.locator("tr.escalation")
    assert escalation.count() == 1 and "timeout" in escalation.inner_text()
    assert "carol" in timeline.locator("tr.resolution").inner_text()
    assert page.locator("#timeline tr.gap").first.inner_text().strip("— ").startswith("waited 2 d 1 h")
    taken = page.locator("#diagram svg .state.visited").evaluate_all("nodes => nodes.map(n => n.dataset.state)")
    assert taken == ["draft", "review", "send", "sent"]
    assert page.locator("#diagram svg .state.current").get_attribute("data-state") == "sent"
    assert page.locator("#verification .badge").all_inner_texts() == ["verified", "sealed"]
    screenshot(page, tmp_path, "report.png")
