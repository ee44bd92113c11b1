"""Messages sent to runs and not applied yet, for people: `ratchet status`, the dashboard, the API.

On the file store a queued message is an inbox file not filed yet: dropped in `inbox/` (not
claimed yet) or claimed by a supervisor (`inbox/.claimed/*/`), not one in `done/` or
`rejected/`. On PostgreSQL it is also a queued row of `ratchet_messages`, whichever host
posted it (a file this host claimed and posted is its row: one entry, by its key).

Read once per listing and indexed by run id (`queued_index`), never once per run: each file
is read once (a regular file, no symlink, at most 64 KiB) and parsed as plain JSON or YAML for
its run, what it asks and who sent it — not validated: the supervisor judges it, and a refusal
is then shown from the run's journal, as before. A message whose key the run's journal
already records (journaled, not filed yet: a crash in between) is not shown (`shown_for`).
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from engine.home import Home
from engine.run.clock import iso
from engine.supervise.inbox import MAX_BYTES, SUFFIXES
from journal.messages import message_box

Where = Literal["inbox", "claimed", "row"]
CELL_WIDTH = 40  # what a table cell shows of a queued message's trigger or sender at most


@dataclass(frozen=True)
class Queued:
    """One message waiting for its run: what it asks, who sent it, since when, and where it is."""

    key: str  # the row's key, the claimed name (both the `source_file` it will be journaled under), or the name
    run_id: str
    asks: str  # "approve", "resolve skip approve", "cancel", "upgrade" ("?": unreadable)
    by: str
    since: datetime  # the file's time (written or dropped), or when the row reached the store
    where: Where  # an inbox file not claimed yet, a claimed one, or a row (PostgreSQL)

    def to_dict(self, now: datetime) -> dict[str, Any]:
        age = max(0.0, (now - self.since).total_seconds())
        return {"key": self.key, "asks": self.asks, "by": self.by, "since": iso(self.since), "age_s": round(age, 3),
                "where": self.where}


def queued_index(home: Home) -> dict[str, list[Queued]]:
    """Every queued message of the home, by run id, oldest first (one look at the inbox, one query)."""
    found: dict[str, Queued] = {}
    box = message_box(home.store)
    if box is not None:
        for posted in box.queued_messages():
            parsed = _parse(posted.posting.body, posted.posting.format)
            since = posted.posted_at or datetime.now(UTC)
            found[posted.posting.key] = _queued(posted.posting.key, posted.posting.run_id, parsed, since, "row")
    for key, parsed, since, where in _inbox_files(home):
        if key not in found and isinstance(parsed.get("run"), str):
            found[key] = _queued(key, parsed["run"], parsed, since, where)
    index: dict[str, list[Queued]] = {}
    for item in sorted(found.values(), key=lambda q: q.since):
        index.setdefault(item.run_id, []).append(item)
    return index


def queued_keys(home: Home) -> frozenset[str]:
    """The keys of the queued messages only (names listed, no file read): what changes when a
    message is sent or filed (the dashboard looks at it every second)."""
    keys = set(box.queued_message_keys()) if (box := message_box(home.store)) else set()
    keys.update(name for name, _, _ in _message_files(home))
    return frozenset(keys)


def shown_for(index: dict[str, list[Queued]], run_id: str, answered: Collection[str],
              now: datetime) -> list[dict[str, Any]]:
    """The run's queued messages as `status --json` lists them, less those its journal answered."""
    return [q.to_dict(now) for q in index.get(run_id, ()) if q.key not in answered]


def said(queued: list[dict[str, Any]], span: Any) -> str:
    """`queued 3 s: approve by alice (+1 more)`: the oldest, for a table cell (`span` formats seconds)."""
    if not queued:
        return ""
    first = queued[0]
    more = f" (+{len(queued) - 1} more)" if len(queued) > 1 else ""
    return f"queued {span(first['age_s'])}: {_cell(first['asks'])} by {_cell(first['by'])}{more}"


def _cell(text: str, width: int = CELL_WIDTH) -> str:
    """An inbox file's text for a table cell: it is anyone's and not validated yet, so a newline
    must not forge a row nor an escape move the terminal's cursor (written as escapes), and a long
    one is cut."""
    clean = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return clean if len(clean) <= width else clean[: width - 1] + "…"


def _queued(key: str, run_id: str, parsed: dict[str, Any], since: datetime, where: Where) -> Queued:
    by = parsed.get("by")  # a string, or "?": str() of a YAML file's nested aliases could be 10^9 items long
    return Queued(key=key, run_id=run_id, asks=_asks(parsed), by=by if isinstance(by, str) and by else "?",
                  since=since, where=where)


def _asks(message: dict[str, Any]) -> str:
    if message.get("cancel") is True:
        return "cancel"
    if message.get("upgrade") is not None:
        return "upgrade"
    trigger = message.get("trigger")
    if isinstance(message.get("resolve"), str):
        return f"resolve {message['resolve']}" + (f" {trigger}" if isinstance(trigger, str) else "")
    return trigger if isinstance(trigger, str) else "?"


def _parse(body: bytes, format_: str) -> dict[str, Any]:
    """The message's fields, or {} if it is not a mapping (the supervisor will refuse it)."""
    if format_ == "json":
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):
            return {}
    else:
        import yaml  # only when a YAML message is queued

        try:
            data = yaml.safe_load(body)
        except (yaml.YAMLError, ValueError, RecursionError):
            return {}
    return data if isinstance(data, dict) else {}


def _inbox_files(home: Home) -> list[tuple[str, dict[str, Any], datetime, Where]]:
    """(key, fields, time, where) of each message file in the inbox, claimed or not."""
    files = [_read(path, name, where) for name, path, where in _message_files(home)]
    return [f for f in files if f[1]]


def _message_files(home: Home) -> list[tuple[str, str, Where]]:
    """(name, path, where) of each message file in the inbox and in the supervisors' claim boxes."""
    found: list[tuple[str, str, Where]] = []
    for folder, where in ((home.inbox, "inbox"), (home.inbox_claimed, "claimed")):
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if where == "claimed" and entry.is_dir(follow_symlinks=False):  # a supervisor's claim box
                try:
                    inner = list(os.scandir(entry.path))
                except OSError:
                    continue
                found.extend((e.name, e.path, "claimed") for e in inner if e.name.endswith(SUFFIXES))
            elif entry.name.endswith(SUFFIXES):
                found.append((entry.name, entry.path, where))  # type: ignore[arg-type]
    return found


def _read(path: str, key: str, where: Where) -> tuple[str, dict[str, Any], datetime, Where]:
    """A message file's fields and time, read safely ({} if it cannot be: gone, a symlink, too big)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return key, {}, datetime.now(UTC), where
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_BYTES:
            return key, {}, datetime.now(UTC), where
        body = os.read(fd, MAX_BYTES + 1)
    except OSError:
        return key, {}, datetime.now(UTC), where
    finally:
        os.close(fd)
    since = datetime.fromtimestamp(st.st_mtime, UTC)
    return key, _parse(body, "json" if key.endswith(".json") else "yaml"), since, where
