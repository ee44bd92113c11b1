"""The triggers the engine fires by itself (README, "Defining machines": reserved triggers).

Kept apart from the pydantic models (engine.definition.spec, spawn_spec), so that running
a pinned definition (engine.definition.pinned) needs none of them.
"""

from __future__ import annotations

OK, TIMEOUT, ERROR = "ok", "timeout", "error"
JOINED, FAILED = "joined", "failed"  # the triggers a join fires: it holds / it can no longer hold
