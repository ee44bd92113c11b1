"""Messages kept by the store itself: a capability some stores have (PostgreSQL's), not every one.

On the file store a message is an inbox file and nothing else. A store with a messages
table (journal.pg_messages) also keeps each message as a row, so that any supervisor
sharing the store delivers it, not only the host whose inbox folder got the file:

- `post_message(posting)` inserts a message once: a second post with the same `key`
  inserts nothing and returns False (a host that crashed after posting posts again
  harmlessly);
- `queued_messages()` lists the messages not yet settled, oldest first;
- `settle_message(key, accepted, reason)` marks one delivered or refused, once;
- `message_states(keys)` says how each settled (a host files the inbox file it posted);
- `watch_messages(on_post)` hints that a message was posted or settled;
- `expire_messages(before, limit)` deletes at most `limit` settled messages settled before
  `before`, the oldest first (the retention: queued messages are never deleted). Two
  callers at once delete different messages and never wait for each other.

A settled message can be deleted at any time without a message applying twice: the run's
journal records the key of every message it applied or refused (`source_file`), and a
delivery checks it under the run's lock, so the same key posted again is a no-op.

`body` is the message as its file carries it, byte for byte (a signature still verifies on
it); the store never judges it. Who sent it is judged by whoever delivers it
(engine.supervise.postbox), and the row only records what the posting host found.
`message_box(store)` is the store's box, or None where messages are files only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, Literal, Protocol, runtime_checkable

import msgspec

from journal.store import Watch

MessageState = Literal["queued", "delivered", "refused"]


class Posting(msgspec.Struct, frozen=True):
    """One message as posted: its key, run, bytes, and what the posting host found of its sender."""

    key: str  # unique; the `source_file` the run's journal records for it
    run_id: str
    body: bytes  # the message as written (JSON or YAML bytes)
    format: Literal["json", "yaml"] = "json"
    answers: int | None = None  # what the run stood at when it arrived (RunState.stands_at)
    posted_by: str = ""  # who put it there, for people: `host H inbox (uid U)`, `ratchet send by U@H`
    verified_by: str | None = None  # the name the posting host proved (None: not proven there)
    via: str | None = None  # how it proved it
    problem: str | None = None  # why it could not prove it
    attestation: str | None = None  # the posting host's proof, signed with the home's key


class Posted(msgspec.Struct, frozen=True):
    """A message row as read back: the posting, its order of arrival, and how it settled."""

    id: int
    posting: Posting
    state: MessageState = "queued"
    reason: str | None = None
    posted_at: datetime | None = None  # when it reached the store (the server's clock)


@runtime_checkable
class MessageBox(Protocol):
    """A store's messages table (see the module's docstring)."""

    def post_message(self, posting: Posting) -> bool: ...

    def queued_messages(self) -> list[Posted]: ...

    def queued_message_keys(self) -> list[str]: ...

    def settle_message(self, key: str, accepted: bool, reason: str) -> bool: ...

    def message_states(self, keys: Iterable[str]) -> dict[str, tuple[MessageState, str | None]]: ...

    def watch_messages(self, on_post: Callable[[str], None]) -> Watch: ...

    def locate_message(self, key: str) -> str: ...

    def expire_messages(self, before: datetime, limit: int) -> int: ...


def message_box(store: Any) -> MessageBox | None:
    """`store` itself if it keeps messages as rows (PostgreSQL), else None (the file store)."""
    return store if isinstance(store, MessageBox) else None
