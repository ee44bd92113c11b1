"""Publishing a small file durably and atomically (inbox drops, escalation tickets).

Write the bytes to a temporary name, fsync them, rename into place, fsync the folder:
a reader sees the old file or the new one, never half of one, and after a crash the
file is either entirely there or not at all (fsync(2), rename(2)).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from journal.writer import fsync_dir


def own_tmp(target: Path) -> Path:
    """A dot-named temporary beside `target` that no other process or thread uses: two threads
    of one process publishing the same name (lanes keeping a seal's side file) must not write
    into one file, and folder listings skip it."""
    return target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")


def publish(tmp: Path, target: Path, data: bytes, *, exclusive: bool = False, mode: int | None = None,
            sync: bool = True) -> Path:
    """Write `data` at `tmp`, make it durable, rename it to `target` (replacing it).

    `exclusive`: the temporary name must not exist yet (a writer that picked a unique name).
    `mode`: exactly these permissions, whatever the umask (an inbox file proven by its
    owner must not be group-writable).
    `sync=False`: atomic but not fsync'd: a process killed at any point leaves the old file
    or the new one, but a power loss may leave the old one, none, or an empty one.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | (os.O_EXCL if exclusive else os.O_TRUNC)
    fd = os.open(tmp, flags, 0o644)
    try:
        if mode is not None:
            os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, target)
    if sync:
        fsync_dir(target.parent)
    return target
