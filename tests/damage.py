"""Damaging a journal file on purpose, behind the store's back, as a bad disk or a careless hand would."""

from __future__ import annotations

import os
from pathlib import Path


def lines_of(path: Path) -> list[bytes]:
    """The file's newline-terminated lines, without their newlines (a torn tail is dropped)."""
    return path.read_bytes().split(b"\n")[:-1]


def write_lines(path: Path, lines: list[bytes]) -> None:
    """Rewrite the file as `lines`, each ended by a newline (the inverse of `lines_of`)."""
    path.write_bytes(b"".join(line + b"\n" for line in lines))


def flip_byte(path: Path, offset: int, mask: int = 0x01) -> None:
    """XOR the byte at `offset` with `mask`, in place; a second flip puts it back."""
    fd = os.open(path, os.O_RDWR)
    try:
        os.pwrite(fd, bytes([os.pread(fd, 1, offset)[0] ^ mask]), offset)
    finally:
        os.close(fd)


def cut_at(path: Path, offset: int) -> None:
    """Truncate the file in place to its first `offset` bytes (same file, same inode)."""
    os.truncate(path, offset)
