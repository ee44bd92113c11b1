"""Fixtures of the report and dashboard tests: a home driven by the real `ratchet` command
on a file clock, and a real headless Chromium (Debian's `chromium`, driven by Playwright;
never a downloaded browser)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from ui_harness import CHROMIUM, CHROMIUM_ARGS, HOSTILE, Cli, renewal_story


@pytest.fixture(scope="session")
def renewal(tmp_path_factory: pytest.TempPathFactory) -> Cli:
    """A home with two finished renewal_review runs, shared (tests only read it):
    `renewal-acme` (`renewal_story`), and `renewal-evil`, approved by bob with a hostile
    comment and a hostile data value."""
    cli = renewal_story(Cli(tmp_path_factory.mktemp("renewal")))
    cli("run", "renewal_review", "--input", "customer=evil", "--id", "renewal-evil")
    cli("approve", "renewal-evil", "--by", "bob", "--comment", HOSTILE, "--data", f"note={HOSTILE}")
    cli("supervise", "--once")
    return cli


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does)"
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    yield page
    context.close()
