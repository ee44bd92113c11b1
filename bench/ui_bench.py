"""Report and dashboard benchmark: a dashboard page over 10,000 runs, a report of a
10,000-record run.

    python bench/ui_bench.py [--runs 10000] [--records 10000] [--rounds 5]

Prints one JSON document. Needs the `ui` extra (`pip install -e '.[ui]'`).

- dashboard: `--runs` journals of the shipped `renewal_review` machine (70 % waiting for
  alice or bob, 30 % finished), each the exact records a real run wrote (driven once by
  the `Runner` on a fake clock, then written again under new ids with the journal API,
  without fsync: set-up is not measured). A real `ratchet ui` subprocess serves them; the
  time is that of an HTTP GET, as a browser would fetch it: the first page (`/`: every
  journal read and folded into its row, 500 rows rendered), then again (p50 and max over
  `--rounds`: rows are kept between views, and the 7,000 waits are not yet due, so only
  the rendering is left), a filtered page (`/?status=finished&machine=...`) and one
  run's page.
- report: one run of `--records` records (a renewal revised again and again: each round
  is an hour of waiting, a `revise`, a new draft), driven by the real `Runner` with fsync.
  Time of `render_report` (read through the store, verify, fold, render) in-process, p50
  over `--rounds`, the page's size, and the wall time of `ratchet report ID -o FILE` (a
  new process: imports included).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import msgspec

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.home import Home  # noqa: E402
from engine.run.clock import FakeClock  # noqa: E402
from engine.run.runner import Runner  # noqa: E402
from engine.supervise.message import Message  # noqa: E402
from engine.view.report import render_report  # noqa: E402
from journal import FileStore, Record, RunStarted  # noqa: E402

MACHINES = ROOT / "machines"


def template_runs(scratch: Path) -> dict[str, list[Record]]:
    """The records of one waiting and one finished renewal_review run, as the runner wrote them."""
    # today: the served page reads the real clock, and these waits must not be overdue yet
    runner = Runner(Home(scratch / "templates"), clock=FakeClock(datetime.now(UTC)), machines_dir=MACHINES)
    waiting = runner.start("renewal_review", {"customer": "acme"}, run_id="waiting")
    runner.run(waiting)
    finished = runner.start("renewal_review", {"customer": "acme"}, run_id="finished")
    runner.run(finished)
    runner.clock.advance(3600)  # type: ignore[attr-defined]
    runner.deliver(finished, Message(run=finished, trigger="approve", by="alice"), source_file="a.json")
    return {kind: list(runner.home.store.read(kind).records) for kind in ("waiting", "finished")}


def many_runs(home: Path, count: int, templates: dict[str, list[Record]]) -> float:
    began = time.monotonic()
    store = FileStore(home, durability="none")  # set-up only: durability is not measured here
    for i in range(count):
        kind = "finished" if i % 10 < 3 else "waiting"
        run_id = f"renewal-{i:05d}"
        records = [msgspec.structs.replace(r, seq=0, prev="", **({"run_id": run_id} if isinstance(r, RunStarted)
                                                                  else {}))
                   for r in templates[kind]]
        with store.writer(run_id, create=True) as writer:
            writer.append_many(records)
    os.sync()
    return time.monotonic() - began


def long_run(home: Path, records: int) -> tuple[str, float]:
    """A renewal revised until its journal has `records` records (real runner, fsync)."""
    began = time.monotonic()
    runner = Runner(Home(home), clock=FakeClock("2026-03-02T09:00:00Z"), machines_dir=MACHINES)
    run_id = runner.start("renewal_review", {"customer": "acme"}, run_id="long", by="dana")
    state = runner.run(run_id)
    round_no = 0
    while state.last_seq < records - 6:
        round_no += 1
        runner.clock.advance(3600)  # type: ignore[attr-defined]
        delivery = runner.deliver(run_id, Message(run=run_id, trigger="revise", by="alice",
                                                  comment=f"round {round_no}", data={"round": round_no}),
                                  source_file=f"r{round_no}.json")
        assert delivery.accepted, delivery.reason
        state = delivery.state
    runner.deliver(run_id, Message(run=run_id, trigger="approve", by="bob"), source_file="approve.json")
    return run_id, time.monotonic() - began


def serve(home: Path) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "RATCHET_HOME": str(home)}
    env.pop("RATCHET_CLOCK_FILE", None)
    proc = subprocess.Popen([sys.executable, "-c", "from engine.cli import main; main()", "ui", "--port", str(port)],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/live.js", timeout=5):
                return proc, url
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("ratchet ui did not answer within 60 s")


def fetch(url: str) -> tuple[float, int]:
    began = time.perf_counter()
    with urllib.request.urlopen(url, timeout=300) as response:
        size = len(response.read())
    return time.perf_counter() - began, size


def timed(rounds: int, call: object) -> dict[str, float]:
    times = [call() for _ in range(rounds)]  # type: ignore[operator]
    return {"p50_s": round(statistics.median(times), 3), "max_s": round(max(times), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    os.environ["RATCHET_LEDGER"] = os.devnull  # the fake services' ledger: not measured
    out: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="ratchet-ui-bench-", dir=ROOT) as scratch:
        folder = Path(scratch)
        home = folder / "home"
        out["setup_runs_s"] = round(many_runs(home, args.runs, template_runs(folder)), 2)
        proc, url = serve(home)
        try:
            page = [fetch(url + "/") for _ in range(args.rounds + 1)]  # the first builds every row
            filtered = [fetch(url + "/?status=finished&machine=renewal_review")[0] for _ in range(args.rounds)]
            one = [fetch(url + "/runs/renewal-00042")[0] for _ in range(args.rounds)]
        finally:
            proc.terminate()
            proc.wait()
        out["dashboard"] = {
            "runs": args.runs,
            "first_page_s": round(page[0][0], 3),
            "page_p50_s": round(statistics.median(t for t, _ in page[1:]), 3),
            "page_max_s": round(max(t for t, _ in page[1:]), 3),
            "page_bytes": page[0][1],
            "filtered_page_p50_s": round(statistics.median(filtered), 3),
            "run_page_p50_s": round(statistics.median(one), 3),
        }
        long_home = folder / "long"
        run_id, made = long_run(long_home, args.records)
        store = Home(long_home).store
        html = render_report(store, run_id)
        renders = []
        for _ in range(args.rounds):
            began = time.perf_counter()
            render_report(store, run_id)
            renders.append(time.perf_counter() - began)
        target = folder / "long.html"
        began = time.perf_counter()
        subprocess.run([sys.executable, "-c", "from engine.cli import main; main()", "report", run_id,
                        "-o", str(target)], cwd=ROOT, env={**os.environ, "RATCHET_HOME": str(long_home)}, check=True,
                       stdout=subprocess.DEVNULL)
        cli_s = time.perf_counter() - began
        out["report"] = {
            "records": store.read(run_id).cursor.seq,
            "setup_s": round(made, 2),
            "render_p50_s": round(statistics.median(renders), 3),
            "render_max_s": round(max(renders), 3),
            "bytes": len(html.encode()),
            "cli_wall_s": round(cli_s, 3),
        }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
