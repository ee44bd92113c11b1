"""`ratchet supervise` starts its forkserver before the CLI loads: only for that command."""

from __future__ import annotations

import pytest

from engine.cli.prestart import command_word


@pytest.mark.parametrize(("args", "word"), [
    (["supervise", "--once"], "supervise"),
    (["--home", "/srv/supervise", "status"], "status"),
    (["--home=/x", "--debug", "supervise"], "supervise"),
    (["--store", "postgresql://h/db", "supervise"], "supervise"),
    (["run", "supervise"], "run"),
    (["--debug"], None),
    ([], None),
])
def test_the_command_word_skips_global_options_and_their_values(args, word):
    assert command_word(args) == word
