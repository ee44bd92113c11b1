"""Seals: signed checkpoints of a journal's hash chain, so a rewrite without the home's key shows.

The chain (`prev`) shows accidents, not a forger: whoever can write the file can edit a
line and recompute every `prev` after it. A seal is a `sealed` record (journal.records.
Sealed) that covers the line just before it: that line's seq (`through`) and sha256
(`head`), signed with the home's Ed25519 key. To rewrite anything before a seal
unnoticed, one must sign again, which takes the key. The signed bytes are plain text
(`message`), so an auditor checks a seal with `openssl` alone (FORMAT.md "Seals"):

    ratchet seal v1
    run <run_id>
    seq <through>
    sha256 <head>

each line ended by "\\n". A seal in the journal cannot show that lines were cut off the
end, seal included: the latest seal of each run is also kept outside it, as the store's
side file `seals/<run_id>.json` (the same record), and `check` requires the journal to
still hold it. Which records are sealed, and when, is the engine's choice; this module
builds and checks seals and never decides.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from journal.keys import key_id
from journal.reader import line_hash
from journal.records import Record, Sealed, encode
from journal.store import Cursor, Store

KIND = "seals"  # the store's side files of this kind: each run's latest seal, outside its journal
_side_decoder = msgspec.json.Decoder(Sealed)


def message(run_id: str, through: int, head: str) -> bytes:
    """The exact bytes a seal signs (ASCII; see the module's docstring and FORMAT.md)."""
    return f"ratchet seal v1\nrun {run_id}\nseq {through}\nsha256 {head}\n".encode()


def sign(key: Ed25519PrivateKey, run_id: str, through: int, head: str) -> Sealed:
    """A seal of line `through` of `run_id`'s journal, whose sha256 is `head` (`seq`, `prev`
    and `ts` are the writer's to fill in, as for any record)."""
    signature = key.sign(message(run_id, through, head))
    return Sealed(through=through, head=head, key=key_id(key), sig=base64.b64encode(signature).decode())


def seal_after(records: Sequence[Record], after: Cursor, key: Ed25519PrivateKey, run_id: str) -> Sealed:
    """The seal to append right after `records`, a batch about to follow `after`: it covers
    the batch's last line (or the line at `after` itself when the batch is empty).

    It computes the batch's lines as the writer will: it fills in each record's `seq` and
    `prev` (the writer sets the same values again), so every `ts` must be set already."""
    seq, head = after.seq, after.head
    for record in records:
        if not record.ts:
            raise ValueError("seal_after: every record of the batch needs its ts before it is sealed")
        seq += 1
        record.seq, record.prev = seq, head
        head = line_hash(encode(record))
    return sign(key, run_id, seq, head)


def signed_by(seal: Sealed, run_id: str, public: Ed25519PublicKey) -> bool:
    """Is `seal.sig` a valid signature of this seal's message by `public`?"""
    try:
        signature = base64.b64decode(seal.sig, validate=True)
        public.verify(signature, message(run_id, seal.through, seal.head))
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


# --- the side file: each run's latest seal, outside its journal ------------------------------

def publish_seal(store: Store, run_id: str, seal: Sealed) -> str:
    """Keep `seal` as the run's latest, atomically, and only once the journal holding it is
    durable: the side file is never ahead of the journal.

    Not fsync'd (`sync=False`): it costs no fsync, a killed process never loses it, and a
    power loss may leave the previous seal (harmless: the journal still holds it) or no
    file, which `check` reports until the run's next open writes it again (engine.run.sealing).
    """
    return store.publish(KIND, _name(run_id), encode(seal) + b"\n", sync=False)


def fetch_seal(store: Store, run_id: str) -> Sealed | None:
    """The run's latest seal kept outside its journal; None if there is none.
    Raises ValueError if the side file is not a seal (damaged or replaced)."""
    data = store.fetch(KIND, _name(run_id))
    if data is None:
        return None
    try:
        return _side_decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ValueError(f"{store.locate(KIND, _name(run_id))}: not a seal ({exc})") from exc


def _name(run_id: str) -> str:
    return f"{run_id}.json"


def side_name(run_id: str) -> str:
    """The name of the run's side file (of kind KIND): for a store that keeps it itself."""
    return _name(run_id)


# --- checking ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class SealCheck:
    """The verdict on a journal's seals. `line`/`problem` name the first problem, if any.

    `seals`: how many seals the journal holds (0: unsealed); `through`: the last line
    sealed; `records`: lines in the journal, so `records - through - 1` came after the
    last seal (a live run between two rests, or lines appended by hand)."""

    ok: bool
    seals: int = 0
    through: int = 0
    records: int = 0
    line: int | None = None
    problem: str | None = None

    @property
    def sealed(self) -> bool:
        return self.seals > 0

    def note(self) -> str:
        """What an ok verdict adds to `verify`'s line."""
        if not self.sealed:
            return "unsealed"  # written before sealing, or it has not rested yet
        after = self.records - self.through - 1
        tail = f"; {after} records after it" if after > 0 else ""
        return f"sealed through line {self.through}{tail}"


def check(records: Sequence[Record], run_id: str, public: Ed25519PublicKey | None,
          side: Sealed | None, *, detached: bool = False) -> SealCheck:
    """Check the seals of a journal whose chain is already verified (journal.verify).

    `public`: the key its seals must be made by (None: no key known, so any seal fails);
    `side`: the run's latest seal kept outside the journal (`fetch_seal`, fetched BEFORE
    the records were read: it is never ahead of the journal), None if there is none.
    Every seal must cover the line before it, be made by `public` and verify; the side
    file's seal must verify and be in the journal, or lines were cut off its end.
    `detached`: a journal file away from its home (`ratchet export`): it has no side file,
    so its absence says nothing (and a cut end cannot be seen).
    """
    want = key_id(public) if public is not None else None
    seals, through, last_seal_line = 0, 0, 0
    by_seq: dict[int, Sealed] = {}
    for record in records:
        if not isinstance(record, Sealed):
            continue
        problem = _check_one(record, run_id, public, want, first_line=last_seal_line + 1)
        if problem:
            return SealCheck(False, seals, through, len(records), record.seq, problem)
        seals, through, last_seal_line = seals + 1, record.through, record.seq
        by_seq[record.seq] = record
    if side is not None:
        line, problem = _check_side(side, by_seq, run_id, public, want, len(records))
        if problem:
            return SealCheck(False, seals, through, len(records), line, problem)
    elif seals and not detached:
        return SealCheck(False, seals, through, len(records), last_seal_line,
                         f"the journal is sealed but the home keeps no seal of it ({KIND}/{_name(run_id)} is "
                         "missing): it was removed, so lines cut off the end could not be seen")
    return SealCheck(True, seals, through, len(records))


def _check_one(seal: Sealed, run_id: str, public: Ed25519PublicKey | None, want: str | None,
               first_line: int) -> str | None:
    span = f"lines {first_line}-{seal.through}" if first_line < seal.through else f"line {seal.through}"
    if seal.through != seal.seq - 1 or seal.head != seal.prev:
        return (f"seal does not match the line before it (it sealed line {seal.through} with hash "
                f"{seal.head[:12]}…, the journal has {seal.prev[:12]}…): {span} changed since they were sealed")
    if public is None or want is None:
        return (f"sealed by key {seal.key}, but there is no public key to check it; pass --key with "
                "the home's exported public key (ratchet keys export)")
    if seal.key != want:
        return f"sealed by key {seal.key}, not by the key given ({want}): an unknown key"
    if not signed_by(seal, run_id, public):
        return f"seal signature does not verify: {span} changed since they were sealed, or the seal is forged"
    return None


def _check_side(side: Sealed, by_seq: dict[int, Sealed], run_id: str, public: Ed25519PublicKey | None,
                want: str | None, records: int) -> tuple[int, str | None]:
    where = f"the home's latest seal ({KIND}/{_name(run_id)})"
    held = by_seq.get(side.seq)
    if held is not None and (held.through, held.head, held.key, held.sig) == (side.through, side.head, side.key,
                                                                             side.sig):
        return 0, None  # the very seal the journal holds, whose signature was just checked
    if public is None or side.key != want or not signed_by(side, run_id, public):
        return side.seq, f"{where} is not validly signed by the key given: it was forged or replaced"
    if records < side.seq:
        return records, (f"the journal ends at line {records}, but {where} sealed it through line "
                         f"{side.through} (seal at line {side.seq}): lines were cut off its end")
    held = by_seq.get(side.seq)
    if held is None or held.through != side.through or held.head != side.head:
        return side.seq, (f"line {side.seq} is not the seal the home kept ({where} sealed line "
                          f"{side.through} with hash {side.head[:12]}…): the journal was rewritten or cut")
    return 0, None
