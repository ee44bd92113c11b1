"""The `ratchet` command group: global options, home resolution, and how errors reach the user.

Exit codes (for every command):
  0  success
  1  the command ran and found a problem (invalid definition, broken journal, refused input)
  2  usage error (bad option or argument; click's own convention)
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

EXIT_PROBLEM = 1


class UserError(click.ClickException):
    """A mistake the user can fix: printed as one line on stderr, exit 1, no traceback."""

    exit_code = EXIT_PROBLEM

    def show(self, file=None) -> None:
        click.echo(f"ratchet: error: {self.format_message()}", err=True, file=file)


class RatchetGroup(click.Group):
    """Turns the engine's and journal's own errors into one-line messages (unless --debug)."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort, KeyboardInterrupt):
            raise
        except Exception as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            if _is_user_facing(exc):
                raise UserError(str(exc)) from exc
            raise


def _is_user_facing(exc: Exception) -> bool:
    # Imported lazily so that `ratchet --help` stays fast.
    from journal.errors import JournalError
    from engine.errors import EngineError

    return isinstance(exc, (JournalError, EngineError, OSError))


@click.group(cls=RatchetGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="RATCHET_HOME",
    default=".ratchet",
    show_default=True,
    help="Ratchet's data folder (runs/, inbox/, escalations/). Env: RATCHET_HOME.",
)
@click.option("--debug", is_flag=True, help="Show full tracebacks.")
@click.version_option(package_name="ratchet")
@click.pass_context
def main(ctx: click.Context, home: Path, debug: bool) -> None:
    """Ratchet: durable state machines for long, interrupted workflows.

    Every step of a run is journaled (fsync'd) before it takes effect, so a run
    survives crashes and waits of days. Exit codes: 0 ok, 1 problem found, 2 usage.

    \b
    Example:
      ratchet validate machines/*
      ratchet run renewal_review --input customer=acme
      ratchet supervise
    """
    ctx.ensure_object(dict)
    ctx.obj["home"] = home
    ctx.obj["debug"] = debug


def home_of(ctx: click.Context) -> Path:
    return ctx.find_root().obj["home"]


def run() -> None:
    main(prog_name="ratchet")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run())
