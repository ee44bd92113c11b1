"""The inbox: claiming message files dropped in `inbox/`, in the Maildir pattern, and filing them.

Writers drop files as `engine.supervise.message` describes (write in `inbox/.tmp`, rename in). The
supervisor *claims* a file by renaming it into `inbox/.claimed`
under a unique name (exactly one racer wins a rename), reads and validates it there, and
finally moves it to `inbox/done/` or to `inbox/rejected/` beside `<name>.error.txt`.
Every move goes through directory descriptors (engine.supervise.folders), so a symlinked
folder cannot redirect a file out of the inbox. A file is never lost: every path ends
in `done/` or `rejected/`, and whatever is left in `.claimed` after a crash is handled
again at start (delivery is idempotent on the claimed name, which is the `source_file`
the journal records).

Hostile input is expected: files are read with O_NOFOLLOW|O_NONBLOCK and checked to be
regular (no symlinks, FIFOs or directories) and at most MAX_BYTES, then parsed by
`engine.supervise.message.parse_message`. A file still open for writing is left alone (a read lease
probe tells); where leases are unavailable, a file must be unchanged for `settle` s.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import logging
import os
import re
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from engine.errors import EngineError, InvalidMessageError, UnsafeInboxError
from engine.supervise.folders import InboxFolders, InboxHome, move_into, open_dir
from engine.trust.sender import FileFacts

if TYPE_CHECKING:
    from engine.supervise.message import Message

# What the inbox reads at all, before parsing (engine.supervise.message re-exports both). The
# message models (pydantic) are imported with the first file read, not at the supervisor's start.
MAX_BYTES = 64 * 1024
SUFFIXES = (".json", ".yaml", ".yml")

SPECIAL_DIRS = {"done", "rejected"}
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@+=-]{0,199}$")
log = logging.getLogger("ratchet.supervisor")
_CLAIM_SEP = "~"  # claimed name: <ns hex>-<pid>~<original name>; valid names hold no "~"
_UNSAFE = "!unsafe-"
_MAKING = ".new-"  # a claim folder's name until it is locked (then <ns hex>-<pid>)
_MAKE_TRIES = 10


# --- Finding and claiming -------------------------------------------------------------


@dataclass(frozen=True)
class Claimed:
    """A file this process (or its crashed predecessor) took out of the inbox."""

    path: Path  # inbox/.claimed/<box>/<key>
    key: str  # the unique claimed name: the `source_file` recorded in the journal
    name: str  # the name it was dropped under (or a stand-in for an unsafe one)
    original: str | None = None  # an unsafe name as dropped (kept in memory only)

    @property
    def safe_name(self) -> bool:
        return not self.name.startswith(_UNSAFE)


def pending(home: InboxHome) -> list[str]:
    """Names dropped in the inbox, oldest name first (hidden names and our folders skipped)."""
    try:
        names = os.listdir(home.inbox)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if not n.startswith(".") and n not in SPECIAL_DIRS)


def is_complete(path: Path, *, settle: float = 1.0) -> bool:
    """True unless `path` looks still being written (open for writing, or just modified).

    Non-regular files count as complete: they are claimed and rejected like any other.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return True  # a symlink (ELOOP), vanished, unreadable: claiming decides
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return True
        try:
            # A read lease is refused (EAGAIN) while anyone holds the file open for writing.
            fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
        except OSError as exc:
            if exc.errno == errno.EAGAIN:
                return False
            return time.time() - st.st_mtime >= settle  # no leases here: go by age
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
        return True
    finally:
        os.close(fd)


class ClaimBox:
    """This process's private folder under inbox/.claimed, flock'd for as long as it lives.

    Two supervisors on one home must not handle each other's claimed files; a crashed
    one's files must still be handled. So each claims into its own folder and holds a
    lock on it (the kernel drops the lock when the process dies): a folder whose lock
    can be taken belongs to a dead process, and `adopt_orphans` takes its files over.

    Hence a folder is never unlocked under its final name while its owner lives: it is
    made and locked under a temporary name (`_MAKING`), then renamed. Another process's
    sweep may take a temporary folder not locked yet for a dead one's and remove it
    (it is empty); the maker then sees its folder gone and starts again.
    Raises UnsafeInboxError if an inbox folder is a symlink.
    """

    def __init__(self, home: InboxHome) -> None:
        self.home = home
        self.dirs = InboxFolders(home)
        try:
            self._fd, self.path = self._make()
        except BaseException:
            self.dirs.close()
            raise

    def _make(self) -> tuple[int, Path]:
        """Make, lock, then name this process's folder: (its descriptor, its path)."""
        for _ in range(_MAKE_TRIES):
            stamp = f"{time.time_ns():016x}-{os.getpid()}"
            making = _MAKING + stamp
            os.mkdir(making, dir_fd=self.dirs.claimed)
            fd = open_dir(making, self.dirs.claimed)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                os.rename(making, stamp, src_dir_fd=self.dirs.claimed, dst_dir_fd=self.dirs.claimed)
            except (BlockingIOError, FileNotFoundError):
                os.close(fd)  # a sweep holds or removed it (it took it for a dead one's): again
                with contextlib.suppress(OSError):
                    os.rmdir(making, dir_fd=self.dirs.claimed)
                continue
            except BaseException:
                os.close(fd)
                raise
            os.fsync(self.dirs.claimed)
            return fd, self.home.inbox_claimed / stamp
        raise EngineError(f"{self.home.inbox_claimed}: could not make a claim folder in {_MAKE_TRIES} tries "
                          "(other processes kept removing it); check what else sweeps this folder")

    def adopt_orphans(self) -> list[Claimed]:
        """Move the files of dead claimers into this box; every file this box then holds.

        A folder is a dead claimer's if its lock can be taken, whatever its name (a
        temporary one included: its maker died, or will find it gone and start again).
        """
        for entry in os.scandir(self.home.inbox_claimed):
            if entry.path == str(self.path):
                continue
            if entry.is_dir(follow_symlinks=False):
                self._adopt_folder(entry.name)
            elif _CLAIM_SEP in entry.name:  # a flat claim (no owner folder): ownerless
                os.rename(entry.name, entry.name, src_dir_fd=self.dirs.claimed, dst_dir_fd=self._fd)
        os.fsync(self._fd)
        return self.holding()

    def _adopt_folder(self, folder: str) -> None:
        try:
            fd = open_dir(folder, self.dirs.claimed)
        except (OSError, UnsafeInboxError):
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return  # its owner is alive: its files are its own
        try:
            for name in os.listdir(fd):
                os.rename(name, name, src_dir_fd=fd, dst_dir_fd=self._fd)
            os.rmdir(folder, dir_fd=self.dirs.claimed)
            os.fsync(self.dirs.claimed)
        except OSError:
            log.warning("could not adopt %s; trying again later", self.home.inbox_claimed / folder, exc_info=True)
        finally:
            os.close(fd)

    def _item(self, key: str) -> Claimed:
        return Claimed(self.path / key, key, key.partition(_CLAIM_SEP)[2] or key)

    def claim(self, name: str) -> Claimed | None:
        """Take `name` out of the inbox; None if another process claimed it first.

        If this box itself is gone (removed behind this process's back), says so and
        makes a new one: a vanished box must not pass for "someone else won", forever.
        """
        shown = name if _is_safe(name) else _UNSAFE + hashlib.sha256(os.fsencode(name)).hexdigest()[:12]
        key = f"{time.time_ns():016x}-{os.getpid()}{_CLAIM_SEP}{shown}"
        try:
            os.rename(name, key, src_dir_fd=self.dirs.inbox, dst_dir_fd=self._fd)
        except FileNotFoundError:
            if os.fstat(self._fd).st_nlink > 0:
                return None  # the box is there: the file went to another claimer
            log.warning("claim folder %s vanished (removed by another process?); making a new one", self.path)
            os.close(self._fd)
            self._fd, self.path = self._make()
            return self.claim(name)
        # The claimed name is the delivery's idempotency key: it must survive a crash.
        os.fsync(self._fd)
        return Claimed(self.path / key, key, shown, None if shown == name else name)

    def holding(self) -> list[Claimed]:
        return [self._item(k) for k in sorted(os.listdir(self._fd))]

    def mark_done(self, item: Claimed) -> Path:
        """Move an applied file to inbox/done/ under its name (made unique if taken)."""
        return move_into(self._fd, item.key, self.dirs.done, self.home.inbox_done, item.name)

    def reject(self, item: Claimed, reason: str, detail: str = "") -> Path:
        """Move a refused file to inbox/rejected/ beside `<name>.error.txt` saying why."""
        return _reject(self._fd, self.dirs.rejected, self.home.inbox_rejected, item, reason, detail)

    def unclaim(self, item: Claimed) -> Path:
        """Put a file back under its name (never dispatched); never replaces one."""
        return move_into(self._fd, item.key, self.dirs.inbox, self.home.inbox, item.name)

    def close(self) -> None:
        """Release the box; removed if empty (else the next start adopts what is left)."""
        if self._fd < 0:
            return
        with contextlib.suppress(OSError):  # not empty: the next start adopts what is left
            os.rmdir(self.path.name, dir_fd=self.dirs.claimed)
        os.close(self._fd)
        self._fd = -1
        self.dirs.close()


def _is_safe(name: str) -> bool:
    return bool(NAME_PATTERN.match(name)) and ".." not in name


# --- Reading and validating -----------------------------------------------------------


def read_message(item: Claimed, *, max_bytes: int = MAX_BYTES) -> Message:
    """Open, check and parse a claimed file; InvalidMessageError says why it is refused."""
    return read_claimed(item, max_bytes=max_bytes)[0]


def read_claimed(item: Claimed, *, max_bytes: int = MAX_BYTES) -> tuple[Message, dict[str, object], FileFacts]:
    """`read_message`, plus the object as written and what the open descriptor says of the
    file (its owner: the claimed file's, never another name's), for proving its sender."""
    data, facts = read_claimed_bytes(item, max_bytes=max_bytes)
    from engine.supervise.message import parse_message_object

    message, raw = parse_message_object(data, Path(item.name).suffix)
    return message, raw, facts


def read_claimed_bytes(item: Claimed, *, max_bytes: int = MAX_BYTES) -> tuple[bytes, FileFacts]:
    """A claimed file's bytes, read safely (not parsed), and what its open descriptor says of it."""
    if not item.safe_name:
        raise InvalidMessageError("unsafe file name", "use letters, digits and _ . @ + = - only, not starting with '.'")
    if not item.name.endswith(SUFFIXES):
        raise InvalidMessageError("unsupported file type", f"{item.name!r}: only .json, .yaml and .yml files are read")
    try:
        fd = os.open(item.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InvalidMessageError("symlink refused", "drop the file itself, not a link to it") from exc
        raise InvalidMessageError("unreadable file", f"{exc.strerror}") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InvalidMessageError("not a regular file", _kind(st.st_mode))
        if st.st_size > max_bytes:
            raise InvalidMessageError("file too large", f"{st.st_size} bytes; the limit is {max_bytes}")
        data = _read_at_most(fd, max_bytes + 1)
        facts = FileFacts(uid=st.st_uid, nlink=os.fstat(fd).st_nlink, mode=st.st_mode)
    finally:
        os.close(fd)
    if len(data) > max_bytes:  # grew after fstat
        raise InvalidMessageError("file too large", f"more than {max_bytes} bytes")
    return data, facts


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks, size = [], 0
    while size < limit:
        chunk = os.read(fd, limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _kind(mode: int) -> str:
    for test, label in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return label
    return "a device or special file"


# --- Filing ---------------------------------------------------------------------------


def _reject(src: int, folder: int, where: Path, item: Claimed, reason: str, detail: str) -> Path:
    target = move_into(src, item.path.name, folder, where, item.name)
    lines = [" ".join(reason.split()), " ".join(detail.split()), f"claimed as: {item.key}"]
    if item.original is not None:
        lines.append(f"dropped as: {item.original!r}")
    lines.append("")
    note = target.name + ".error.txt"
    tmp = f".{note}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=folder)
    try:
        os.write(fd, "\n".join(lines).encode("utf-8"))
    finally:
        os.close(fd)
    os.replace(tmp, note, src_dir_fd=folder, dst_dir_fd=folder)
    os.fsync(folder)
    return target
