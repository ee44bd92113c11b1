"""The mailroom: an inbox file's whole life, from its drop to done/ or rejected/.

A file is claimed once complete (`scan`; files of claimers that died are `adopt`ed),
read and checked, then either filed at once (invalid, for an unknown or damaged run, or
already journaled before a crash) or queued for its run as a `Letter`, with what the run
stood at when the file arrived (`RunState.stands_at`: a file that answers a wait that is
over is refused as stale). The supervisor's loop asks for a run's `next_delivery`, hands
it to a worker, and gives the mailroom the result (`delivered`): applied files go to
done/, refused ones to rejected/ saying why, and an engine error is tried again up to
DELIVERY_TRIES times. `close` gives back, at shutdown, the files never handed over.
A cancel jumps its run's queue (`cancelling` names the runs that have one): the
supervisor kills a worker that holds such a run, then delivers the cancel before
anything else.

Delivery is idempotent on the claimed key (the `source_file` the journal records), so a
file ever handed to a worker is never unclaimed: it stays claimed, and the next start
adopts it and delivers it again under the same key. The file mechanics (claiming,
moving, reading safely) are engine.supervise.inbox's.

Each file's sender is proven here (engine.trust.sender), from the file as claimed and
opened — its owner by `fstat` on that descriptor, or its signature — against the
home's people.yaml, read again whenever it changes. The proof (or why there is none)
travels with the letter to the worker, which refuses an unproven sender under the run's
lock and journals the refusal like any other.

Where the store keeps messages as rows (PostgreSQL: engine.supervise.postbox), a checked
file is posted as a row instead of queued, and stays claimed until its row is settled;
the queues are fed from the rows (this host's and every other's), each proven again from
the row (engine.trust.posted), and a delivery settles its row, then files the file if it
is this host's. Delivery is idempotent on the row's key, the `source_file` the journal
records: two supervisors may both try a row, the run's single writer journals it once.
A file whose row another supervisor settled is filed as the run's journal has it (a row
marked delivered that the journal does not know is not believed), and one whose row is
gone (settled, then expired: engine.supervise.retention) is checked again from the start:
the journal answers it, or it is posted again and delivered once.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import threading
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from engine.errors import InvalidMessageError
from engine.home import Home
from engine.supervise import inbox
from engine.supervise.inbox import ClaimBox, Claimed
from engine.supervise.jobs import Job, Result
from engine.supervise.postbox import Postbox
from engine.supervise.retention import Retention
from engine.supervise.runs import RunTable
from engine.trust.sender import FileFacts, Sender, prove
from journal.messages import Posted, message_box

if TYPE_CHECKING:
    from engine.supervise.message import Message
    from engine.supervise.metrics import Metrics  # only with --metrics-port (prometheus-client is an extra)
    from engine.trust.people import People, PeopleBook

log = logging.getLogger("ratchet.supervisor")

DELIVERY_TRIES = 3  # an engine error on delivery; then the file is rejected with it


@dataclass
class Letter:
    """A valid message waiting for its run: a claimed inbox file, or a row of the store's messages."""

    key: str  # the delivery's idempotency key, journaled as `source_file`: the claimed name, or the row's key
    message: Message
    answers: int | None  # what the run stood at when the message came (RunState.stands_at); None: unknown
    tries: int = 0  # deliveries that ended in an engine error so far
    sender: Sender | None = None  # who sent it, as proven from the claimed file (or the row)
    item: Claimed | None = None  # the file (None: a row; its file, if this host's, is the postbox's)


class Mailroom:
    """Claims, checks, queues per run, and files the inbox's files (`open` before use)."""

    def __init__(self, home: Home, runs: RunTable, *, retention: float | None = None) -> None:
        self.home = home
        self.runs = runs
        self.settle = 1.0  # a file unchanged this long counts as complete where leases are unavailable
        self._box: ClaimBox | None = None
        self._queues: dict[str, deque[Letter]] = {}  # run -> its files, oldest first (runs insertion-ordered)
        self._sent: set[str] = set()  # claimed keys handed to a worker at least once: never unclaimed
        self._incomplete: set[str] = set()  # names in the inbox still being written
        self.observer: Metrics | None = None  # counts the files filed (the supervisor's metrics)
        self._people: PeopleBook | None = None  # people.yaml, read with the first file (pydantic: not at start)
        box = message_box(home.store)
        self.postbox = Postbox(home, box) if box is not None else None  # messages as rows (PostgreSQL)
        # Settled rows expire (PostgreSQL); `retention` seconds, None: RATCHET_MESSAGE_RETENTION at the first look.
        self.retention = Retention(box, retention) if box is not None else None

    def warm_up(self) -> None:
        """Import what reading a file needs (the message and people.yaml models: pydantic,
        ~100 ms) in a thread, after the start-up it would delay: the first file read after
        a start then finds it loaded."""

        def load() -> None:
            with contextlib.suppress(Exception):  # a failed import fails again, said, at the first file
                importlib.import_module("engine.supervise.message")
                importlib.import_module("engine.trust.people")

        threading.Thread(target=load, name="warm-up", daemon=True).start()

    def open(self, *, settle: float) -> None:
        """Take this process's claim box (UnsafeInboxError if an inbox folder is a symlink)."""
        self.settle = settle
        self._box = ClaimBox(self.home)

    @property
    def box(self) -> ClaimBox:
        """This process's claim box (between `open` and `close`)."""
        if self._box is None:
            raise RuntimeError("the mailroom is not open")  # a bug in the caller, not data
        return self._box

    # --- taking files in ----------------------------------------------------------------------

    def scan(self) -> None:
        """Claim and check every complete file in the inbox."""
        self._incomplete.clear()
        for name in inbox.pending(self.home):
            if not inbox.is_complete(self.home.inbox / name, settle=self.settle):
                self._incomplete.add(name)
                continue
            try:
                item = self.box.claim(name)
            except OSError as exc:  # e.g. EACCES, a name too long for the claimed name: skip it
                log.error("inbox file %s cannot be claimed: %s; it is left in place", name, exc)
                continue
            if item is not None:
                self._accept(item)
        self.take_posted()

    @property
    def waiting_for_writers(self) -> bool:
        """Did the last scan leave files that were still being written? (Look again soon.)"""
        return bool(self._incomplete)

    def adopt(self) -> None:
        """Take over (and handle) the files of claimers that died; delivery is idempotent."""
        try:
            items = self.box.adopt_orphans()
        except OSError as exc:
            log.error("adopting claimed files failed: %s; trying again at the next rescan", exc)
            return
        queued = {letter.key for queue in self._queues.values() for letter in queue}
        posted = self.postbox.posted if self.postbox is not None else {}
        for item in items:
            if item.key not in queued and item.key not in posted:
                self._accept(item)

    def _accept(self, item: Claimed) -> None:
        """Check a claimed file; queue it for its run, or file it now."""
        try:
            self._check(item)
        except OSError as exc:  # one bad file (or a full disk) must not stop the supervisor
            log.error("inbox file %s: %s; it stays claimed and is handled again at the next start", item.key, exc)

    def _check(self, item: Claimed) -> None:
        try:
            data, facts = inbox.read_claimed_bytes(item)
            from engine.supervise.message import parse_message_object

            message, raw = parse_message_object(data, "." + item.name.rpartition(".")[2])
        except InvalidMessageError as exc:
            self._reject(item, exc.reason, exc.detail)
            return
        tracked = self.runs.refresh(message.run)  # up to date: the file answers what the run is at now
        if tracked is None:
            self._reject(item, *self._no_such_run(message.run))
            return
        if tracked.broken:
            self._refuse_damaged(item, tracked.broken)
            return
        answer = tracked.state.inbox_files.get(item.key)
        if answer is not None:  # journaled before a crash: only the filing was missing
            self._file(item, *answer)
            return
        sender = self._sender(message, raw, facts)
        if self.postbox is not None:  # a row, delivered from the rows (by whichever supervisor gets it)
            self.postbox.post_file(item, data, message.run, tracked.state.stands_at, sender)
            return
        letter = Letter(item.key, message, tracked.state.stands_at, sender=sender, item=item)
        self._queues.setdefault(message.run, deque()).append(letter)

    def _sender(self, message: Message, raw: dict[str, object], facts: FileFacts) -> Sender:
        """Who sent the file: proven against people.yaml, or taken at its word in an open home."""
        people = self._current_people(message.by)
        return people if isinstance(people, Sender) else prove(people, raw, facts)

    def _current_people(self, by: str) -> People | None | Sender:
        """people.yaml as it is now (None: an open home), or the refusal of `by` if it cannot be used."""
        from engine.trust.people import PeopleBook, PeopleFileError

        if self._people is None:
            self._people = PeopleBook(self.home.root)
        try:
            return self._people.current()
        except PeopleFileError as exc:  # fail closed: nobody can be verified until it is fixed
            log.error("%s", exc)
            first = str(exc).splitlines()[0]
            return Sender(by, problem=f"not verified: people.yaml cannot be used ({first}); hint: fix it")

    # --- rows of the store's messages table (PostgreSQL) ----------------------------------------

    def take_posted(self) -> None:
        """Queue the rows not settled yet (each once), and file this host's files whose rows settled."""
        if self.postbox is None:
            return
        try:
            queued = {letter.key for queue in self._queues.values() for letter in queue}
            for posted in self.postbox.queued():
                if posted.posting.key not in queued:
                    self._accept_row(self.postbox, posted)
            for item, run_id, state, reason in self.postbox.settled_files():
                self._file_settled(item, run_id, state, reason)
        except OSError as exc:
            log.error("posted messages: %s; looking again at the next rescan", exc)

    def _file_settled(self, item: Claimed, run_id: str, state: str | None, reason: str) -> None:
        """File this host's file whose row settled (`state`) or is gone (None): as the run's journal
        has it; else as the row says if refused (before any run journaled it: an unknown run, say);
        a row gone is checked again from the start (posted again, it is delivered once)."""
        tracked = self.runs.refresh(run_id) if run_id else None
        answer = tracked.state.inbox_files.get(item.key) if tracked is not None and not tracked.broken else None
        if answer is not None:
            self._file(item, *answer, counted=False)  # counted by the supervisor that settled it
        elif state == "refused":
            self._file(item, False, reason, counted=False)
        elif state is None:
            log.info("inbox file %s: its row is gone (expired) and its run never journaled it; checking it again",
                     item.key)
            self._accept(item)
        else:  # marked delivered, and no journal knows it: a row changed by hand is not believed
            self._reject(item, "not applied", f"its row in {self.home.store.location} says delivered, but run "
                         f"'{run_id}' never journaled it (a row changed by hand?); send it again")

    def expire(self, now: datetime) -> None:
        """Delete the store's settled messages older than the retention (PostgreSQL; at start and each rescan)."""
        if self.retention is not None:
            self.retention.expire(now)

    def _accept_row(self, postbox: Postbox, posted: Posted) -> None:
        from engine.supervise.message import parse_message_object

        row = posted.posting
        try:
            message, raw = parse_message_object(row.body, "." + row.format)
        except InvalidMessageError as exc:
            self._settle(row.key, False, f"{exc.reason}: {exc.detail}" if exc.detail else exc.reason, kind=exc.reason)
            return
        if message.run != row.run_id:
            self._settle(row.key, False, f"the row names run '{row.run_id}' but its message is for '{message.run}'",
                         kind="wrong run")
            return
        tracked = self.runs.refresh(message.run)
        if tracked is None:
            kind, detail = self._no_such_run(message.run)
            self._settle(row.key, False, f"{kind}: {detail}", kind=kind)
            return
        if tracked.broken:
            self._settle(row.key, False, f"run's journal is damaged: {tracked.broken}", kind="damaged journal")
            return
        answer = tracked.state.inbox_files.get(row.key)
        if answer is not None:  # journaled before a crash (here or on another host): only the settling was missing
            self._settle(row.key, *answer)
            return
        people = self._current_people(message.by)
        sender = people if isinstance(people, Sender) else postbox.prove(people, raw, row)
        letter = Letter(row.key, message, row.answers, sender=sender)
        self._queues.setdefault(message.run, deque()).append(letter)

    def _settle(self, key: str, accepted: bool, reason: str, kind: str = "refused by the run") -> None:
        """A row's delivery is journaled (or refused before any run could journal it): mark the
        row, then file this host's file of it, if any. The metrics count it here, once, where the
        row was settled (`kind`: the refusal's label, as a file's `_reject` reason)."""
        postbox = self.postbox
        if postbox is None:
            return
        settled = postbox.settle(key, accepted, reason)  # False: another supervisor settled it first
        if settled and not accepted:
            log.warning("refused message %s: %s", key, reason)
        item = postbox.take(key)
        if item is not None:
            self._file(item, accepted, reason, counted=settled)
            return
        if settled and self.observer is not None:
            self.observer.inbox_filed(accepted, "" if accepted else kind, reason)
        if settled and accepted:
            log.info("applied %s", key)

    # --- delivering ---------------------------------------------------------------------------

    def runs_with_mail(self) -> list[str]:
        """Runs with files queued, in the order their first file came."""
        return list(self._queues)

    def cancelling(self) -> list[str]:
        """Runs with a cancel queued (it is delivered before their other files)."""
        return [run_id for run_id, queue in self._queues.items() if any(letter.message.cancel for letter in queue)]

    def next_delivery(self, run_id: str) -> Job | None:
        """The job delivering the run's oldest file, counted as handed to a worker from now on.

        None if it has no file; a run that is gone or damaged has its files refused instead.
        """
        tracked = self.runs.get(run_id)
        if tracked is None or tracked.broken:
            for letter in self._queues.pop(run_id, ()):
                self._refuse_damaged(letter, tracked.broken if tracked else "it is gone")
            return None
        queue = self._queues.get(run_id)
        while queue:
            letter = next((letter for letter in queue if letter.message.cancel), queue[0])  # a cancel first
            answer = tracked.state.inbox_files.get(letter.key)
            if answer is None:
                break
            # Journaled already (a row another supervisor delivered): no job, only its settling.
            queue.remove(letter)
            self._finish(letter, *answer)
        if not queue:
            self._queues.pop(run_id, None)
            return None
        self._sent.add(letter.key)
        return Job(run_id, "deliver", message=letter.message, source_file=letter.key,
                   last_seq=tracked.state.last_seq, answers=letter.answers, sender=letter.sender)

    def delivered(self, result: Result) -> None:
        """File the delivery's file by its result (a died/killed/locked one stays queued)."""
        queue = self._queues.get(result.job.run_id)
        letter = next((letter for letter in queue or () if letter.key == result.job.source_file), None)
        if queue is None or letter is None:
            return
        if result.outcome == "ok":
            queue.remove(letter)
            self._finish(letter, bool(result.accepted), result.reason)
        elif result.outcome == "error":
            letter.tries += 1
            if letter.tries >= DELIVERY_TRIES:
                queue.remove(letter)
                self._finish(letter, False, f"engine error: {result.error}")
        if not queue:
            self._queues.pop(result.job.run_id, None)

    # --- filing -------------------------------------------------------------------------------

    def _finish(self, letter: Letter, accepted: bool, reason: str) -> None:
        """A letter's delivery is over: file its file, or settle its row."""
        self._sent.discard(letter.key)
        if letter.item is not None:
            self._file(letter.item, accepted, reason)
        else:
            self._settle(letter.key, accepted, reason)

    def _refuse_damaged(self, letter: Letter | Claimed, error: str) -> None:
        if isinstance(letter, Letter) and letter.item is None:
            self._settle(letter.key, False, f"run's journal is damaged: {error}", kind="damaged journal")
            return
        item = letter.item if isinstance(letter, Letter) else letter
        if item is None:
            return
        try:
            self._reject(item, f"run's journal is damaged: {error}", "fix or remove the journal, then send again")
        except OSError as exc:
            log.error("inbox file %s: %s; it stays claimed and is filed again at the next start", item.key, exc)

    def _file(self, item: Claimed, accepted: bool, reason: str, *, counted: bool = True) -> None:
        try:
            if accepted:
                target = self.box.mark_done(item)
                self._sent.discard(item.key)
                if self.observer is not None and counted:
                    self.observer.inbox_filed(True)
                log.info("applied %s", target.name)
            else:
                self._reject(item, "refused by the run", reason, counted=counted)
        except OSError as exc:
            log.error("inbox file %s: %s; it stays claimed and is filed again at the next start", item.key, exc)

    def _no_such_run(self, run_id: str) -> tuple[str, str]:
        """(reason, detail) for a message to a run the table does not hold: archived (it ended
        and was retired: nothing applies to it any more), or unknown."""
        store = self.home.store
        if run_id in store.archived_ids():  # a rare path: the listing is read only here
            return "archived run", (f"run '{run_id}' is archived in {store.location}: it ended, and nothing "
                                    "more can be applied to it")
        return "unknown run", f"no run '{run_id}' in {store.location}"

    def _reject(self, item: Claimed, reason: str, detail: str, *, counted: bool = True) -> None:
        target = self.box.reject(item, reason, detail)
        self._sent.discard(item.key)
        if self.observer is not None and counted:
            self.observer.inbox_filed(False, reason, detail)
        log.warning("rejected %s: %s: %s", target.name, reason, detail)

    def close(self) -> None:
        """At shutdown: give back the files never handed to a worker, then release the box."""
        for queue in self._queues.values():
            for letter in queue:
                item = letter.item
                if item is None:
                    continue  # a row: it stays queued in the store for whoever delivers it next
                if item.key in self._sent:
                    # Maybe journaled under this key: it stays claimed, and the next start adopts
                    # it under the same key (delivery is idempotent on it). Never applied twice.
                    log.info("inbox file %s stays claimed; the next start finishes it", item.key)
                    continue
                try:  # never dispatched: nothing journaled, give it back
                    self.box.unclaim(item)
                except OSError as exc:
                    log.error("inbox file %s: %s; it stays claimed for the next start", item.key, exc)
        self._queues.clear()
        self.box.close()
