"""The `ratchet` command group: global options, home resolution, and how errors reach the user.

Exit codes (for every command):
  0  success
  1  the command ran and found a problem (invalid definition, broken journal, refused input)
  2  usage error (bad option or argument; click's own convention)
  128+N  stopped by signal N before it was done (130: Ctrl-C in `run`; a second signal to `supervise`)
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from journal import Store

EXIT_PROBLEM = 1


class UserError(click.ClickException):
    """A mistake the user can fix: printed as one line on stderr, exit 1, no traceback."""

    exit_code = EXIT_PROBLEM

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"ratchet: error: {self.format_message()}", err=True, file=file)


class OneLineUsageError(click.UsageError):
    """click's usage error (exit 2) said like every other error: one line on stderr."""

    def show(self, file: IO[Any] | None = None) -> None:
        hint = f"; see '{self.ctx.command_path} --help'" if self.ctx is not None else ""
        click.echo(f"ratchet: error: {self.format_message()}{hint}", err=True, file=file)


def _one_line_usage(exc: click.UsageError) -> click.UsageError:
    if isinstance(exc, (OneLineUsageError, click.exceptions.NoArgsIsHelpError)):  # the latter shows help
        return exc
    text = " ".join(line.strip() for line in exc.format_message().splitlines() if line.strip())
    return OneLineUsageError(text.rstrip("."), exc.ctx)


COMMAND_ORDER = ("validate", "graph", "start", "run", "supervise", "status", "tail",
                 "send", "approve", "reject", "resolve", "cancel", "upgrade", "verify",
                 "archive", "keys", "export", "import", "db",
                 "report", "ui")  # a run's life, for --help
# The module that registers each command: `ratchet X` imports X's module only, so that
# `ratchet supervise` (and each worker, which re-imports the console script) never loads
# the validation stack other commands need (tests/unit/test_cli_lazy.py keeps this whole).
COMMAND_MODULES = {"validate": "definitions", "graph": "definitions", "start": "runs", "run": "runs",
                   "supervise": "supervision", "status": "supervision", "tail": "audit", "verify": "audit",
                   "send": "inbox", "approve": "inbox", "reject": "inbox", "resolve": "inbox", "cancel": "inbox",
                   "upgrade": "inbox", "archive": "archive", "keys": "keys", "export": "transfer",
                   "import": "transfer", "db": "transfer", "report": "report", "ui": "ui"}


def load_commands(*names: str) -> None:
    """Import the modules that register `names` (every command when none is named)."""
    for module in dict.fromkeys(COMMAND_MODULES[n] for n in (names or COMMAND_MODULES) if n in COMMAND_MODULES):
        importlib.import_module(f"engine.cli.{module}")


class RatchetGroup(click.Group):
    """Turns the engine's and journal's own errors, and click's usage errors, into one-line
    messages (unless --debug).

    Every command also takes `--home` after its name (`ratchet status --home X`), as
    people type it; it overrides the group's `--home` and RATCHET_HOME. Commands are
    listed in the order of a run's life (COMMAND_ORDER), not alphabetically.
    """

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        cmd.params.append(click.Option(
            ["--home"], type=HOME_TYPE, expose_value=False, callback=_override_home,
            help="Ratchet's data folder (same as 'ratchet --home'). Env: RATCHET_HOME."))
        cmd.params.append(click.Option(
            ["--store"], expose_value=False, callback=_override_store, metavar="URL",
            help="Where journals live (same as 'ratchet --store'). Env: RATCHET_STORE."))
        super().add_command(cmd, name)

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        try:  # the group's own options (`ratchet --bogus`)
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:
            raise _one_line_usage(exc) from exc

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands:
            load_commands(cmd_name)
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        load_commands()
        rank = {name: i for i, name in enumerate(COMMAND_ORDER)}
        return sorted(self.commands, key=lambda name: (rank.get(name, len(rank)), name))

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:  # unknown command, a command's bad option or argument
            raise _one_line_usage(exc) from exc
        except (click.ClickException, click.exceptions.Exit, click.Abort, KeyboardInterrupt, BrokenPipeError):
            raise  # BrokenPipeError: the reader left (`ratchet status | head`): click exits 1, quietly
        except Exception as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            if _is_user_facing(exc):
                raise UserError(_one_line(exc)) from exc
            raise


def _override_home(ctx: click.Context, param: click.Parameter, value: Path | None) -> None:
    if value is not None:
        ctx.find_root().obj["home"] = value


def _override_store(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value:
        use_store(value)


def use_store(url: str) -> None:
    """Every Home made from now on, in this process and the workers it starts, uses `url`."""
    os.environ["RATCHET_STORE"] = url


def _one_line(exc: Exception) -> str:
    """The error's message on one line: a definition's problems become the first one and a count."""
    from engine.errors import DefinitionError

    lines = str(exc).splitlines() or [type(exc).__name__]
    if isinstance(exc, DefinitionError) and len(lines) > 1:
        return f"{lines[0]} (and {len(lines) - 1} more problems; see 'ratchet validate')"
    return " ".join(line.strip() for line in lines)


def _is_user_facing(exc: Exception) -> bool:
    # Imported lazily so that `ratchet --help` stays fast.
    from engine.errors import EngineError
    from journal.errors import JournalError

    return isinstance(exc, (JournalError, EngineError, OSError))


def user_error(exc: Exception) -> UserError | None:
    """What a command's error shows outside click (engine.cli.launch), as `invoke` above shows
    it: one line for the user's or the environment's errors, None for a bug (a traceback)."""
    return UserError(_one_line(exc)) if _is_user_facing(exc) else None


HOME_TYPE = click.Path(file_okay=False, path_type=Path)


@click.group(cls=RatchetGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--home",
    type=HOME_TYPE,
    envvar="RATCHET_HOME",
    default=".ratchet",
    show_default=True,
    help="Ratchet's data folder (runs/, inbox/, escalations/). Env: RATCHET_HOME.",
)
@click.option(
    "--store",
    metavar="URL",
    envvar="RATCHET_STORE",
    help="Where journals live: file: (the default: under --home) or postgresql://USER@HOST:PORT/DB. "
         "Env: RATCHET_STORE.",
)
@click.option("--debug", is_flag=True, help="Show full tracebacks.")
@click.version_option(package_name="ratchet")
@click.pass_context
def main(ctx: click.Context, home: Path, store: str | None, debug: bool) -> None:
    """Ratchet: durable state machines for long, interrupted workflows.

    Every step of a run is journaled (fsync'd) before it takes effect, so a run
    survives crashes and waits of days. MACHINE is a .yaml/.yml/.py file or a
    name in ./machines. Data lives in --home (default ./.ratchet, env
    RATCHET_HOME), which every command also takes after its name.

    \b
    Exit codes (every command):
      0  done (`run`: also when the run waits, ends or escalates)
      1  a problem: an invalid definition or damaged journal (reported), or
         a mistake such as an unknown run or a bad value, said in one line
         on stderr: `ratchet: error: ...` (--debug shows the traceback)
      2  usage: unknown command or option, missing argument
      130  `run` stopped by Ctrl-C before the run waited or ended (it says how
         to continue); 128+N: `supervise` stopped at once by a second signal N

    \b
    Example:
      ratchet validate machines/*
      ratchet run renewal_review --input customer=acme --id renewal-acme
      ratchet approve renewal-acme --by alice
      ratchet supervise
      ratchet status
    """
    ctx.ensure_object(dict)
    ctx.obj["home"] = home
    ctx.obj["debug"] = debug
    if store:
        use_store(store)


def home_of(ctx: click.Context) -> Path:
    home: Path = ctx.find_root().obj["home"]
    return home


def existing_home(ctx: click.Context) -> Path:
    """The home of a command that only reads, supervises or adds to existing runs: it must
    exist (only `start` and `run` create one, once they have a run to write)."""
    home = home_of(ctx)
    if not home.is_dir() and os.environ.get("RATCHET_STORE", "file:").startswith("file:"):  # a database needs none
        raise UserError(f"no Ratchet home at {home.absolute()}; create one with 'ratchet start'/'ratchet run', "
                        "or point --home/RATCHET_HOME at it")
    return home


def require_run(store: Store, run_id: str) -> str:
    """`run_id` if the store holds that run; a user error otherwise (a bad id included)."""
    from journal import check_run_id

    if not store.exists(check_run_id(run_id)):
        if run_id in store.archived_ids():  # commands that read archives check them first
            raise UserError(f"run '{run_id}' is archived (it ended and was retired with 'ratchet archive'); "
                            "it takes no more messages; see 'ratchet status --all' or 'ratchet tail'")
        raise UserError(f"no run '{run_id}' in {store.location}; see 'ratchet status'")
    return run_id


def run() -> None:
    main(prog_name="ratchet")


if __name__ == "__main__":  # pragma: no cover
    run()
