"""`ratchet ui` shows the messages sent to a run and not applied yet, live: sending one (an
inbox file: no journal grows) updates the open page in place, and applying it clears it. A real
server and real headless Chromium over a home driven by the real CLI."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from ui_harness import HOSTILE, Cli, ui_server

pytestmark = pytest.mark.slow  # a few CLI commands and a browser


def test_a_queued_message_appears_live_escaped_and_goes_when_applied(tmp_path: Path, page: Page) -> None:
    cli = Cli(tmp_path / "queued").at("2026-03-02T09:00:00Z")
    for run_id in ("renewal-a", "renewal-b"):
        cli("run", "renewal_review", "--input", f"customer={run_id}", "--id", run_id)
    with ui_server(cli) as url:
        page.goto(url + "/")
        expect(page.locator("#live-badge")).to_have_text("live")
        page.evaluate("window.__same_page = true")  # gone if the page were reloaded
        a = page.locator("#runs tr[data-run=renewal-a] .queued")
        b = page.locator("#runs tr[data-run=renewal-b] .queued")
        expect(a).to_have_count(0)

        cli("approve", "renewal-a", "--by", "alice")
        (cli.home / "inbox" / "evil.json").write_text(json.dumps({"run": "renewal-b", "trigger": "approve",
                                                                  "by": HOSTILE}))
        expect(a).to_have_text("queued 0 s: approve by alice", timeout=15_000)
        expect(b).to_contain_text("approve by <script>window.__pwned = 1</script>")  # shown as text
        assert page.evaluate("window.__pwned === undefined && window.__same_page === true")
        with urllib.request.urlopen(url + "/runs.json") as response:
            runs = {row["run_id"]: row for row in json.load(response)["runs"]}
        assert [(q["asks"], q["by"], q["where"]) for q in runs["renewal-a"]["queued"]] == [
            ("approve", "alice", "inbox")]

        cli("supervise", "--once")  # alice's approval applied; the hostile sender refused (not an approver)
        expect(a).to_have_count(0, timeout=15_000)
        expect(b).to_have_count(0)
        expect(page.locator("#runs tr[data-run=renewal-a] .badge")).to_have_text("finished")
        assert page.evaluate("window.__same_page") is True
