"""The `ratchet` console script: a plain `ratchet supervise` starts without click; every
other command line goes to click (engine.cli.app), as before.

Why: a supervisor restarted after a crash should have its recovered runs moving within
100 ms (README, "Performance"), and importing click and the command group, then parsing
with them, costs ~8 ms of it. Only a command line read here exactly as click reads it
takes the short way:

    ratchet [--home DIR] [--store URL] [--debug] supervise [--once] [--quiet] [--workers N]
            [--rescan S] [--grace S] [--job-timeout S] [--home DIR] [--store URL]

each option at most once, written `--name value`, the value in the option's range and not
starting with `-`; the home a folder (or any path, with a PostgreSQL store). Anything else
(help, a typo, `--name=value`, a value out of range, a home that is missing or a file,
`--metrics-port`) goes to click, which parses it and says its errors exactly as before.
Both ways end in engine.cli.supervising.supervise; tests/unit/test_launch.py checks that
click would call it with the same values for every command line taken here.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NoReturn

HOME_DEFAULT = ".ratchet"  # engine.cli.app's --home default
# `supervise`'s options: flags, and the numbers with their type and (inclusive) range, as
# engine.cli.supervision declares them; `--home` and `--store` come with every command.
FLAGS = ("--once", "--quiet")
NUMBERS: dict[str, tuple[type[int] | type[float], float, float]] = {
    "--workers": (int, 1, 256), "--rescan": (float, 0.1, 3600), "--grace": (float, 0, 3600),
    "--job-timeout": (float, 1, 86400)}
PLACES = ("--home", "--store")


@dataclass(frozen=True)
class SuperviseLine:
    """A `ratchet supervise` command line, read: what engine.cli.supervising.supervise is called with."""

    home: Path
    store: str | None  # what the line sets RATCHET_STORE to (None: left as it is)
    debug: bool = False
    once: bool = False
    quiet: bool = False
    workers: int = 2
    rescan: float = 5.0
    grace: float = 10.0
    job_timeout: float = 300.0


def read_supervise(argv: Sequence[str], environ: Mapping[str, str]) -> SuperviseLine | None:
    """The command line `argv` (without the program's name) read as `ratchet supervise`, or
    None for anything this module leaves to click."""
    if "supervise" not in argv:
        return None
    at = list(argv).index("supervise")
    group = _options(argv[:at], flags=("--debug",), numbers={})
    command = _options(argv[at + 1:], flags=FLAGS, numbers=NUMBERS)
    if group is None or command is None:
        return None
    # click converts each --home it gets (the group's from its option, RATCHET_HOME or the default):
    # one that is a regular file is a usage error, which click says.
    homes = [group.get("--home") or environ.get("RATCHET_HOME") or HOME_DEFAULT, command.get("--home")]
    if any(home is not None and _is_file(str(home)) for home in homes):
        return None
    home = Path(str(command.get("--home") or homes[0]))
    store = command.get("--store") or group.get("--store")
    if not home.is_dir() and str(store or environ.get("RATCHET_STORE", "file:")).startswith("file:"):
        return None  # no home: click's command says so (engine.cli.app.existing_home)
    line = SuperviseLine(home=home, store=None if store is None else str(store), debug="--debug" in group,
                         once="--once" in command, quiet="--quiet" in command)
    return replace(line, **{name.lstrip("-").replace("-", "_"): command[name] for name in NUMBERS if name in command})


def _options(tokens: Sequence[str], *, flags: Sequence[str],
             numbers: Mapping[str, tuple[type[int] | type[float], float, float]]) -> dict[str, Any] | None:
    """`tokens` as options (each at most once), or None if any is not one this module reads."""
    found: dict[str, Any] = {}
    rest = iter(tokens)
    for token in rest:
        if token in found:
            return None
        if token in flags:
            found[token] = True
            continue
        if token not in numbers and token not in PLACES:
            return None
        value = next(rest, None)
        if not value or value.startswith("-"):
            return None
        if token in numbers:
            kind, low, high = numbers[token]
            number = _number(value, kind)
            if number is None or not low <= number <= high:
                return None
            found[token] = number
        else:
            found[token] = value
    return found


def _number(text: str, kind: type[int] | type[float]) -> int | float | None:
    """`12` (or, for a float, `0.5`): plain ASCII digits, which int() and float() read as click does."""
    whole, dot, fraction = text.partition(".")
    digits = "0123456789"
    if not whole or not all(c in digits for c in whole) or (dot and (kind is int or not fraction)):
        return None
    if not all(c in digits for c in fraction):
        return None
    return kind(text)


def _is_file(path: str) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def run() -> None:
    """The console script's entry point."""
    line = read_supervise(sys.argv[1:], os.environ)
    if line is None:
        from engine.cli.app import run as click_run

        click_run()
        return
    from engine.cli.supervising import supervise

    if line.store:
        os.environ["RATCHET_STORE"] = line.store  # as engine.cli.app.use_store: workers inherit it
    try:
        code = supervise(line.home, debug=line.debug, once=line.once, workers=line.workers, rescan=line.rescan,
                         grace=line.grace, job_timeout=line.job_timeout, quiet=line.quiet)
    except (KeyboardInterrupt, EOFError):
        print("\nAborted!", file=sys.stderr)  # as click says it
        sys.exit(1)
    except Exception as exc:
        _fail(exc, line.debug)
    sys.exit(code)


def _fail(exc: Exception, debug: bool) -> NoReturn:
    """Say `exc` as click's command would (engine.cli.app.RatchetGroup.invoke): one line and
    exit 1 for the user's or the environment's errors, a traceback for a bug or with --debug."""
    from engine.cli.app import user_error

    error = None if debug else user_error(exc)
    if error is None:
        raise exc
    error.show()
    sys.exit(error.exit_code)
