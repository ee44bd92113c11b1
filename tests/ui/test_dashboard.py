"""`ratchet ui`: a real server (a subprocess on a free port) over a home driven by the
real CLI, looked at in real headless Chromium: lists, filters, run pages, live updates."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from ui_harness import Cli, renewal_story, screenshot, ui_server

pytestmark = pytest.mark.slow  # a dozen CLI commands and a browser: about 10 s


@pytest.fixture
def busy(tmp_path: Path) -> Cli:
    """Six runs: three finished (one after an escalation), one escalated, two waiting."""
    cli = renewal_story(Cli(tmp_path / "busy"))
    cli.at("2026-03-06T08:00:00Z")
    for customer in ("globex", "initech"):
        cli("run", "renewal_review", "--input", f"customer={customer}", "--id", f"renewal-{customer}")
    cli("run", "invoice", "--input", "customer=umbrella", "--id", "inv-1001")
    cli("run", "customer_onboarding", "--input", "customer=hooli", "--id", "onboarding-hooli")
    cli.at("2026-03-07T09:00:00Z")("approve", "renewal-initech", "--by", "bob")
    cli("supervise", "--once")  # initech finishes
    cli.at("2026-03-08T09:00:00Z")("supervise", "--once")  # globex's wait ran out: escalated
    cli("run", "renewal_review", "--input", "customer=wayne", "--id", "renewal-wayne")
    return cli


def test_lists_filters_opens_a_run_and_follows_it_live(busy: Cli, page: Page, tmp_path: Path) -> None:
    with ui_server(busy) as url:
        page.goto(url + "/")
        runs = page.locator("#runs tbody tr")
        expect(runs).to_have_count(6)
        assert page.locator("#counts a").first.inner_text().split() == ["6", "ALL"]
        assert page.locator("[data-count=finished] b").inner_text() == "3"
        assert page.locator("[data-count=escalated] b").inner_text() == "1"
        expect(page.locator("#live-badge")).to_have_text("live")
        screenshot(page, tmp_path, "dashboard.png")

        page.select_option("#filter-status", "escalated")
        page.click("form.filters button")
        expect(runs).to_have_count(1)
        assert runs.first.get_attribute("data-run") == "renewal-globex"
        page.select_option("#filter-status", "waiting")
        page.click("form.filters button")
        expect(runs).to_have_count(2)
        page.select_option("#filter-status", "")
        page.select_option("#filter-waiting_on", "alice")
        page.click("form.filters button")
        expect(runs).to_have_count(1)
        assert runs.first.get_attribute("data-run") == "renewal-wayne"

        page.goto(url + "/?status=waiting")
        page.click("text=onboarding-hooli")
        expect(page.locator("h1")).to_have_text("Run onboarding-hooli")
        expect(page.locator("#run-status")).to_have_text("waiting")
        page.evaluate("window.__same_page = true")  # gone if the page were reloaded
        before = page.locator("#timeline tr[data-seq]").count()
        listing = page.context.new_page()  # the dashboard, open meanwhile in another tab
        listing.goto(url + "/")
        expect(listing.locator("#live-badge")).to_have_text("live")
        listing.evaluate("window.__same_page = true")
        hooli = listing.locator("#runs tr[data-run=onboarding-hooli] .badge")
        expect(hooli).to_have_text("waiting")

        busy("send", "onboarding-hooli", "reply", "--by", "crm", "--data", "team_size=12")
        busy("supervise", "--once")

        expect(page.locator("#run-status")).to_have_text("finished", timeout=15_000)
        reply = page.locator("#timeline tr.person")
        expect(reply).to_have_count(1)
        assert "crm" in reply.inner_text() and "+ team_size = 12" in reply.inner_text()
        assert page.locator("#timeline tr[data-seq]").count() > before
        assert page.locator("#timeline tr.new").count() >= 1  # the new records flash
        assert page.evaluate("window.__same_page") is True  # updated in place, never reloaded
        expect(hooli).to_have_text("finished")  # the list follows too
        assert listing.locator("[data-count=finished] b").inner_text() == "4"
        assert listing.evaluate("window.__same_page") is True


def test_lists_as_json_hostile_text_inert_and_nothing_can_be_posted(renewal: Cli) -> None:
    with ui_server(renewal) as url:
        with urllib.request.urlopen(url + "/runs.json?status=finished") as response:
            found = json.load(response)
        assert (found["total"], found["matched"], found["counts"]) == (2, 2, {"finished": 2})
        assert sorted((row["run_id"], row["outcome"]) for row in found["runs"]) == [
            ("renewal-acme", "renewed"), ("renewal-evil", "renewed")]
        with urllib.request.urlopen(url + "/runs.json?status=waiting") as response:
            assert json.load(response)["matched"] == 0
        for path in ("/", "/runs/renewal-acme"):
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(urllib.request.Request(url + path, method="POST"))
            refused.value.close()
            assert refused.value.code == 405
        with urllib.request.urlopen(url + "/runs/renewal-evil") as response:
            evil = response.read().decode()
            policy = response.headers["Content-Security-Policy"]
        assert evil.count("<script") == 1 and '<script src="/live.js"></script>' in evil  # only our own
        assert "<img" not in evil and "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in evil
        assert "default-src 'none'" in policy and "script-src 'self'" in policy
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(url + "/runs/no-such-run")
        missing.value.close()
        assert missing.value.code == 404
