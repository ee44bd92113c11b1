"""The report and dashboard tests' toolkit: the real `ratchet` command on a home and a file
clock, a scenario, a real `ratchet ui` server on a free port, screenshots."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from playwright.sync_api import Page

from waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
RATCHET = str(Path(sys.executable).parent / "ratchet")  # the venv's console script
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
# Where to write the README's screenshots (RATCHET_SCREENSHOTS=docs); else only under tmp_path.
SCREENSHOTS = os.environ.get("RATCHET_SCREENSHOTS")
HOSTILE = '<script>window.__pwned = 1</script><img src="http://192.0.2.1/x.png" onerror="window.__pwned = 2">'


class Cli:
    """The `ratchet` command on one home, as a user types it, at times the test chooses."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.home = folder / "home"
        self.clock = folder / "clock"
        self.env = {**{k: v for k, v in os.environ.items() if not k.startswith("RATCHET")},
                    "RATCHET_HOME": str(self.home), "RATCHET_CLOCK_FILE": str(self.clock),
                    "RATCHET_LEDGER": str(folder / "ledger.jsonl")}

    def at(self, moment: str) -> Cli:
        self.clock.write_text(moment + "\n")
        return self

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([RATCHET, *args], capture_output=True, text=True, env=self.env, cwd=ROOT, timeout=60)
        if check:
            assert done.returncode == 0, f"ratchet {' '.join(args)}: {done.stdout}{done.stderr}"
        return done


def renewal_story(cli: Cli, run_id: str = "renewal-acme") -> Cli:
    """renewal_review: drafted, the 2-day wait runs out and escalates, carol resolves it
    (retry: wait again), and 1 d 20 h later alice approves it."""
    cli.at("2026-03-02T09:00:00Z")("run", "renewal_review", "--input", "customer=acme", "--id", run_id, "--by", "dana")
    cli.at("2026-03-04T10:00:00Z")("supervise", "--once")
    cli.at("2026-03-04T11:00:00Z")("resolve", run_id, "retry", "--by", "carol", "--comment", "alice is back")
    cli("supervise", "--once")
    cli.at("2026-03-06T07:00:00Z")("approve", run_id, "--by", "alice", "--comment", "price ok for 40 seats",
                                   "--data", "seats=40")
    cli("supervise", "--once")
    return cli



def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def ui_server(cli: Cli) -> Iterator[str]:
    """A real `ratchet ui` on a free port; yields its URL."""
    port = free_port()
    log = cli.home.parent / f"ui-{port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([RATCHET, "ui", "--port", str(port)], env=cli.env, cwd=ROOT,
                                stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert proc.poll() is None, f"ratchet ui exited: {log.read_text()}"
        try:
            with urllib.request.urlopen(url + "/runs.json", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    try:
        wait_for(up, what="ratchet ui to answer")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()




def screenshot(page: Page, tmp_path: Path, name: str) -> Path:
    """The page as an image: under tmp_path, and into SCREENSHOTS (docs/) when asked."""
    target = (ROOT / SCREENSHOTS / name) if SCREENSHOTS else tmp_path / name
    page.screenshot(path=str(target), full_page=True)
    assert target.stat().st_size > 10_000
    return target
