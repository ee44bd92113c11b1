"""New run ids: ULIDs, so `ls runs/` lists runs in the order they started."""

from __future__ import annotations

import secrets
from datetime import datetime

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # base 32 without I, L, O, U: no misreading


def new_run_id(now: datetime) -> str:
    """A ULID (26 chars: 48-bit milliseconds + 80 random bits): unique, sorts by start time."""
    value = (int(now.timestamp() * 1000) << 80) | secrets.randbits(80)
    return "".join(_CROCKFORD[(value >> (5 * i)) & 31] for i in reversed(range(26)))
