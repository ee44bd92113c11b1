"""A `ratchet supervise` whose PostgreSQL server does not answer can still be stopped.

The console script's start keeps a SIGTERM or Ctrl-C for the supervisor only once workers may
hold runs (the head start, engine.cli.supervising); while the store is still connecting there is
nothing to drain, and a stop must end the process at once, as before the head start (it used to
wait for the connection's timeout, over two minutes, with the signal swallowed).

Real processes: the console script, and a TCP listener that accepts and never says a word.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from waiting import wait_for

RATCHET = str(Path(sys.executable).parent / "ratchet")


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, -signal.SIGTERM), (signal.SIGINT, 1)],
                         ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("click", [False, True], ids=["console-script", "click"])
def test_a_stop_while_the_store_connects_ends_the_supervisor(tmp_path, sig, code, click):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    silent.settimeout(30)
    port = silent.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RATCHET_")}
    env["RATCHET_STORE"] = f"postgresql://ratchet@127.0.0.1:{port}/ratchet"
    # --metrics-host is a harmless option the console script leaves to click.
    extra = ["--metrics-host", "127.0.0.1"] if click else []
    log = tmp_path / "supervise.log"
    with open(log, "w") as err:  # the process keeps its own descriptor
        sup = subprocess.Popen([RATCHET, "supervise", "--home", str(tmp_path / "home"), *extra], cwd=tmp_path,
                               env=env, stdout=subprocess.DEVNULL, stderr=err)
    try:
        peer, _ = silent.accept()  # the supervisor is connecting now, and will get no answer
        try:
            sup.send_signal(sig)
            returncode = sup.wait(30)
        finally:
            peer.close()
    finally:
        sup.kill()
        sup.wait(60)
        silent.close()
    stderr = log.read_text()
    assert returncode == code, stderr
    assert "Traceback" not in stderr, stderr
    if sig == signal.SIGINT:
        assert "Aborted!" in stderr, stderr
    wait_for(lambda: not _ours(tmp_path), timeout=10, what="the fork server to end")  # nothing left behind


def _ours(place: Path) -> list[int]:
    """Processes with this test's folder on their command line (the supervisor's forks have it)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and str(place).encode() in (proc / "cmdline").read_bytes():
                pids.append(int(proc.name))
        except OSError:
            continue  # gone meanwhile
    return pids
