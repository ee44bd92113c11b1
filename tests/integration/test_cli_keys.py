"""`ratchet keys new` makes a person's key pair; `--key` signs what the inbox commands write."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.cli import main
from engine.run.runner import Runner
from engine.trust.envelope import signature_holds
from engine.trust.people import load_people

from supervisor_harness import Env, machine_folder


@pytest.fixture
def env(tmp_path: Path, tmp_path_factory):
    e = Env(tmp_path, machine_folder(tmp_path_factory))
    yield e
    e.cleanup()


def ratchet(env: Env, *args: str):
    return CliRunner().invoke(main, ["--home", str(env.home.root), *args])


def test_keys_new_writes_a_secret_private_key_and_the_public_key_into_the_home(env, tmp_path):
    out = tmp_path / "bob.key"
    result = ratchet(env, "keys", "new", "bob", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert (env.home.root / "keys" / "bob.pub").read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    line = result.stdout.splitlines()[-1].strip()
    assert line == "bob: {public_key: keys/bob.pub}"
    (env.home.root / "people.yaml").write_text(line + "\n")  # the line printed is a valid people file
    assert set(load_people(env.home.root).keys) == {"bob"}
    again = ratchet(env, "keys", "new", "bob", "--out", str(tmp_path / "other.key"))
    assert again.exit_code == 1 and "a public key is there already" in again.output
    assert not (tmp_path / "other.key").exists()  # nothing half-made


@pytest.mark.parametrize("name", ["Bad Name", "_x", "a/b"])
def test_keys_new_refuses_a_name_that_cannot_be_a_sender(env, name):
    result = ratchet(env, "keys", "new", name)
    assert result.exit_code == 1 and "invalid name" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_keys_new_refuses_home_whose_public_key_would_stand_in_for_the_homes_sealing_key(env, tmp_path):
    """keys/home.pub is the home's sealing key: a person's key there (made before the home's
    first run made its own) would leave every `verify` failing ('not the public half')."""
    result = ratchet(env, "keys", "new", "home", "--out", str(tmp_path / "home.key"))
    assert result.exit_code == 1 and "reserved" in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (env.home.root / "keys" / "home.pub").exists() and not (tmp_path / "home.key").exists()


def test_key_signs_for_the_wait_open_now_and_a_wrong_key_is_refused_before_writing(env, tmp_path, monkeypatch):
    monkeypatch.setenv("RATCHET_CLOCK_FILE", str(env.clock.path))  # the expiry counts on the engine's clock
    env.start("r1")
    rs = Runner(env.home, clock=env.clock, machines_dir=env.dir).advance("r1")
    assert rs.status == "waiting"
    for name in ("alice", "mallory"):
        assert ratchet(env, "keys", "new", name, "--out", str(tmp_path / f"{name}.key")).exit_code == 0
    (env.home.root / "people.yaml").write_text("alice: {public_key: keys/alice.pub}\n"
                                               "mallory: {public_key: keys/mallory.pub}\n")
    result = ratchet(env, "approve", "r1", "--by", "alice", "--key", str(tmp_path / "alice.key"),
                     "--valid-for", "2h")
    assert result.exit_code == 0, result.output
    written = json.loads(Path(result.stdout.strip()).read_text())
    assert written["signature"]["answers"] == rs.stands_at
    assert written["signature"]["expires"] == "2026-01-05T11:00:00Z"  # the env's clock + 2h
    people = load_people(env.home.root)
    assert signature_holds(written, people.keys["alice"])
    before = sorted(os.listdir(env.home.inbox))
    wrong = ratchet(env, "approve", "r1", "--by", "alice", "--key", str(tmp_path / "mallory.key"))
    assert wrong.exit_code == 1 and "is not alice's key" in wrong.output
    assert sorted(os.listdir(env.home.inbox)) == before
    missing = ratchet(env, "approve", "r1", "--by", "alice", "--key", str(tmp_path / "nope.key"))
    assert missing.exit_code == 1 and "cannot read key file" in missing.output
