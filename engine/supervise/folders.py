"""The inbox's folders as directory descriptors, and moving a file between them safely.

Every claim and filing goes through descriptors opened once with O_NOFOLLOW|O_DIRECTORY,
so a folder that is a symlink is refused up front, and one swapped for a symlink later
cannot redirect a file out of the inbox. A move never replaces a file already there.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path
from typing import Protocol

from engine.errors import EngineError, UnsafeInboxError


class InboxHome(Protocol):
    """What the inbox needs of `engine.home.Home`."""

    inbox: Path
    inbox_claimed: Path
    inbox_done: Path
    inbox_rejected: Path


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def open_dir(path: Path | str, dir_fd: int | None = None, shown: Path | None = None) -> int:
    """A descriptor on a real directory; UnsafeInboxError if `path` is a symlink or no directory."""
    try:
        return os.open(path, _DIR_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno not in (errno.ELOOP, errno.ENOTDIR):  # O_NOFOLLOW|O_DIRECTORY: either, for a link
            raise
        try:
            link = stat.S_ISLNK(os.stat(path, dir_fd=dir_fd, follow_symlinks=False).st_mode)
        except OSError:
            link = False
        raise UnsafeInboxError(shown or Path(path), "is a symlink" if link else "is not a directory") from exc


class InboxFolders:
    """Descriptors on inbox/, done/, rejected/ and .claimed/, each opened without following links.

    Opened once (at supervisor start); every claim and filing is then relative to them.
    """

    def __init__(self, home: InboxHome) -> None:
        for folder in (home.inbox, home.inbox_claimed, home.inbox_done, home.inbox_rejected):
            with contextlib.suppress(FileExistsError):  # opening it says whether it is a real directory
                folder.mkdir(parents=True)
        self.home = home
        self.fds: list[int] = []
        try:
            self.inbox = self._open(home.inbox)
            self.claimed = self._open(home.inbox_claimed.name, self.inbox, home.inbox_claimed)
            self.done = self._open(home.inbox_done.name, self.inbox, home.inbox_done)
            self.rejected = self._open(home.inbox_rejected.name, self.inbox, home.inbox_rejected)
        except BaseException:
            self.close()
            raise

    def _open(self, name: Path | str, parent: int | None = None, shown: Path | None = None) -> int:
        fd = open_dir(name, parent, shown)
        self.fds.append(fd)
        return fd

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds = []



def move_into(src: int, src_name: str, folder: int, where: Path, name: str) -> Path:
    """Rename `src_name` (in dir `src`) into dir `folder` as `name`, or `name` with a counter:
    never replace a file. `where` is `folder`'s path, for the answer."""
    stem, dot, suffix = name.rpartition(".") if "." in name[1:] else (name, "", "")
    for n in range(10_000):
        candidate = name if n == 0 else f"{stem}.{n}{dot}{suffix}"
        try:
            # link() fails on an existing target, where rename() would silently replace it.
            os.link(src_name, candidate, src_dir_fd=src, dst_dir_fd=folder, follow_symlinks=False)
        except FileExistsError:
            continue
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EISDIR):  # directories cannot be linked
                raise
            if _lexists(candidate, folder):
                continue
            os.rename(src_name, candidate, src_dir_fd=src, dst_dir_fd=folder)
        else:
            os.unlink(src_name, dir_fd=src)
        os.fsync(folder)
        os.fsync(src)
        return where / candidate
    raise EngineError(f"{where}: too many files named {name!r}; clean the folder up")


def _lexists(name: str, folder: int) -> bool:
    try:
        os.stat(name, dir_fd=folder, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True
