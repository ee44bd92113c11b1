"""Several "hosts" on one machine: network namespaces, each linked to the root namespace.

`hosts(["a", "b"])` makes, for each name, a namespace and a veth pair: the host's end in
its namespace, the other end in the root namespace, a /30 of a private 10.77.X.0/24 (X
chosen free) between them. A server in the root namespace listening on a host's
`gateway` address is reachable from that host only through its link. `cut()` takes the
host's end of the link down (a partition: nothing passes either way), `heal()` brings it
back. A blackhole route for the whole /24 keeps packets for a cut host from ever
leaving the machine by the default route. Only addresses made here are contacted.

Everything is removed at the end, even on failure: processes still in a namespace are
killed first (only processes the test started live there), then the links, the route
and the namespaces. Needs root (CI runs as root) and `ip` (iproute2; .ci/run installs it).
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass


def ip(*args: str) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


@dataclass(frozen=True)
class NetHost:
    name: str
    netns: str  # the namespace's name
    device: str  # the host's end of its link, inside the namespace
    peer: str  # the root namespace's end
    address: str  # the host's address
    gateway: str  # the root end's address: where a server in the root namespace listens for this host

    def command(self, *args: str) -> list[str]:
        """`args` run inside this host's namespace."""
        return ["ip", "netns", "exec", self.netns, *args]

    def pids(self) -> list[int]:
        """Every process in the host's namespace (the supervisor, its forkserver, its workers...)."""
        return [int(pid) for pid in ip("netns", "pids", self.netns).split()]

    def kill_all(self) -> list[int]:
        """`kill -9` every process of the host; returns their pids."""
        pids = self.pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return pids

    def cut(self) -> None:
        ip("netns", "exec", self.netns, "ip", "link", "set", self.device, "down")

    def heal(self) -> None:
        ip("netns", "exec", self.netns, "ip", "link", "set", self.device, "up")


def _free_subnet() -> str:
    """A 10.77.X prefix that no address or route of the machine uses yet."""
    taken = ip("-4", "addr") + ip("-4", "route")
    for x in random.sample(range(256), 256):
        if f"10.77.{x}." not in taken:
            return f"10.77.{x}"
    raise RuntimeError("no free 10.77.X.0/24 subnet")


@contextmanager
def hosts(names: Sequence[str]) -> Iterator[list[NetHost]]:
    tag = uuid.uuid4().hex[:6]
    prefix = _free_subnet()
    made: list[NetHost] = []
    route = False
    try:
        ip("route", "add", "blackhole", f"{prefix}.0/24")
        route = True
        for i, name in enumerate(names):
            host = NetHost(name, f"rt-{tag}-{name}", f"rt{tag}{name}h", f"rt{tag}{name}",
                           f"{prefix}.{4 * i + 2}", f"{prefix}.{4 * i + 1}")
            ip("netns", "add", host.netns)
            made.append(host)
            ip("link", "add", host.peer, "type", "veth", "peer", "name", host.device)
            ip("link", "set", host.device, "netns", host.netns)
            ip("addr", "add", f"{host.gateway}/30", "dev", host.peer)
            ip("link", "set", host.peer, "up")
            for args in (("addr", "add", f"{host.address}/30", "dev", host.device),
                         ("link", "set", host.device, "up"), ("link", "set", "lo", "up")):
                ip("netns", "exec", host.netns, "ip", *args)
        yield made
    finally:
        for host in made:
            with contextlib.suppress(RuntimeError):
                host.kill_all()
        time.sleep(0.1)  # the killed processes leave their namespace
        for host in made:
            with contextlib.suppress(RuntimeError):
                ip("link", "del", host.peer)  # its peer goes with it
            with contextlib.suppress(RuntimeError):
                ip("netns", "del", host.netns)
        if route:
            with contextlib.suppress(RuntimeError):
                ip("route", "del", "blackhole", f"{prefix}.0/24")
