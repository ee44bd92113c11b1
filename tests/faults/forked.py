"""Run a piece of the engine in a forked child: a real process that SIGKILL kills for real.

Forking from the test process skips ~0.5 s of interpreter start and imports per run,
which keeps "every crash point of every machine" within the time budget.
"""

from __future__ import annotations

import json
import os
import traceback
from collections.abc import Callable
from pathlib import Path

from engine import faults


def run_forked(work: Callable[[], object], env: dict[str, str], result: Path,
               cwd: Path | None = None) -> tuple[int, object]:
    """Call `work()` in a child with exactly `env` as its environment (crash points read
    afresh). Returns (exit code, or -signal if killed; what `work` returned, as JSON, or the
    child's traceback; "" if it died before writing either)."""
    result.unlink(missing_ok=True)
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            os.environ.clear()
            os.environ.update(env)
            if cwd is not None:
                os.chdir(cwd)
            faults.reset()
            result.write_text(json.dumps(work()))
            code = 0
        except BaseException:
            result.write_text(json.dumps(traceback.format_exc()))
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), json.loads(result.read_text()) if result.exists() else ""
