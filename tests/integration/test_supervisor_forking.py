"""Workers are forked from the supervisor, never exec'd (engine.supervise.forkserver), and a
forked process holds nothing of the supervisor's it must not.

Real processes, read from /proc: the supervisor's tree (one fork server, its workers, all
running the supervisor's own command line, no other interpreter), each process's open
descriptors (no inotify watch, no metrics socket, no pipe's write end, before and after a
worker is replaced while the supervisor's threads run), and kill -9 of the supervisor
(nothing it forked lives on). With strace where installed: one execve in all.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from supervisor_harness import Env, pid_alive
from waiting import wait_for

WORKERS = 2  # the pool's; the mail lane adds one


def parent(pid: int) -> int:
    # /proc/PID/stat: "pid (comm) state ppid ..."; comm may hold spaces, so split after ')'
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if parent(int(entry.name)) == pid and pid_alive(int(entry.name)):
                    found.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue  # exited meanwhile
    return sorted(found)


def cmdline(pid: int) -> bytes:
    return Path(f"/proc/{pid}/cmdline").read_bytes()


def descriptors(pid: int) -> dict[int, str]:
    """fd -> what it points at (`socket:[123]`, `pipe:[456]`, `anon_inode:inotify`, a path)."""
    found = {}
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            found[int(fd.name)] = os.readlink(fd)
        except OSError:
            continue
    return found


def writes(pid: int, fd: int) -> bool:
    """Is `fd` open for writing? (/proc/PID/fdinfo's flags, octal: O_WRONLY 1, O_RDWR 2)"""
    flags = next(line for line in Path(f"/proc/{pid}/fdinfo/{fd}").read_text().splitlines()
                 if line.startswith("flags:"))
    return int(flags.split()[1], 8) & 0o3 != 0


def the_tree(env: Env, sup: subprocess.Popen) -> tuple[int, list[int]]:
    """(the fork server, its workers) once every worker is up."""
    def up() -> tuple[int, list[int]] | None:
        server = children(sup.pid)
        if len(server) != 1:
            return None
        workers = children(server[0])
        return (server[0], workers) if len(workers) == WORKERS + 1 else None
    return wait_for(up, what="the fork server and its workers", timeout=30)


def sockets(pid: int) -> set[str]:
    """The sockets `pid` holds (`socket:[inode]`): a socket held by two processes has one inode."""
    return {target for target in descriptors(pid).values() if target.startswith("socket:")}


def pipes_written(pid: int) -> set[str]:
    """The pipes `pid` holds a write end of, beyond stdout and stderr (inherited on purpose)."""
    return {target for fd, target in descriptors(pid).items()
            if fd > 2 and target.startswith("pipe:") and writes(pid, fd)}


def assert_holds_nothing_of_the_supervisor(pid: int, supervisor: int, own_sockets: int | None) -> None:
    held = descriptors(pid)
    assert "anon_inode:inotify" not in held.values(), held  # the supervisor's watches
    if own_sockets is not None:
        assert sum(target.startswith("socket:") for target in held.values()) == own_sockets, held
    assert sockets(pid) & sockets(supervisor) == set(), held  # none of its own (metrics, store, pipes' ends)
    # No write end the supervisor writes too (the lifeline's would keep workers alive after a kill -9).
    assert pipes_written(pid) & pipes_written(supervisor) == set(), held


def test_workers_are_forked_from_the_supervisor_hold_none_of_its_descriptors_and_die_with_it(env: Env):
    gate = env.dir / "gate"
    env.start("r1", gate=str(gate))
    sup = env.supervise("--metrics-port", "0", "--workers", str(WORKERS))
    wait_for(lambda: "metrics on http://" in env.log(), what="the metrics endpoint (a thread and a socket)")
    marker = env.started_marker("r1")
    wait_for(marker.exists, what="the step to be in flight")
    server, workers = the_tree(env, sup)

    # Forked, never exec'd: every process under the supervisor runs its very command line
    # (an exec'd forkserver or resource tracker would run `python -c "from multiprocessing..."`).
    assert all(cmdline(pid) == cmdline(sup.pid) for pid in (server, *workers))
    assert children(sup.pid) == [server]

    # The supervisor holds what its children must not: its watches, the metrics socket, pipe write ends.
    supervisor_holds = descriptors(sup.pid).values()
    assert "anon_inode:inotify" in supervisor_holds
    assert sum(target.startswith("socket:") for target in supervisor_holds) > WORKERS + 2
    assert_holds_nothing_of_the_supervisor(server, sup.pid, own_sockets=1)  # its socket to the supervisor
    assert not [t for t in descriptors(server).values() if t.startswith(str(env.home.root))]  # no journal, no inbox
    for worker in workers:
        assert_holds_nothing_of_the_supervisor(worker, sup.pid, own_sockets=1)  # its job pipe
        assert pipes_written(worker) == set()  # nor the server's (its wake-up, the status pipes)

    # A replacement is forked while the supervisor's threads run (watches, metrics): it is
    # forked by the server, which never ran one, and holds no more than the first workers.
    victim = int(marker.read_text())
    assert victim in workers
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: int(marker.read_text()) != victim, what="the step to run again in a replacement")
    replacement = int(marker.read_text())
    assert parent(replacement) == server and cmdline(replacement) == cmdline(sup.pid)
    assert_holds_nothing_of_the_supervisor(replacement, sup.pid, own_sockets=1)
    assert pipes_written(replacement) == set()

    # kill -9 of the supervisor: the server sees its socket close, the workers their lifeline.
    survivors = [server, *children(server)]
    sup.send_signal(signal.SIGKILL)
    sup.wait(10)
    for pid in survivors:
        wait_for(lambda pid=pid: not pid_alive(pid), what=f"process {pid} to die with the supervisor")
    gate.touch()


def test_a_fork_server_killed_alone_is_replaced_by_multiprocessing_s_and_the_run_goes_on(env: Env):
    gate = env.dir / "gate"
    env.start("r1", gate=str(gate))
    sup = env.supervise("--workers", "1")
    marker = env.started_marker("r1")
    wait_for(marker.exists, what="the step to be in flight")
    server = children(sup.pid)[0]
    os.kill(server, signal.SIGKILL)  # the supervisor lives on, with threads: it may not fork another
    wait_for(lambda: not pid_alive(server), what="the fork server to die")
    victim = int(marker.read_text())
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: int(marker.read_text()) != victim, what="the step to run again in a replacement", timeout=60)
    replacement = int(marker.read_text())
    assert cmdline(replacement) != cmdline(sup.pid)  # an exec'd forkserver's child, not a fork of ours
    gate.touch()
    env.wait_status("r1", "waiting", "review", timeout=60)
    assert sup.poll() is None


@pytest.mark.slow
def test_on_postgresql_no_forked_process_shares_a_connection_with_the_supervisor(env: Env, pg_url: str):
    env.env["RATCHET_STORE"] = pg_url
    gate = env.dir / "gate"
    started = env.cli("start", str(env.machine.with_name("approval.yaml")), "--id", "p1", "--input", f"gate={gate}")
    assert started.returncode == 0, started.stderr
    sup = env.supervise("--workers", str(WORKERS))
    wait_for(env.started_marker("p1").exists, what="the step to be in flight", timeout=30)
    server, workers = the_tree(env, sup)
    assert "journals in postgresql:" in env.log()
    assert "anon_inode:inotify" in descriptors(sup.pid).values()
    assert len(sockets(sup.pid)) > WORKERS + 2  # its pipes to workers, the server, its store and LISTEN connections
    assert_holds_nothing_of_the_supervisor(server, sup.pid, own_sockets=1)
    for worker in workers:  # a worker has its own connection (opened when it took a job), never the supervisor's
        assert_holds_nothing_of_the_supervisor(worker, sup.pid, own_sockets=None)
    gate.touch()
    wait_for(lambda: b"run p1 waits in 'review'" in (env.dir / "supervisor-0.log").read_bytes(), timeout=60,
             what="the run to reach its wait")


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace to see every execve")
def test_recovering_a_crashed_run_execs_no_second_interpreter(env: Env, tmp_path: Path):
    env.start("r2")  # journaled run_started only: its first step needs a worker
    trace = tmp_path / "strace.log"
    cmd = ["strace", "-f", "-qq", "-o", str(trace), "-e", "trace=execve",
           sys.executable, "-c", "from engine.cli import main; main()", "supervise", "--once"]
    done = subprocess.run(cmd, cwd=env.dir, env=env.env, capture_output=True, text=True, timeout=120)
    if done.returncode != 0 and "ptrace" in done.stderr:
        pytest.skip(f"strace cannot trace here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr[-2000:]
    assert env.row("r2").status == "waiting"  # a worker took it and journaled its step
    execs = [line for line in trace.read_text().splitlines() if "execve(" in line and "= 0" in line]
    assert len(execs) == 1, execs  # the supervisor's own; its fork server and workers are forks


FALLBACK = """
import sys, threading, time
from pathlib import Path
from engine.supervise import forkserver
from engine.supervise.jobs import Job
from engine.supervise.workers import WorkerPool

threading.Thread(target=time.sleep, args=(60,), daemon=True).start()  # as an app embedding the pool
forkserver.start_forkserver()  # refuses: forking a process that runs a thread is unsafe
pool = WorkerPool(1, Path(sys.argv[1]))
pool.start()
worker = pool.submit(Job("nobody"))
deadline = time.monotonic() + 60
while not (results := pool.collect()) and time.monotonic() < deadline:
    time.sleep(0.01)
ppid = Path(f"/proc/{worker.pid}/stat").read_text().rsplit(")", 1)[1].split()[1]
execd = b"forkserver" in Path(f"/proc/{ppid}/cmdline").read_bytes()
print(forkserver.server_pid(), [r.outcome for r in results], execd)
pool.stop(1)
pool.close()
"""


def test_a_process_running_threads_gets_workers_from_an_execd_forkserver_instead(tmp_path: Path):
    out = subprocess.run([sys.executable, "-c", FALLBACK, str(tmp_path / "home")], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["None", "['error']", "True"], out.stdout  # no fork server; a working worker


IN_PROCESS = """
import os, sys
from pathlib import Path
from click.testing import CliRunner
from engine.cli import main

result = CliRunner().invoke(main, ["--home", sys.argv[1], "supervise", "--once"])
assert result.exit_code == 0, result.output
mine = []
for entry in Path("/proc").iterdir():  # children of this process, zombies included
    if entry.name.isdigit():
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(stat[1]) == os.getpid():
            mine.append((entry.name, stat[0]))
print(mine)
"""


def test_a_supervisor_run_inside_a_longer_lived_process_leaves_no_process_behind(env: Env, tmp_path: Path):
    # An application (or a test) that runs `supervise --once` in its own process: the fork server
    # it forked is closed and reaped at the stop, not left running, nor as a zombie.
    env.start("r1")
    out = subprocess.run([sys.executable, "-c", IN_PROCESS, str(env.home.root)], cwd=env.dir,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"
