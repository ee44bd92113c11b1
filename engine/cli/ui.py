"""`ratchet ui`: the live, read-only dashboard of a home (engine.view.web)."""

from __future__ import annotations

import click

from engine.cli.app import UserError, existing_home, main


@main.command()
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535), help="TCP port.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. The default serves this machine only; the dashboard has no login.")
@click.pass_context
def ui(ctx: click.Context, port: int, host: str) -> None:
    """Serve a live dashboard of every run, read-only.

    All runs with their status, filters (status, machine, state, waiting on
    whom, overdue, escalated) and counts; each run's page as `ratchet report`
    draws it. Pages update by themselves as journals grow. Stop with Ctrl-C.

    \b
    Example:
      ratchet ui                 # then open http://127.0.0.1:8765/
      ratchet ui --port 9000
    """
    from engine.view import UI_EXTRA, missing

    absent = missing("jinja2", "starlette", "uvicorn")
    if absent:
        raise UserError(f"ratchet ui needs {', '.join(absent)}, from the 'ui' extra: {UI_EXTRA}")
    from engine.home import Home  # lazy: keeps `ratchet --help` fast
    from engine.view.web import serve

    home = Home(existing_home(ctx))
    _check_free(host, port)
    click.echo(f"ratchet ui: serving {home.store.location} on http://{host}:{port}/ (read-only; Ctrl-C stops)",
               err=True)
    serve(home, host=host, port=port)


def _check_free(host: str, port: int) -> None:
    """Say in one line that the address cannot be listened on (uvicorn would log it and exit 3)."""
    import socket

    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            probe.bind(address)
    except OSError as exc:
        raise UserError(f"{host}:{port}: cannot listen ({exc.strerror or exc}); "
                        "choose another --port, or stop what listens there") from exc
