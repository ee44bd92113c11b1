"""The signing envelope of an inbox message: which bytes a person's Ed25519 key signs.

A signed message is the message itself plus a `signature` object:

    {"run": "r1", "trigger": "approve", "by": "bob", "comment": "ok",
     "signature": {"answers": 5, "expires": "2026-11-30T21:00:00Z", "value": "<base64>"}}

`answers` is the seq of the journal record that opened the wait the message answers (a
`waiting` or `escalated` record: `ratchet status --json` shows it as `stands_at`), so a
signature for one wait cannot be replayed on a later one; `expires` (UTC, ISO 8601)
bounds how long it may be used. `value` is the Ed25519 signature, base64, of the
*signed bytes*: the whole message object as written, with `signature.value` removed,
encoded as canonical JSON (keys sorted at every level, no whitespace, UTF-8, non-ASCII
characters as themselves) — `json.dumps(obj, sort_keys=True, separators=(",", ":"),
ensure_ascii=False)` in Python; `jq -cjS 'del(.signature.value)'` for messages without
floats. Nothing else is signed and nothing is home-made: Ed25519 is PyCA cryptography's.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey


def signed_bytes(message: dict[str, Any]) -> bytes:
    """The bytes a signature covers: `message` without `signature.value`, canonical JSON."""
    body = dict(message)
    signature = body.get("signature")
    if isinstance(signature, dict):
        body["signature"] = {k: v for k, v in signature.items() if k != "value"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def sign(message: dict[str, Any], key: Ed25519PrivateKey, answers: int, expires: datetime) -> dict[str, Any]:
    """`message` (plain JSON data) with a `signature` for the wait `answers`, valid until `expires` (UTC)."""
    envelope = {"answers": answers, "expires": expires.strftime("%Y-%m-%dT%H:%M:%SZ")}
    unsigned = {**message, "signature": envelope}
    value = base64.b64encode(key.sign(signed_bytes(unsigned))).decode("ascii")
    return {**message, "signature": {**envelope, "value": value}}


def signature_holds(message: dict[str, Any], key: Ed25519PublicKey) -> bool:
    """Does `message["signature"]["value"]` sign `message` (as `signed_bytes` encodes it) under `key`?"""
    try:
        value = base64.b64decode(message["signature"]["value"], validate=True)
        key.verify(value, signed_bytes(message))
    except (InvalidSignature, binascii.Error, KeyError, TypeError, ValueError):
        return False
    return True
