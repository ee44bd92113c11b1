"""200 malformed or hostile inbox files all end in rejected/ with a reason; a valid one is applied."""

from __future__ import annotations

import json
import os
from pathlib import Path

from engine.supervise.message import MAX_BYTES

from waiting import wait_for


def msg(**fields) -> bytes:
    return json.dumps({"run": "r1", "trigger": "approve", "by": "alice", **fields}).encode()


def hostile_files(outside: Path) -> dict[str, bytes | str]:
    """Name -> content (bytes), or "symlink"/"fifo"/"dir" for special files: 200 in all."""
    target = outside / "valid-elsewhere.json"
    target.write_bytes(msg())
    kinds: list[tuple[str, bytes | str]] = [
        ("truncated.json", b'{"run": "r1", "trig'),
        ("bad.yaml", b"run: r1\ntrigger: [approve\n"),
        ("bomb.yaml", b"a: &a [x, x]\nb: &b [*a, *a]\nc: [*b, *b]\n"),
        ("huge.json", msg(comment="x" * 100)[:-1] + b', "data": {"pad": "' + b"x" * MAX_BYTES + b'"}}'),
        ("empty.json", b""),
        ("binary.json", os.urandom(256)),
        ("list.json", b"[1, 2, 3]"),
        ("unknown-run.json", msg(run="nobody")),
        ("traversal-run.json", msg(run="../../etc/passwd")),
        ("wrong-trigger.json", msg(trigger="launch")),
        ("non-approver.json", msg(by="mallory")),
        ("extra-field.json", msg(admin=True)),
        ("resolve-not-escalated.json", json.dumps({"run": "r1", "resolve": "abort", "by": "alice"}).encode()),
        ("nan.json", msg()[:-1] + b', "data": {"x": NaN}}'),
        ("deep.json", msg()[:-1] + b', "data": ' + b'{"a": ' * 60 + b"1" + b"}" * 60 + b"}"),
        ("notes.txt", msg()),
        ("a..b.json", msg()),
        ("name with spaces.json", msg()),
        ("semi;colon.json", msg()),
        ("x" * 240 + ".json", msg()),
        ("link.json", "symlink"),
        ("fifo.json", "fifo"),
        ("folder.json", "dir"),
        ("yes-trigger.yaml", b"run: r1\ntrigger: yes\nby: alice\n"),
        ("date-data.yml", b"run: r1\ntrigger: approve\nby: alice\ndata: {when: 2024-01-01}\n"),
    ]
    files: dict[str, bytes | str] = {}
    n = 0
    while len(files) < 200:
        name, content = kinds[n % len(kinds)]
        copy = n // len(kinds)
        if copy:
            stem, dot, ext = name.rpartition(".")
            name = f"{stem}-{copy}.{ext}"
            if len(name) > 250:
                name = f"{'y' * 230}-{copy}.json"
        files[name] = content
        n += 1
    return files


def test_hostile_inbox_files_are_rejected_with_reasons_while_a_valid_one_applies(env, tmp_path):
    env.start("r1")
    env.supervise("--workers", "2")
    env.wait_status("r1", "waiting", "review")
    outside = tmp_path / "outside"
    outside.mkdir()
    files = hostile_files(outside)
    names = list(files)
    staging = env.home.inbox_tmp
    for i, name in enumerate(names):
        content = files[name]
        if content == "symlink":
            os.symlink(outside / "valid-elsewhere.json", env.home.inbox / name)
            continue
        if content == "fifo":
            os.mkfifo(env.home.inbox / name)
            continue
        if content == "dir":
            (env.home.inbox / name).mkdir()
            continue
        (staging / "f").write_bytes(content)
        os.rename(staging / "f", env.home.inbox / name)
        if i == 100:
            valid = env.send("r1", "approve", comment="the real one")

    def filed() -> list[str]:  # a note being written is a dot file (.NAME.error.txt.PID.tmp) until renamed
        return [n for n in os.listdir(env.home.inbox_rejected) if not n.startswith(".")]

    wait_for(lambda: len(filed()) == 2 * len(names), timeout=60, what="every hostile file in rejected/")
    wait_for((env.home.inbox_done / valid.name).exists, what="the valid file in done/")
    env.wait_status("r1", "finished", "done")

    rejected = set(filed())
    assert os.listdir(env.home.inbox_done) == [valid.name]
    assert sorted(n for n in os.listdir(env.home.inbox) if not n.startswith(".")) == ["done", "rejected"]
    assert env.claimed_files() == []
    notes = [n for n in rejected if n.endswith(".error.txt")]
    assert len(notes) == len(names)
    for note in notes:
        reason = (env.home.inbox_rejected / note).read_text().splitlines()[0]
        assert reason.strip(), note
        assert note[: -len(".error.txt")] in rejected
    for name in names:  # every safe name is kept as it was dropped
        if " " not in name and ";" not in name and ".." not in name and len(name) <= 200:
            assert name in rejected, name
    received = [r for r in env.records("r1") if r["type"] == "trigger_received"]
    assert [(r["by"], r["comment"]) for r in received] == [("alice", "the real one")]
    assert (outside / "valid-elsewhere.json").exists()
    unsafe = [n for n in notes if n.startswith("!unsafe-")]
    assert all("dropped as: " in (env.home.inbox_rejected / n).read_text() for n in unsafe)


SHIPPED = Path(__file__).resolve().parents[2] / "machines" / "renewal_review.yaml"


def test_an_approval_for_a_wait_that_is_over_is_rejected_as_stale(env):
    """Alice asks for a revision and Bob approves the same draft: after the revision the
    run waits in 'review' again, for a new draft nobody approved. Bob's file is stale."""
    assert env.cli("run", str(SHIPPED), "--id", "r1").returncode == 0
    revise = env.send("r1", "revise", by="alice")
    approve = env.send("r1", "approve", by="bob")
    assert env.once().returncode == 0
    refused = [r for r in env.records("r1") if r["type"] == "trigger_refused"]
    assert [(r["trigger"], r["reason"].split(":")[0]) for r in refused] == [("approve", "stale")]
    assert env.row("r1").state == "review"  # waiting on the second draft
    assert not [e for e in env.ledger_lines() if e["kind"] == "email.send"]  # nothing was sent
    assert (env.home.inbox_done / revise.name).exists()
    assert "stale" in (env.home.inbox_rejected / f"{approve.name}.error.txt").read_text()
