"""Commands: validate and graph (registered on engine.cli.app.main)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from engine.cli.app import UserError, existing_home, home_of, main, require_run
from engine.definition.loader import SUFFIXES, Machine, load_file, load_machine, machine_from_definition
from engine.errors import DefinitionError, NotAMachineError

if TYPE_CHECKING:
    from engine.trust.people import People


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--strict", is_flag=True, help="Warnings fail too (exit 1), e.g. a wait with no timeout.")
@click.pass_context
def validate(ctx: click.Context, paths: tuple[Path, ...], strict: bool) -> None:
    """Check machine definitions before any run starts.

    PATHS are .yaml/.yml/.py machine files or folders of them. Every problem is printed
    as `file:line: message` (Python files: `file: object.path: message`), all of them,
    not just the first. Warnings (`file:line: warning: ...`, such as a waiting state
    with no timeout, or an approver the home's people.yaml does not list) do not
    fail, unless --strict. Python modules without a `machine`
    attribute (action modules beside the machines) are skipped, so `machines/*` works.
    Exit 0 if all are valid, 1 otherwise.

    \b
    Example:
      ratchet validate machines/*
      ratchet validate --strict machines/     # in CI: warnings fail too
    """
    files, invalid, checked = _machine_files(paths), 0, 0
    people = _people(home_of(ctx))
    for path in files:
        if not path.exists():
            click.echo(f"{path}: no such file or folder")
            invalid += 1
            continue
        try:
            machine = load_file(path)
        except NotAMachineError:
            click.echo(f"{path}: skipped (a Python module without a 'machine' attribute)", err=True)
            continue
        except DefinitionError as exc:
            checked += 1
            invalid += 1
            for problem in exc.problems:
                click.echo(str(problem))
            continue
        checked += 1
        warnings = [str(w) for w in machine.warnings]
        warnings += [f"{path}: warning: {text}" for text in _strangers(people, machine)]
        for warning in warnings:
            click.echo(warning)
        if strict and warnings:
            click.echo(f"{path}: {len(warnings)} warning(s), which fail under --strict")
            invalid += 1
            continue
        click.echo(f"{path}: ok ({machine.name} v{machine.spec.version}, {machine.hash[:19]}…)")
    if not checked and not invalid:
        raise UserError(f"no machine definitions (.yaml, .yml, .py) in {' '.join(map(str, paths))}")
    if invalid:
        raise click.exceptions.Exit(1)


def _people(home: Path) -> People | None:
    """The home's people file, if it has a valid one (`validate` needs no home)."""
    from engine.trust.people import PeopleFileError, load_people

    try:
        return load_people(home)
    except PeopleFileError as exc:
        click.echo(f"ratchet: warning: {str(exc).splitlines()[0]} (names are not checked against it)", err=True)
        return None


def _strangers(people: People | None, machine: Machine) -> list[str]:
    from engine.trust.people import strangers

    return strangers(people, machine.definition) if people is not None else []


def _machine_files(paths: tuple[Path, ...]) -> list[Path]:
    """The files to check: each file as given, each folder's machine files (not nested)."""
    files = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.is_file() and p.suffix in SUFFIXES)
        elif path.suffix in SUFFIXES or not path.exists():
            files.append(path)
        else:
            click.echo(f"{path}: skipped (not a .yaml, .yml or .py file)", err=True)
    return files


@main.command()
@click.argument("machine", required=False)
@click.option("--run", "run_id", metavar="ID", help="Draw the definition this run pinned; mark its state.")
@click.pass_context
def graph(ctx: click.Context, machine: str | None, run_id: str | None) -> None:
    """Print MACHINE, or a run's machine, as a Mermaid state diagram.

    MACHINE is a .yaml/.yml/.py path or a name found in ./machines. With --run, the
    diagram is of the definition that run pinned (MACHINE is then not needed), with
    its current state highlighted (red if the run is escalated there); given
    MACHINE too, it must be the run's, and a note says if its file changed since.

    \b
    Example:
      ratchet graph machines/renewal_review.yaml > renewal.mmd
      ratchet graph --run 01JD3Q...
    """
    from engine.definition.mermaid import to_mermaid

    if machine is None and run_id is None:
        raise click.UsageError("give MACHINE, or --run ID to draw the definition a run pinned", ctx)
    loaded = load_machine(machine) if machine is not None else None
    if run_id is None:
        if loaded is not None:  # always, here: MACHINE or --run was given
            click.echo(to_mermaid(loaded.spec), nl=False)
        return
    pinned, current, escalated = _run_position(existing_home(ctx), run_id)
    comment = None
    if loaded is not None:
        if pinned.name != loaded.name:
            raise UserError(f"run '{run_id}' follows machine '{pinned.name}', not '{loaded.name}'")
        if pinned.hash != loaded.hash:
            comment = f"run {run_id} follows its pinned definition; {machine} has changed since"
    click.echo(to_mermaid(pinned.spec, current=current, escalated=escalated, comment=comment), nl=False)


def _run_position(home: Path, run_id: str) -> tuple[Machine, str, bool]:
    """(pinned machine, current state, escalated?) of a run, replayed from its journal."""
    from engine.home import Home
    from journal import (
        Escalated,
        Resolved,
        RunFinished,
        RunStarted,
        Transition,
        Upgraded,
        check_run_id,
        pinned_definition,
    )

    store = Home(home).store
    if not store.exists(check_run_id(run_id)) and run_id in store.archived_ids():
        records = [record for _, record in store.archived_lines(run_id)]
    else:
        records = store.read(require_run(store, run_id)).records
    if not records or not isinstance(records[0], RunStarted):
        raise UserError(f"run '{run_id}': journal does not start with run_started; run 'ratchet verify'")
    started = records[0]
    base_dir = Path(started.source).parent if started.source else None
    pinned = machine_from_definition(pinned_definition(started), base_dir, check_imports=False)
    state, escalated = pinned.spec.initial, False
    for record in records[1:]:
        if isinstance(record, Transition):
            state, escalated = record.dest, False
        elif isinstance(record, RunFinished):
            state = record.state
        elif isinstance(record, Escalated):
            state, escalated = record.state, True
        elif isinstance(record, Resolved):
            escalated = False
        elif isinstance(record, Upgraded):  # the run follows this definition from here on
            base_dir = Path(record.source).parent if record.source else None
            pinned = machine_from_definition(pinned_definition(record), base_dir, check_imports=False)
    return pinned, state, escalated
