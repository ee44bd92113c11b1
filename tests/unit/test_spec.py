"""The definition model: durations, per-object validation, canonical form and hash,
YAML/Python equivalence on every shipped machine, and the transitions-backed graph."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from engine.definition.durations import format_duration, parse_duration
from engine.definition.loader import load_file, load_machine, machine_from_definition
from engine.definition.spec import MachineSpec, RetryPolicy, StateSpec, TransitionSpec

REPO = Path(__file__).resolve().parents[2]
MACHINES = REPO / "machines"
TWINS = Path(__file__).parent / "definitions" / "twins"
SHIPPED = ["renewal_review.yaml", "customer_onboarding.yaml", "invoice.py"]


@pytest.mark.parametrize("text, seconds", [
    ("500ms", 0.5), ("30s", 30), ("15m", 900), ("48h", 172800), ("2d", 172800),
    ("1.5h", 5400), (90, 90), (0.25, 0.25),
])
def test_durations_parse_the_documented_forms(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["2x", "10 minutes", "1:30", "-5s", "0s", "1mo", "", "5", True, None])
def test_durations_refuse_anything_else(text):
    with pytest.raises(ValueError, match="bad duration|positive"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["99999999d", "36501d", "1" * 20 + "d", 1e300])
def test_durations_past_a_hundred_years_are_refused_not_overflowed_later(text):
    with pytest.raises(ValueError, match="at most 36500d"):
        parse_duration(text)
    assert parse_duration("36500d") == 36500 * 86400


def test_zero_backoff_is_allowed_but_not_zero_timeout():
    assert RetryPolicy(backoff="0s").backoff == 0
    with pytest.raises(ValidationError):
        StateSpec(timeout="0s")


def test_format_duration_writes_the_shortest_exact_form():
    assert [format_duration(s) for s in (172800, 5400, 900, 30, 0.5)] == ["2d", "90m", "15m", "30s", "500ms"]


def test_state_kind_follows_from_fields():
    assert StateSpec(action="m:f").kind == "task"
    assert StateSpec(approvers=["alice"], timeout="2d").kind == "waiting"
    assert StateSpec(final=True, outcome="done").kind == "final"


def test_source_is_normalised_to_a_list_and_star_is_kept():
    assert TransitionSpec(trigger="go", source="a", dest="b").source == ["a"]
    assert TransitionSpec(trigger="go", source="*", dest="b").source == ["*"]
    with pytest.raises(ValidationError, match="alone"):
        TransitionSpec(trigger="go", source=["*", "a"], dest="b")


def test_extra_fields_are_refused():
    with pytest.raises(ValidationError, match="acton"):
        MachineSpec.model_validate({"name": "m", "version": 1, "initial": "a", "transitions": [],
                                    "states": {"a": {"acton": "m:f"}}})


@pytest.mark.parametrize("shipped", SHIPPED)
def test_canonical_form_is_plain_json_with_durations_in_seconds(shipped):
    machine = load_file(MACHINES / shipped)
    assert machine.definition == machine.spec.canonical()
    assert machine.hash.startswith("sha256:") and len(machine.hash) == 7 + 64
    # JSON-able and stable through a JSON round trip (what the journal stores).
    import json
    assert json.loads(json.dumps(machine.definition)) == machine.definition


@pytest.mark.parametrize("shipped, twin", [
    ("renewal_review.yaml", "renewal_review.py"),
    ("customer_onboarding.yaml", "customer_onboarding.py"),
    ("invoice.py", "invoice.yaml"),
])
def test_yaml_and_python_forms_of_every_shipped_machine_pin_identically(shipped, twin):
    original = load_file(MACHINES / shipped)
    other = load_file(TWINS / twin, base_dir=MACHINES)  # its actions live beside the machines
    assert other.definition == original.definition
    assert other.hash == original.hash


@pytest.mark.parametrize("shipped", SHIPPED)
def test_canonical_form_written_as_yaml_loads_to_the_same_hash(shipped, tmp_path):
    original = load_file(MACHINES / shipped)
    copy = tmp_path / "copy.yaml"
    copy.write_text(yaml.safe_dump(original.definition, sort_keys=False))
    assert load_file(copy, base_dir=MACHINES).hash == original.hash


@pytest.mark.parametrize("shipped", SHIPPED)
def test_a_pinned_definition_rebuilds_the_same_machine(shipped):
    original = load_file(MACHINES / shipped)
    pinned = machine_from_definition(original.definition, MACHINES)
    assert pinned.hash == original.hash
    assert pinned.spec == original.spec


def test_the_hash_changes_with_any_change():
    original = load_file(MACHINES / "renewal_review.yaml")
    changed = dict(original.definition, version=2)
    assert machine_from_definition(changed, MACHINES).hash != original.hash


def test_machines_are_found_by_name():
    assert load_machine("invoice", MACHINES).source == MACHINES / "invoice.py"
    assert load_machine("renewal_review", MACHINES).name == "renewal_review"


def test_next_state_follows_guards_in_written_order():
    onboarding = load_file(MACHINES / "customer_onboarding.yaml")
    assert onboarding.next_state("awaiting_reply", "timeout", {"reminders": 1}) == "send_reminder"
    assert onboarding.next_state("awaiting_reply", "timeout", {"reminders": 2}) is None  # escalates
    assert onboarding.next_state("awaiting_reply", "close", {"reminders": 2}) == "closed"
    assert onboarding.next_state("awaiting_reply", "reply", {}) == "setup_account"


def test_next_state_is_none_without_a_matching_transition():
    invoice = load_file(MACHINES / "invoice.py")
    assert invoice.next_state("charge", "approve", {}) is None  # no such trigger from charge
    assert invoice.next_state("paid", "ok", {}) is None  # final: nothing leaves
    assert invoice.next_state("prepare", "nope", {}) is None  # trigger unknown to the machine


def test_next_state_with_unless_and_star_sources(tmp_path):
    (tmp_path / "star_guards.py").write_text(
        "def vip(data):\n    return data.get('vip', False)\n")
    spec = MachineSpec(
        name="star", version="2024-1", initial="a",
        states={"a": StateSpec(action="star_guards:vip"), "b": StateSpec(timeout="1h"),
                "cancelled": StateSpec(final=True), "done": StateSpec(final=True)},
        transitions=[
            TransitionSpec(trigger="ok", source="a", dest="b", unless=["star_guards:vip"]),
            TransitionSpec(trigger="ok", source="a", dest="done"),
            TransitionSpec(trigger="timeout", source="b", dest="done"),
            TransitionSpec(trigger="cancel", source="*", dest="cancelled"),
        ])
    machine = machine_from_definition(spec.canonical(), tmp_path)
    assert machine.next_state("a", "ok", {"vip": False}) == "b"
    assert machine.next_state("a", "ok", {"vip": True}) == "done"
    assert machine.next_state("b", "cancel", {}) == "cancelled"
    assert machine.triggers_from("a") == ["ok", "cancel"]
    assert machine.triggers_from("b") == ["timeout", "cancel"]
    assert machine.triggers_from("done") == []


def test_retryable_matches_non_retryable_by_import_path_and_by_name():
    invoice = load_file(MACHINES / "invoice.py")
    actions = invoice.resolve("invoice_actions:charge").__globals__
    assert not invoice.retryable("charge", actions["CardDeclined"]("no"))
    assert invoice.retryable("charge", actions["BillingUnavailable"]("later"))
    by_name = machine_from_definition(
        {**invoice.definition, "states": {**invoice.definition["states"], "charge": {
            **invoice.definition["states"]["charge"], "non_retryable": ["LookupError"]}}}, MACHINES)
    assert not by_name.retryable("charge", KeyError("a subclass of LookupError"))
    assert by_name.retryable("charge", ValueError())


def test_shipped_machines_cover_the_required_features():
    renewal = load_file(MACHINES / "renewal_review.yaml")
    review = renewal.state("review")
    assert review.kind == "waiting" and review.approvers and review.timeout == 2 * 86400
    assert "timeout" not in renewal.triggers_from("review")  # escalates on timeout
    assert renewal.state("send").idempotent is False
    invoice = load_file(MACHINES / "invoice.py")
    assert invoice.state("charge").idempotent is False and invoice.state("charge").retry.attempts > 1
