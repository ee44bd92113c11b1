"""The stores the contract suite runs against, each with the few things only it can do.

A `StoreKit` holds a store, the URL another process opens it with, and two ways to
damage a journal behind the store's back (replace it with another run's, cut records
off its end): those are backend-specific, the checks are not. A new backend adds one
kit here and must pass every test in this folder.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from journal import GENESIS, FileStore, Store, line_hash, open_store

from damage import cut_at


@dataclass
class StoreKit:
    store: Store
    url: str
    replace: Callable[[str, str], None]  # replace(run_id, donor_run_id): the donor's journal under run_id's name
    cut: Callable[[str, int], None]  # cut(run_id, keep): drop every record after the first `keep`
    # How long a dead holder's ownership may outlive it: a file lock goes with the process
    # (the kernel), a PostgreSQL advisory lock when the server notices the closed socket
    # and ends that backend, which it does on its own schedule, a moment later.
    release_after_death_s: float = 0.0


def _file_kit(tmp_path: Path) -> StoreKit:
    url = f"file:{tmp_path / 'home'}"
    store = open_store(url)
    assert isinstance(store, FileStore)

    def replace(run_id: str, donor: str) -> None:
        # rename(2) over the journal: a new file (inode) under the old name, as a restore would
        copy = store.path(donor).with_suffix(".copy")
        copy.write_bytes(store.path(donor).read_bytes())
        os.replace(copy, store.path(run_id))

    def cut(run_id: str, keep: int) -> None:
        path = store.path(run_id)
        lines = path.read_bytes().splitlines(keepends=True)
        cut_at(path, sum(map(len, lines[:keep])))

    return StoreKit(store, url, replace, cut)


def _pg_kit(request: pytest.FixtureRequest, tmp_path: Path) -> StoreKit:
    """A fresh schema on the session's private server (tests/pg_cluster.py); damage by SQL."""
    from journal.pg_store import PgStore

    url = request.getfixturevalue("pg_url")
    store = open_store(url)
    assert isinstance(store, PgStore)
    request.addfinalizer(store.close)

    def set_rows(run_id: str, lines: list[bytes]) -> None:
        with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
            conn.execute("DELETE FROM ratchet_records WHERE run_id = %s", [run_id])
            for seq, line in enumerate(lines, 1):
                conn.execute("INSERT INTO ratchet_records (run_id, seq, line) VALUES (%s, %s, %s)",
                             [run_id, seq, line])
            conn.execute("UPDATE ratchet_runs SET last_seq = %s, head = %s WHERE run_id = %s",
                         [len(lines), line_hash(lines[-1]) if lines else GENESIS, run_id])

    def replace(run_id: str, donor: str) -> None:  # a restore of another run's rows under this id
        set_rows(run_id, [line[:-1] for line in store.lines(donor)])

    def cut(run_id: str, keep: int) -> None:
        set_rows(run_id, [line[:-1] for line in store.lines(run_id)[:keep]])

    return StoreKit(store, url, replace, cut, release_after_death_s=10.0)


KITS = {"file": lambda request, tmp_path: _file_kit(tmp_path), "postgresql": _pg_kit}


@pytest.fixture(params=sorted(KITS))
def kit(request, tmp_path: Path) -> StoreKit:
    return KITS[request.param](request, tmp_path)
