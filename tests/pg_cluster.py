"""A private PostgreSQL cluster for the tests: `initdb` in a temporary folder, a free port.

The server refuses to run as root, and the tests (and CI) run as root: the cluster's
folder belongs to an unprivileged user (Debian's `postgres`, else `nobody`) and every
server command runs as that user through `runuser`. The socket lives in the cluster's
folder; the server also listens on 127.0.0.1, and on the addresses `listen` names (other
"hosts", network namespaces, reach it over TCP; `allow` opens pg_hba.conf to their subnet). fsync and
synchronous_commit are on, as in production: what the tests call durable is durable.

No skipping: a test that asks for the server fails loudly if it cannot start.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

SUPERUSER = "ratchet"
DATABASE = "ratchet"


def bindir() -> Path:
    """Where Debian put the server's binaries (the newest version installed)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=True).stdout.strip()
        if (Path(out) / "initdb").exists():
            return Path(out)
    raise RuntimeError("no PostgreSQL server binaries (initdb) found: apt-get install postgresql")


def server_user() -> str:
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    raise RuntimeError("no unprivileged user to run PostgreSQL as (neither 'postgres' nor 'nobody')")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Cluster:
    folder: Path
    port: int
    user: str
    listen: tuple[str, ...] = ()  # more addresses to listen on, beside 127.0.0.1
    allow: str | None = None  # a subnet (CIDR) whose clients may connect over TCP, as trust

    @property
    def socket_dir(self) -> Path:
        return self.folder / "sock"

    def url(self, database: str = DATABASE) -> str:
        """A URL over the unix socket (the fast path the tests and the bench use)."""
        return f"postgresql://{SUPERUSER}@/{database}?host={self.socket_dir}&port={self.port}"

    def tcp_url(self, database: str = DATABASE, host: str = "127.0.0.1") -> str:
        return f"postgresql://{SUPERUSER}@{host}:{self.port}/{database}"

    def _as_server(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = ["runuser", "-u", self.user, "--", *args] if os.geteuid() == 0 else list(args)
        return subprocess.run(command, capture_output=True, text=True, cwd=self.folder)

    def start(self) -> None:
        bin_ = bindir()
        data = self.folder / "data"
        init = self._as_server(str(bin_ / "initdb"), "-D", str(data), "-U", SUPERUSER, "--auth=trust",
                               "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync")
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed: {init.stderr.strip()}")
        if self.allow:
            with open(data / "pg_hba.conf", "a") as hba:
                hba.write(f"host all all {self.allow} trust\n")
        self.run()
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))

    def run(self) -> None:
        """Start the server on the cluster made by `start` (again, after `stop`)."""
        bin_, data = bindir(), self.folder / "data"
        addresses = ",".join(("127.0.0.1", *self.listen))
        options = (f"-p {self.port} -k {self.socket_dir} -c listen_addresses={addresses} -c fsync=on "
                   "-c synchronous_commit=on -c max_connections=300 -c shared_buffers=64MB")
        started = self._as_server(str(bin_ / "pg_ctl"), "-D", str(data), "-l", str(self.folder / "server.log"),
                                  "-o", options, "-w", "-t", "60", "start")
        if started.returncode != 0:
            log = (self.folder / "server.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"pg_ctl start failed: {started.stderr.strip()} {started.stdout.strip()}\n{log}")

    def stop(self) -> None:
        self._as_server(str(bindir() / "pg_ctl"), "-D", str(self.folder / "data"), "-m", "fast", "-w", "stop")

    def fresh_schema(self) -> str:
        """A URL whose tables live in a new, empty schema: each test its own store."""
        return f"{self.url()}&options=-csearch_path%3D{self.new_schema()}"

    def new_schema(self) -> str:
        schema = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        return schema


@contextmanager
def running_cluster(*, listen: tuple[str, ...] = (), allow: str | None = None) -> Iterator[Cluster]:
    user = server_user()
    folder = Path(tempfile.mkdtemp(prefix="ratchet-pg-"))
    try:
        (folder / "sock").mkdir()
        entry = pwd.getpwnam(user)
        if os.geteuid() == 0:
            for path in (folder, folder / "sock"):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        cluster = Cluster(folder, free_port(), user, listen, allow)
        cluster.start()
        try:
            yield cluster
        finally:
            cluster.stop()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def share_home_key(source_home: Path, target_home: Path) -> None:
    """Give `target_home` the sealing key of `source_home`: every home on one store seals with
    the same key (README "Sealed journals"); a home without it refuses to start or supervise."""
    keys = target_home / "keys"
    keys.mkdir(parents=True, mode=0o700, exist_ok=True)
    for name in ("home.key", "home.pub"):
        (keys / name).write_bytes((source_home / "keys" / name).read_bytes())
    (keys / "home.key").chmod(0o600)
