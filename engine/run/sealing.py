"""When the engine seals a journal, and the home's sealing key (journal.seal does the signing).

A batch is sealed when it leaves the run at rest — waiting, sleeping before a retry,
escalated, or ended with nothing owed: the moments the engine stops touching the run,
so the journal is sealed at least whenever the run waits, escalates or ends. The seal
goes in the same batch as the records it covers (one write, one fsync; signing costs
~50 µs), and is then kept outside the journal as the store's side file (journal.seal):
after the journal, so never ahead of it, and once the run's lock is released, so its
write never holds up another process's message.

A crash can cut a seal off a batch (a torn last line) or come before its side file:
opening the run again finishes that (`_seal_owed` in the runner, `repair_side` here),
as replay does for tickets.

The key is `$RATCHET_HOME/keys/home.key` (Ed25519, PEM, 0600) with its public half
`keys/home.pub`; it is created on first use (before a runner first takes a run's lock:
its fsyncs must not hold a run), once even when several processes start at once
(journal.keys.load_or_create_private_key).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from engine.home import Home
from engine.run.replay import RunState
from engine.run.status import RunStatus
from journal import KeyFileError, Record, Sealed, Writer
from journal.keys import (
    key_id,
    load_or_create_private_key,
    load_private_key,
    load_public_key,
    public_key_from_pem,
    public_pem,
    write_public_key,
)
from journal.seal import fetch_seal, publish_seal, seal_after

log = logging.getLogger(__name__)

_AT_REST = (RunStatus.WAITING, RunStatus.RETRYING, RunStatus.ESCALATED)


def key_paths(home: Home) -> tuple[Path, Path]:
    """(private, public) key files of the home's sealing key."""
    folder = home.root / "keys"
    return folder / "home.key", folder / "home.pub"


def home_key(home: Home) -> Ed25519PrivateKey:
    """The home's sealing key, created (with its public half) on first use.

    A store shared by several homes (PostgreSQL: one home per host) keeps the public half of
    the key its journals are sealed with (`keys/home.pub` among its side files, published
    by the first home to seal): a home holding another key, or none, raises KeyFileError
    rather than seal with a key of its own, which `verify` would call unknown everywhere."""
    private, public = key_paths(home)
    shared = _shared_key(home)
    if shared is not None and not os.path.lexists(private):
        raise KeyFileError(f"{private}: missing, and the journals in {home.store.location} are sealed with key "
                           f"{key_id(shared)}; hint: copy keys/home.key and keys/home.pub from a home that uses "
                           f"this store into {private.parent} (mode 0600)")
    key = load_or_create_private_key(private)
    if shared is not None and key_id(shared) != key_id(key):
        raise KeyFileError(f"{private}: key {key_id(key)}, but the journals in {home.store.location} are sealed "
                           f"with key {key_id(shared)}; hint: copy keys/home.key and keys/home.pub from a home "
                           f"that uses this store into {private.parent} (mode 0600)")
    write_public_key(public, key)
    if shared is None and _shares_store(home):
        home.store.publish(*_SHARED_KEY, public_pem(key))
    return key


_SHARED_KEY = ("keys", "home.pub")  # the store's side file naming the key its journals are sealed with


def _shares_store(home: Home) -> bool:
    """Does the store live outside this home (so other homes may use it too)? The file store's
    side file would be keys/home.pub itself."""
    return home.store.locate(*_SHARED_KEY) != str(key_paths(home)[1])


def _shared_key(home: Home) -> Ed25519PublicKey | None:
    if not _shares_store(home):
        return None
    data = home.store.fetch(*_SHARED_KEY)
    if data is None:
        return None
    return public_key_from_pem(data, home.store.locate(*_SHARED_KEY))


def home_public_key(home: Home) -> Ed25519PublicKey | None:
    """The public key this home's seals are checked with: keys/home.pub, or the public half of
    keys/home.key if only that is left; None if the home has no key yet.

    Raises KeyFileError if home.pub is not the public half of home.key (when this user may
    read the private key): one was replaced."""
    private, public = key_paths(home)
    readable = private.exists() and os.access(private, os.R_OK)  # an auditor may have home.pub only
    own = load_private_key(private).public_key() if readable else None
    if not public.exists():
        return own
    published = load_public_key(public)
    if own is not None and key_id(own) != key_id(published):
        raise KeyFileError(f"{public}: not the public half of {private} (key {key_id(published)}, not "
                           f"{key_id(own)}); one was replaced: check with the public key you exported")
    return published


def at_rest(rs: RunState) -> bool:
    """Does the engine leave the run alone now, until something from outside (or a retry's
    time) comes? Then its journal is sealed."""
    return rs.status in _AT_REST or (rs.ended and rs.todo is None)


def side_behind(home: Home, rs: RunState) -> bool:
    """Does an ended run lack the side file of its last seal (a kill between the journal and it)?
    Nothing opens an ended run again, so the supervisor asks this at start-up and advances
    the run, whose session publishes the seal (`repair_side`)."""
    if not (rs.ended and rs.todo is None and rs.seal is not None):
        return False
    try:
        kept = fetch_seal(home.store, rs.run_id)
    except ValueError:
        return False  # damaged: `verify` says so; not repaired behind its back
    return kept is None or kept.seq < rs.seal.seq


class Sealer:
    """Seals the batches of one Runner (one process); `enabled=False` only for benchmarks."""

    def __init__(self, home: Home, *, enabled: bool = True) -> None:
        self.home = home
        self.enabled = enabled
        self._key: Ed25519PrivateKey | None = None
        self._published: dict[str, int] = {}  # run -> seq of the seal this process knows is the side file
        self._pending: dict[str, Sealed] = {}  # run -> its latest seal, durable, side file not yet written

    def seal(self, rs: RunState, batch: list[Record], writer: Writer, ts: str) -> Sealed | None:
        """The seal to append to `batch` (its records already folded into `rs`), or None."""
        if not self.enabled or not at_rest(rs):
            return None
        seal = seal_after(batch, writer.cursor, self._signing_key(), rs.run_id)
        seal.ts = ts
        return seal

    def sealed(self, run_id: str, seal: Sealed, *, kept: bool = False) -> None:
        """`seal` is durable in the journal now: keep it outside too, once the run's lock is
        released (`publish`): its two fsyncs must not hold up another process's message.
        `kept`: the writer kept it as the side file in the same transaction (PostgreSQL)."""
        if kept:
            self._published[run_id] = max(seal.seq, self._published.get(run_id, 0))
            self._pending.pop(run_id, None)
            return
        self._pending[run_id] = seal

    def publish(self) -> None:
        """Write the side files of the seals made since the last call (after the journal's
        lock is released), never replacing a newer seal another process kept meanwhile."""
        pending, self._pending = self._pending, {}
        for run_id, seal in pending.items():
            if self._published.get(run_id, 0) >= seal.seq:
                continue
            try:
                try:
                    kept = fetch_seal(self.home.store, run_id)
                except ValueError:
                    kept = None  # damaged: the journal's seal replaces it
                if kept is None or kept.seq < seal.seq:
                    publish_seal(self.home.store, run_id, seal)
            except OSError as exc:  # the run moved on, durably: never fail it for this copy
                log.warning("run %s: cannot keep its latest seal outside its journal (%s); "
                            "the next open of the run tries again", run_id, exc)
                continue
            self._published[run_id] = max(seal.seq, kept.seq if kept is not None else 0)

    def owed(self, rs: RunState) -> bool:
        """Does a run found at rest lack the seal of its last line (a crash cut it off, or the
        journal predates sealing)?"""
        return self.enabled and at_rest(rs) and (rs.seal is None or rs.seal.seq != rs.last_seq)

    def repair_side(self, rs: RunState) -> None:
        """Publish the run's latest seal if the side file may be behind (a crash came between
        the journal and it): checked once per run and process, then `publish` does it."""
        if self.enabled and rs.seal is not None and rs.run_id not in self._published:
            self._pending.setdefault(rs.run_id, rs.seal)

    def prepare(self) -> None:
        """Load (or, the first time in the home, create) the key before a run's lock is
        taken: its files and fsyncs must not hold up another process's message."""
        if self.enabled:
            self._signing_key()

    def _signing_key(self) -> Ed25519PrivateKey:
        if self._key is None:
            self._key = home_key(self.home)
        return self._key
