"""`ratchet X` imports only the module that registers X (engine.cli.app.COMMAND_MODULES):
the supervisor, and every worker (which re-imports the console script), start without
the validation stack. The table must name every command, and the right module."""

from __future__ import annotations

import json
import subprocess
import sys

from engine.cli import app

CHECK = """
import json, sys
from engine.cli import main
before = {m for m in sys.modules if m.startswith("engine.cli.")}
cmd = main.get_command(None, sys.argv[1])
print(json.dumps({"before": sorted(before), "found": cmd is not None,
                  "after": sorted(m for m in sys.modules if m.startswith("engine.cli.")),
                  "validation": [m for m in ("pydantic", "engine.definition.loader") if m in sys.modules]}))
"""


def _probe(command: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CHECK, command], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_the_table_names_every_command_and_its_module():
    app.load_commands()
    registered = {name: cmd.callback.__module__ for name, cmd in app.main.commands.items() if cmd.callback}
    assert set(registered) == set(app.COMMAND_MODULES) == set(app.COMMAND_ORDER)
    assert {name: f"engine.cli.{module}" for name, module in app.COMMAND_MODULES.items()} == registered


def test_importing_the_cli_loads_no_command_and_supervise_loads_one():
    probe = _probe("supervise")
    assert probe["before"] == ["engine.cli.app"]
    assert probe["found"] and "engine.cli.supervision" in probe["after"]
    assert "engine.cli.definitions" not in probe["after"] and probe["validation"] == []


def test_an_unknown_command_is_still_a_usage_error():
    out = subprocess.run([sys.executable, "-c", "from engine.cli import main; main()", "sprevise"],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "No such command 'sprevise'" in out.stderr, out.stderr
