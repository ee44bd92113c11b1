"""What several command families read the same way: machine names, KEY=VALUE pairs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MACHINES_DIR = Path("machines")  # where a MACHINE given by name is looked up (README, "Commands")


def parse_inputs(pairs: tuple[str, ...], option: str = "--input") -> dict[str, Any]:
    """`k=v` pairs; a value is JSON when it parses as JSON (`n=3`, `ok=true`), else a string."""
    from engine.cli.app import UserError  # lazy: `ratchet supervise`'s own start reads MACHINES_DIR without click

    values: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise UserError(f"{option} {pair!r}: expected KEY=VALUE")
        try:
            values[key] = json.loads(raw)
        except ValueError:
            values[key] = raw
    return values
