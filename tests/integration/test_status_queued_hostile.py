"""A queued inbox file is anyone's text, shown before the supervisor judged it: `ratchet status`
must not let it forge a row of the table, move the terminal's cursor, or widen the table without
bound (engine.supervise.queued.said). --json keeps the text as it is (JSON escapes it).

Real commands on a real home (the file store).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from engine.supervise.queued import said

RATCHET = str(Path(sys.executable).parent / "ratchet")
REVIEW = """
name: review
version: 1
initial: review
states:
  review: {approvers: [alice], timeout: 1d}
  done: {final: true}
transitions:
  - {trigger: approve, source: review, dest: done}
"""
FORGED = "mallory\nr2      review   done   finished"


def test_a_hostile_queued_file_shows_on_one_line_of_the_status_table(tmp_path: Path) -> None:
    (tmp_path / "review.yaml").write_text(REVIEW)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RATCHET_")} | {"RATCHET_HOME": str(tmp_path / "h")}
    started = subprocess.run([RATCHET, "start", "review.yaml", "--id", "r1"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=120)
    assert started.returncode == 0, started.stderr
    message = {"run": "r1", "trigger": "approve\x1b[2J" + "x" * 5000, "by": FORGED}
    (tmp_path / "h" / "inbox" / "hostile.json").write_text(json.dumps(message))
    table = subprocess.run([RATCHET, "status"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert len(lines) == 2 and lines[1].startswith("r1 "), table.stdout  # the header and r1: no forged r2
    assert "mallory\\nr2" in lines[1], lines[1]  # the newline is shown as an escape
    assert len(lines[1]) < 400, len(lines[1])
    [row] = json.loads(subprocess.run([RATCHET, "status", "r1", "--json"], cwd=tmp_path, env=env,
                                      capture_output=True, text=True, timeout=120, check=True).stdout)
    assert row["queued"][0]["by"] == FORGED  # as sent, for scripts


def test_a_queued_cell_holds_printable_text_only() -> None:
    # (click strips escapes itself when stdout is not a terminal: this is what a terminal gets)
    cell = said([{"age_s": 3, "asks": "approve\x1b]0;owned\x07", "by": "eve\r\x1b[1A"}], lambda s: f"{s} s")
    assert cell.isprintable(), repr(cell)
    assert cell == "queued 3 s: approve\\x1b]0;owned\\x07 by eve\\r\\x1b[1A", cell


# 400 bytes whose `by` is 10^8 strings deep in aliases: the supervisor refuses the file (no
# aliases), but status read it first, and str() of it never came back.
LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{b}: &{b} [{', '.join([f'*{a}'] * 10)}]\n" for a, b in zip("abcdefg", "bcdefgh", strict=True)
) + "run: r1\ntrigger: approve\nby: *h\n"


def test_a_queued_yaml_bomb_leaves_status_quick_and_shows_no_sender(tmp_path: Path) -> None:
    (tmp_path / "review.yaml").write_text(REVIEW)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RATCHET_")} | {"RATCHET_HOME": str(tmp_path / "h")}
    subprocess.run([RATCHET, "start", "review.yaml", "--id", "r1"], cwd=tmp_path, env=env, capture_output=True,
                   text=True, timeout=120, check=True)
    (tmp_path / "h" / "inbox" / "laughs.yaml").write_text(LAUGHS)
    table = subprocess.run([RATCHET, "status"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30)
    assert table.returncode == 0 and ": approve by ?" in table.stdout, table.stdout + table.stderr
    [row] = json.loads(subprocess.run([RATCHET, "status", "r1", "--json"], cwd=tmp_path, env=env,
                                      capture_output=True, text=True, timeout=30, check=True).stdout)
    assert [(q["asks"], q["by"]) for q in row["queued"]] == [("approve", "?")]
