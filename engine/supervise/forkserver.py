"""The workers' fork server: a copy of the supervisor, forked before it starts any thread,
that forks each worker on request.

Why not multiprocessing's forkserver (what workers came from before): it is a second
interpreter that imports the engine again, plus a resource tracker, ~0.1 s of CPU each on
the path of every recovery. Why not fork workers from the supervisor itself: once it runs
threads (the watches, metrics, the inbox warm-up), a forked child could inherit a lock a
thread held. So `ratchet supervise` forks this server once the modules both sides need are
imported (the CLI, the home, sealing, engine.supervise.worker), before its own (the
watches, the mailroom, the loop), and before it starts a thread or opens a watch, a socket
or a journal. The server never starts a thread; it imports the rest a worker needs (PRELOAD)
on one core while the supervisor imports its own modules on the other, then forks a worker
per request, so a replacement worker starts in a millisecond or two too. Nothing is exec'd.
Forking earlier, right after the CLI, was measured slower: both sides then import the
shared modules, ~20 ms more CPU on the recovery's path (README, "Performance").

The protocol, on a SOCK_SEQPACKET pair (a message per request; asked only by the
supervisor's loop, one at a time):

  request  JSON {home, machines, store} with three descriptors (SCM_RIGHTS): the worker's
           end of its job pipe, the lifeline's read end, the write end of its status pipe.
           No reply: the supervisor goes on (it may send the worker a job at once)
  status   on the status pipe: the worker's pid (8 bytes) once forked; when the server
           reaps it, its exit code (4 bytes, signed, -N for signal N), and the pipe closes.
           EOF before either: the server died, and the handle reports 255 (as
           multiprocessing's handles do when their forkserver dies)

A worker keeps stdio, its job pipe and the lifeline, and closes every other descriptor it
inherited. The server ends at EOF on its socket, i.e. when the supervisor is gone, even by
SIGKILL; its workers end by the lifeline (engine.supervise.worker).
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import selectors
import signal
import socket
import struct
import sys
import threading
import time
from typing import Any, NoReturn

# What every worker needs, imported once in the server (its workers inherit it, loaded).
PRELOAD = ["engine.supervise.worker", "engine.run.runner", "engine.run.clock", "multiprocessing.connection"]
REPLY_TIMEOUT = 60.0  # seconds to wait for a worker's pid (the server may still be importing, on a loaded machine)
_PID = struct.Struct("q")
_CODE = struct.Struct("i")
GONE = 255  # the exit code a handle reports when the server died before telling

_server: ForkServer | None = None


def start_forkserver() -> None:
    """Fork the server now if this process runs no other thread (idempotent; does nothing
    after a thread started: workers then come from multiprocessing's forkserver)."""
    global _server
    if _server is None and threading.active_count() == 1:
        _server = ForkServer.fork()


def stop_forkserver() -> None:
    """Close the server and reap it (it exits at EOF on its socket): a stopped supervisor leaves
    no process behind, nor a zombie, also when it ran inside a longer-lived process (an
    application, tests). Its workers are gone by then (WorkerPool.close)."""
    global _server
    server, _server = _server, None
    if server is not None:
        server.close()


def spawn(job_fd: int, lifeline_fd: int, home: str, machines: str) -> ForkedProcess | None:
    """A new worker serving the job pipe `job_fd`, or None when there is no server (never
    started, or it died: the caller falls back to another way to start it)."""
    global _server
    if _server is None:
        return None
    process = _server.spawn(job_fd, lifeline_fd, home, machines)
    if process is None:
        _server = None  # it is gone; a new one cannot be forked safely from a threaded process
    return process


def server_pid() -> int | None:
    """The running server's pid (for tests and logs), or None."""
    return None if _server is None else _server.pid


class ForkServer:
    """The supervisor's end of the server: its socket and pid."""

    def __init__(self, sock: socket.socket, pid: int) -> None:
        self.sock, self.pid = sock, pid
        self._lock = threading.Lock()  # one request at a time, should two threads ever ask

    @classmethod
    def fork(cls) -> ForkServer:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        gc.freeze()  # the loaded modules: no collection walks them again, so neither side copies their pages
        pid = os.fork()
        if pid == 0:  # the server
            ours.close()
            _serve(theirs)
        theirs.close()
        ours.settimeout(REPLY_TIMEOUT)
        return cls(ours, pid)

    def close(self) -> None:
        self.sock.close()
        with contextlib.suppress(ChildProcessError):  # reaped already (an application's own wait)
            os.waitpid(self.pid, 0)

    def spawn(self, job_fd: int, lifeline_fd: int, home: str, machines: str) -> ForkedProcess | None:
        """Ask for a worker and return at once: a job may be sent on its pipe before it exists."""
        request = json.dumps({"home": home, "machines": machines, "store": os.environ.get("RATCHET_STORE")})
        status_r, status_w = os.pipe2(os.O_CLOEXEC)
        try:
            with self._lock:
                socket.send_fds(self.sock, [request.encode()], [job_fd, lifeline_fd, status_w])
        except OSError:  # EPIPE, ECONNREFUSED, a timeout: the server is dead or stuck
            os.close(status_r)
            return None
        finally:
            os.close(status_w)
        return ForkedProcess(status_r)


class ForkedProcess:
    """A worker forked by the server: what WorkerPool uses of a multiprocessing.Process
    (pid, is_alive, exitcode, join, kill), read from its status pipe: its pid as soon as
    it is forked, then its exit code."""

    def __init__(self, status_fd: int) -> None:
        self.sentinel = status_fd
        self._pid: int | None = None
        self._told = False  # the pid came, or EOF said it never will
        self._code: int | None = None

    @property
    def pid(self) -> int | None:
        """The worker's pid (waits for the server to fork it); None if the server died first."""
        self._read_pid(REPLY_TIMEOUT)
        return self._pid

    @property
    def exitcode(self) -> int | None:
        self._poll(0)
        return self._code

    def is_alive(self) -> bool:
        return self.exitcode is None

    def join(self, timeout: float | None = None) -> None:
        self._poll(timeout)

    def kill(self) -> None:
        pid = self.pid
        if self._code is None and pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def _read_pid(self, timeout: float | None) -> bool:
        """Read the pid if it came within `timeout`; True once it is known (or never will be)."""
        if self._told:
            return True
        from multiprocessing.connection import wait

        if not wait([self.sentinel], timeout):
            return False
        data = os.read(self.sentinel, _PID.size)
        self._told = True
        if len(data) == _PID.size:
            self._pid = _PID.unpack(data)[0]
        else:  # EOF: the server died before it forked the worker
            self._finish(GONE)
        return True

    def _poll(self, timeout: float | None) -> None:
        if self._code is not None:
            return
        from multiprocessing.connection import wait

        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._read_pid(timeout) or self._code is not None:
            return
        if not wait([self.sentinel], None if deadline is None else max(0.0, deadline - time.monotonic())):
            return
        data = os.read(self.sentinel, _CODE.size)
        self._finish(_CODE.unpack(data)[0] if len(data) == _CODE.size else GONE)

    def _finish(self, code: int) -> None:
        self._code = code
        os.close(self.sentinel)

    def __del__(self) -> None:
        if self._code is None:
            with contextlib.suppress(OSError):
                os.close(self.sentinel)


# --- inside the server ------------------------------------------------------------------------


def _serve(sock: socket.socket) -> NoReturn:
    """The server's life: preload, then fork a worker per request and report its end."""
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the supervisor decides
        _keep_only({0, 1, 2, sock.fileno()})
        _detach_stdin()
        for name in PRELOAD:
            __import__(name)  # not importlib's: `-X importtime` times only this path (tests read it)
        gc.freeze()  # as in the supervisor: what workers inherit stays shared
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so that SIGCHLD writes to wake_w
        statuses: dict[int, int] = {}  # worker pid -> write end of its status pipe
        with selectors.DefaultSelector() as selector:
            selector.register(sock, selectors.EVENT_READ)
            selector.register(wake_r, selectors.EVENT_READ)
            while True:
                for key, _ in selector.select():
                    if key.fileobj is sock:
                        message, fds, _flags, _addr = socket.recv_fds(sock, 4096, 3)
                        if not message:
                            os._exit(0)  # the supervisor is gone; its workers follow by their lifeline
                        pid = _fork_worker(json.loads(message), fds, sock, selector)
                        statuses[pid] = fds[2]
                        os.close(fds[0])
                        os.close(fds[1])
                        with contextlib.suppress(OSError):  # the supervisor dropped the handle already
                            os.write(fds[2], _PID.pack(pid))
                    else:
                        with contextlib.suppress(BlockingIOError):
                            while os.read(wake_r, 512):
                                pass
                _reap(statuses)
    except BaseException:  # never return into the supervisor's code
        import traceback

        traceback.print_exc()
        os._exit(1)


def _fork_worker(request: dict[str, Any], fds: list[int], sock: socket.socket,
                 selector: selectors.BaseSelector) -> int:
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        selector.close()
        sock.close()
        job_fd, lifeline_fd = fds[0], fds[1]
        _keep_only({0, 1, 2, job_fd, lifeline_fd})  # the wake-up pipe and every status pipe too
        if request["store"] is not None:  # the command's --store, set after this server was forked
            os.environ["RATCHET_STORE"] = request["store"]
        else:
            os.environ.pop("RATCHET_STORE", None)
        from multiprocessing.connection import Connection

        from engine.supervise.worker import serve

        serve(Connection(job_fd), Connection(lifeline_fd, writable=False), request["home"], request["machines"])
        code = 0
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _reap(statuses: dict[int, int]) -> None:
    """Tell the supervisor how each ended worker ended, then forget it."""
    while statuses:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        fd = statuses.pop(pid, None)
        if fd is not None:
            with contextlib.suppress(OSError):  # the supervisor dropped the handle: nobody to tell
                os.write(fd, _CODE.pack(os.waitstatus_to_exitcode(status)))
            os.close(fd)


def _keep_only(keep: set[int]) -> None:
    """Close every inherited descriptor not in `keep` (the supervisor's watches, sockets,
    journals: nothing a worker or the server may hold on to)."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd not in keep:
            with contextlib.suppress(OSError):  # the listing's own descriptor, closed meanwhile
                os.close(fd)


def _detach_stdin() -> None:
    """Workers never read the supervisor's terminal (as multiprocessing's workers do not)."""
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    with contextlib.suppress(Exception):
        sys.stdin = open(0, closefd=False)  # noqa: SIM115  (fd 0 lives as long as the process)
