"""`ratchet report`: one run as one self-contained HTML page (engine.view.report)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from engine.cli.app import UserError, existing_home, main


@main.command()
@click.argument("run_id", metavar="ID")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help="Where to write the page (default: ID.html here; '-' for stdout).")
@click.pass_context
def report(ctx: click.Context, run_id: str, output: Path | None) -> None:
    """Write a run's story as one self-contained HTML page.

    The page shows the run's timeline (time, record, state, who, what changed
    in its data; long idle gaps in words, retries, escalations and resolutions
    highlighted), the state diagram with the path taken, and the journal's
    verification. It loads nothing (no script, no network): attach it to a
    ticket, open it offline years later. Archived runs too.

    \b
    Example:
      ratchet report renewal-acme -o renewal-acme.html
    """
    from engine.view import UI_EXTRA, missing

    if missing("jinja2"):
        raise UserError(f"ratchet report needs Jinja2, from the 'ui' extra: {UI_EXTRA}")
    from engine.home import Home  # lazy: keeps `ratchet --help` fast
    from engine.run.sealing import home_public_key
    from engine.view.report import environment, run_context
    from journal import check_run_id

    home = Home(existing_home(ctx))
    context = run_context(home.store, check_run_id(run_id), public=home_public_key(home))
    html = environment().get_template("report.html").render(**context)
    if output == Path("-"):
        sys.stdout.write(html)
    else:
        target = output or Path(f"{run_id}.html")
        try:
            target.write_text(html, encoding="utf-8")
        except OSError as exc:
            raise UserError(f"{target}: cannot write the page ({exc.strerror or exc}); choose another -o FILE") from exc
        click.echo(f"{target}")
    verdict = context["verdict"]
    if not verdict.ok:  # the page is written all the same: it shows the damage to whoever opens it
        raise UserError(f"{verdict}; the page shows the journal as far as it can be read")
