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

import pytest

from journal import FileStore, Store, open_store

from damage import cut_at


@dataclass
class StoreKit:
    store: Store
    url: str
    replace: Callable[[str, str], None]  # replace(run_id, donor_run_id): the donor's journal under run_id's name
    cut: Callable[[str, int], None]  # cut(run_id, keep): drop every record after the first `keep`


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


KITS = {"file": _file_kit}


@pytest.fixture(params=sorted(KITS))
def kit(request, tmp_path: Path) -> StoreKit:
    return KITS[request.param](tmp_path)
