"""Definition mistakes: every kind is caught, located (file:line or object path) and
reported together. Each broken file states what it expects in `# expect: LINE: text`
comments (`-` for no line), and must produce exactly those errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from engine.definition.loader import load_file, load_machine
from engine.errors import DefinitionError, NotAMachineError

HERE = Path(__file__).parent / "definitions"
BROKEN = sorted((HERE / "broken").glob("*.yaml")) + sorted(
    p for p in (HERE / "broken_py").glob("*.py") if p.name != "py_actions.py")
EXPECT = re.compile(r"^# expect: (\d+|-): (.*)$", re.M)


def _errors(path: Path) -> list[str]:
    with pytest.raises(DefinitionError) as caught:
        load_file(path)
    return [str(p) for p in caught.value.problems if p.severity == "error"]


@pytest.mark.parametrize("path", BROKEN, ids=lambda p: p.name)
def test_each_kind_of_mistake_is_reported_where_it_is(path):
    expected = [(f"{path}:{line}: " if line != "-" else f"{path}: ") + text
                for line, text in EXPECT.findall(path.read_text())]
    assert expected, f"{path.name} states no expectation"
    errors = _errors(path)
    assert len(errors) == len(expected), "\n".join(errors)
    for want, got in zip(expected, errors, strict=True):
        assert got.startswith(want), f"\nwant: {want}\ngot:  {got}"


def test_all_errors_come_at_once_in_line_order():
    errors = _errors(HERE / "broken" / "many_errors.yaml")
    lines = [int(e.split(":")[1]) for e in errors]
    assert len(errors) == 5 and lines == sorted(lines)


def test_an_unhandled_timeout_is_a_warning_not_an_error():
    machine = load_file(HERE / "warnings" / "timeout_unhandled.yaml")
    [warning] = machine.warnings
    assert str(warning).endswith(
        "timeout_unhandled.yaml:8: warning: states.review.timeout: waiting state 'review' has a 2d "
        "timeout but no transition on 'timeout': when it expires the run escalates")


def test_a_wait_with_no_timeout_is_a_warning_and_a_task_or_a_timed_wait_is_not():
    machine = load_file(HERE / "warnings" / "endless_wait.yaml")
    [warning] = machine.warnings
    assert str(warning).endswith(
        "endless_wait.yaml:6: warning: states.review: waiting state 'review' has no timeout: a run may "
        "wait there forever; add one (e.g. 'timeout: 2d') so that an unanswered wait escalates")
    # the shipped machines give every wait a deadline: nothing to say about them
    for name in ("renewal_review.yaml", "customer_onboarding.yaml", "invoice.py"):
        assert load_file(HERE.parents[2] / "machines" / name).warnings == []


def test_a_python_module_without_machine_is_not_a_machine():
    with pytest.raises(NotAMachineError, match="no module attribute 'machine'"):
        load_file(HERE / "broken_py" / "py_actions.py")


def test_unknown_machine_names_suggest_the_closest(tmp_path):
    (tmp_path / "renewal.yaml").write_text("name: renewal\n")
    with pytest.raises(DefinitionError, match="no machine named 'renewl'.*did you mean 'renewal'"):
        load_machine("renewl", tmp_path)


def test_empty_and_non_mapping_files(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing\n")
    with pytest.raises(DefinitionError, match="empty file"):
        load_file(empty)
    listing = tmp_path / "listing.yaml"
    listing.write_text("- a\n- b\n")
    with pytest.raises(DefinitionError, match="listing.yaml:1: .*valid dictionary"):
        load_file(listing)


def test_two_machine_folders_cannot_share_an_action_module_name(tmp_path):
    for folder in ("one", "two"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "same_name_actions.py").write_text("def work(ctx):\n    return None\n")
        (tmp_path / folder / "m.yaml").write_text(
            "name: m\nversion: 1\ninitial: a\nstates:\n  a: {action: 'same_name_actions:work'}\n"
            "  b: {final: true}\ntransitions:\n  - {trigger: ok, source: a, dest: b}\n")
    load_file(tmp_path / "one" / "m.yaml")
    with pytest.raises(DefinitionError, match="already imported from .*one"):
        load_file(tmp_path / "two" / "m.yaml")
