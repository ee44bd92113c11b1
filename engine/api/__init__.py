"""The Python API: `from engine import Ratchet` (README, "Python API")."""

from engine.api.client import Ratchet
from engine.api.snapshot import Escalation, RunSnapshot
from engine.run.concurrent import Launch
from engine.supervise.sending import Sent

__all__ = ["Escalation", "Launch", "Ratchet", "RunSnapshot", "Sent"]
