"""journal/ stands alone: importing it loads no `engine` module and nothing outside stdlib + msgspec
(the file store's inotify watch, journal.file_watch, loads watchdog only when a caller watches)."""

from __future__ import annotations

import json
import subprocess
import sys

CHECK = """
import json, sys
before = set(sys.modules)
import journal, journal.follow, journal.verify, journal.store
import journal.file_store, journal.writer, journal.reader, journal.durable
loaded = sorted(set(sys.modules) - before)
print(json.dumps(loaded))
"""


def test_journal_imports_no_engine_and_only_stdlib_and_msgspec() -> None:
    out = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, check=True)
    loaded = json.loads(out.stdout)
    assert "journal" in loaded
    tops = {name.split(".")[0] for name in loaded}
    assert "engine" not in tops
    allowed = {"journal", "msgspec", "typing_extensions"}  # the last is msgspec's own dependency
    assert tops - set(sys.stdlib_module_names) - allowed == set()
