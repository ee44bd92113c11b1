"""A backlog of inbox files for one run (its supervisor down) keeps the dashboard's page small:
the row names the oldest message, says how many more, and lists the first keys only (it listed
every key in the row's title: 10,000 files made a 480 KB page, sent again on every change);
a long trigger or sender is cut. runs.json keeps every message, as sent. A real `ratchet ui`."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

from ui_harness import Cli, ui_server

BACKLOG = 2000


def test_a_backlog_of_queued_files_keeps_the_dashboard_small(tmp_path: Path) -> None:
    cli = Cli(tmp_path / "backlog").at("2026-03-02T09:00:00Z")
    cli("run", "renewal_review", "--input", "customer=acme", "--id", "renewal-a")
    inbox = cli.home / "inbox"
    for n in range(BACKLOG):
        message = {"run": "renewal-a", "trigger": "approve", "by": "alice" if n else "x" * 5000}
        (inbox / f"20260302T0800{n:06}Z-renewal-a-approve-{n:06x}.json").write_text(json.dumps(message))
    with ui_server(cli) as url:
        with urllib.request.urlopen(url + "/") as response:
            page = response.read().decode()
        with urllib.request.urlopen(url + "/runs.json") as response:
            [row] = json.load(response)["runs"]
    [shown] = re.findall(r'<span class="queued" title="([^"]*)">([^<]*)</span>', page)
    title, text = shown
    assert title.count(".json") == 10 and title.endswith(", …"), title[:300]
    assert text.endswith(f"approve by {'x' * 39}… (+{BACKLOG - 1} more)"), text[:300]
    assert len(page) < 20_000, len(page)
    assert len(row["queued"]) == BACKLOG and row["queued"][0]["by"] == "x" * 5000
