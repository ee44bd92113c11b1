"""The shipped contract review's split action, for the machines of this folder (which
resolve actions beside themselves): the very function, imported from machines/."""

import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[3] / "machines"))

from contract_review_actions import split_clauses  # noqa: F401
