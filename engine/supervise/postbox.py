"""The supervisor's side of the store's messages table (journal.messages), where the store has one.

On PostgreSQL a message is a row, so that whichever supervisor delivers a run's messages
sees them all, wherever they were sent from. This host's inbox files become rows here:
a claimed file, once checked (a known run; its sender proven against people.yaml by the
file's owner, or its signature), is posted under its claimed name — the key the journal
records as `source_file`, unique (a nanosecond stamp and this process's id) and durable
before it is used — with what this host proved, signed with the home's key
(engine.trust.posted). Posting again after a crash inserts nothing. The file stays claimed
until its row is settled (by this supervisor or another), then is filed in done/ or
rejected/ as the run's journal has it (the mailroom asks it: a row is a hint, and may be gone,
expired by the retention, engine.supervise.retention, before this host looked).

Rows are delivered by the mailroom like files, and proven again from the row by the
supervisor that delivers them (engine.trust.posted): a flag in a row proves nothing.
"""

from __future__ import annotations

import getpass
import logging
import socket
from typing import TYPE_CHECKING, Any

from engine.home import Home
from engine.supervise.inbox import Claimed
from engine.trust.posted import attest, prove_posted
from engine.trust.sender import Sender
from journal.messages import MessageBox, MessageState, Posted, Posting

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from engine.trust.people import People

log = logging.getLogger("ratchet.supervisor")


def who_posts(what: str) -> str:
    """`host H inbox (user U)`: who put a row there, for people (not a proof)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "?"
    return f"{what} on {socket.gethostname()} (Unix user {user})"


class Postbox:
    """This supervisor's posted files, and the messages table it delivers from."""

    def __init__(self, home: Home, box: MessageBox) -> None:
        self.home = home
        self.box = box
        self.posted: dict[str, Claimed] = {}  # key -> this host's file, claimed until its row settles
        self._run_of: dict[str, str] = {}  # key -> the run it was posted for
        self._key: Ed25519PrivateKey | None = None

    def home_key(self) -> Ed25519PrivateKey:
        """The home's key, which signs this host's proofs and checks other hosts' (KeyFileError
        if this home lacks the store's key: it could not seal either)."""
        if self._key is None:
            from engine.run.sealing import home_key

            self._key = home_key(self.home)
        return self._key

    def post_file(self, item: Claimed, data: bytes, run_id: str, answers: int, sender: Sender) -> None:
        """Post a checked inbox file as a row (once, whatever happens), and keep it claimed."""
        suffix = item.name.rpartition(".")[2]
        posting = Posting(key=item.key, run_id=run_id, body=data, format="json" if suffix == "json" else "yaml",
                          answers=answers, posted_by=who_posts(f"inbox file {item.name}"))
        posting = attest(posting, sender, self.home_key())
        if self.box.post_message(posting):
            log.info("posted %s to %s", item.name, self.box.locate_message(item.key))
        from engine.faults import crash_point

        crash_point("message_posted")  # posted, not filed: a restart posts nothing again
        self.posted[item.key] = item
        self._run_of[item.key] = run_id

    def take(self, key: str) -> Claimed | None:
        """This host's file posted under `key`, no longer waited for (None: not this host's)."""
        self._run_of.pop(key, None)
        return self.posted.pop(key, None)

    def queued(self) -> list[Posted]:
        return self.box.queued_messages()

    def prove(self, people: People | None, raw: dict[str, Any], posting: Posting) -> Sender:
        return prove_posted(people, raw, posting, self.home_key().public_key())

    def settle(self, key: str, accepted: bool, reason: str) -> bool:
        """Mark the row; False if it was settled already (by another supervisor)."""
        return self.box.settle_message(key, accepted, reason)

    def settled_files(self) -> list[tuple[Claimed, str, MessageState | None, str]]:
        """This host's posted files whose rows settled, or are gone (expired before this host
        looked): (file, its run, the row's state (None: gone), why it was refused)."""
        if not self.posted:
            return []
        states: dict[str, tuple[MessageState, str | None]] = self.box.message_states(self.posted)
        done: list[tuple[Claimed, str, MessageState | None, str]] = []
        for key in list(self.posted):
            state, reason = states.get(key, (None, None))
            if state != "queued":
                run_id = self._run_of.get(key, "")
                item = self.take(key)
                if item is not None:
                    done.append((item, run_id, state, reason or ""))
        return done
