"""The inbox: message validation, atomic writes, claiming, and filing to done/ or rejected/."""

from __future__ import annotations

import fcntl
import json
import logging
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from engine.errors import InvalidMessageError, UnsafeInboxError
from engine.supervise import inbox, message
from engine.supervise.message import Message


@pytest.fixture
def home(tmp_path: Path) -> SimpleNamespace:
    root = tmp_path / "home"
    box = root / "inbox"
    h = SimpleNamespace(
        root=root,
        inbox=box,
        inbox_tmp=box / ".tmp",
        inbox_claimed=box / ".claimed",
        inbox_done=box / "done",
        inbox_rejected=box / "rejected",
    )
    for folder in (box, h.inbox_tmp, h.inbox_claimed, h.inbox_done, h.inbox_rejected):
        folder.mkdir(parents=True)
    return h


def drop(home, name: str, content: bytes | str) -> Path:
    path = home.inbox / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


@pytest.fixture
def box(home):
    b = inbox.ClaimBox(home)
    yield b
    b.close()


def take(box, name: str) -> inbox.Claimed:
    item = box.claim(name)
    assert item is not None
    return item


# --- Message ---------------------------------------------------------------------------


def test_message_accepts_a_trigger_and_a_resolution():
    m = Message.model_validate({"run": "r1", "trigger": "approve", "by": "alice", "data": {"n": [1, {"x": None}]}})
    assert (m.run, m.trigger, m.by, m.resolve, m.data) == ("r1", "approve", "alice", None, {"n": [1, {"x": None}]})
    assert Message.model_validate({"run": "r1", "resolve": "retry", "by": "bob"}).trigger is None
    assert Message.model_validate({"run": "r1", "resolve": "skip", "trigger": "ok", "by": "bob"}).trigger == "ok"


@pytest.mark.parametrize(
    "raw, fragment",
    [
        ({"run": "r1", "by": "alice"}, "trigger"),
        ({"run": "../etc/passwd", "trigger": "approve", "by": "a"}, "run"),
        ({"run": "r1", "trigger": "Approve!", "by": "a"}, "trigger"),
        ({"run": "r1", "trigger": "approve", "by": ""}, "by"),
        ({"run": "r1", "trigger": "approve", "by": "a", "extra": 1}, "extra"),
        ({"run": "r1", "trigger": 3, "by": "a"}, "trigger"),
        ({"run": "r1", "resolve": "retry", "trigger": "ok", "by": "a"}, "takes no"),
        ({"run": "r1", "resolve": "skip", "by": "a"}, "required"),
        ({"run": "r1", "resolve": "explode", "by": "a", "trigger": "x"}, "resolve"),
    ],
)
def test_message_refuses_bad_fields(raw, fragment):
    with pytest.raises(InvalidMessageError) as info:
        message.parse_message(json.dumps(raw).encode(), ".json")
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    "data, suffix, reason",
    [
        (b"{\"run\": \"r1\", \"trig", ".json", "invalid JSON"),
        (b"[1, 2]", ".json", "not a mapping"),
        (b"", ".json", "empty file"),
        (b"\xff\xfe{}", ".json", "not UTF-8 text"),
        (b'{"run": "r1", "run": "r2", "trigger": "a", "by": "x"}', ".json", "invalid JSON"),
        (b'{"run": "r1", "trigger": "a", "by": "x", "data": {"v": NaN}}', ".json", "invalid JSON"),
        (b"[" * 5000 + b"]" * 5000, ".json", "invalid JSON"),
        (b"run: r1\ntrigger: [unclosed\n", ".yaml", "invalid YAML"),
        (b"a: &x [1]\nb: *x\n", ".yaml", "invalid YAML"),
        (b"run: r1\ntrigger: on\nby: x\n", ".yaml", "invalid message"),
        (b"run: r1\ntrigger: a\nby: x\ndata: {when: 2024-01-01}\n", ".yml", "invalid message"),
        (b'{"run": "r1", "trigger": "a", "by": "x", "data": ' + b'{"a": ' * 40 + b"1" + b"}" * 41,
         ".json", "invalid message"),
    ],
)
def test_parse_refuses_hostile_content(data, suffix, reason):
    with pytest.raises(InvalidMessageError) as info:
        message.parse_message(data, suffix)
    assert info.value.reason == reason


def test_yaml_message_parses():
    m = message.parse_message(b"run: r1\ntrigger: approve\nby: alice\ncomment: fine\n", ".yaml")
    assert (m.trigger, m.comment) == ("approve", "fine")


# --- Writing, claiming, filing ---------------------------------------------------------


def test_write_message_renames_a_complete_file_into_the_inbox(home, box):
    path = message.write_message(home, Message(run="r1", trigger="approve", by="alice"))
    assert path.parent == home.inbox and path.suffix == ".json"
    assert os.listdir(home.inbox_tmp) == []
    assert inbox.pending(home) == [path.name]
    item = take(box, path.name)
    assert inbox.read_message(item) == Message(run="r1", trigger="approve", by="alice")


def test_claim_has_exactly_one_winner(home, box):
    drop(home, "a.json", "{}")
    first, second = box.claim("a.json"), box.claim("a.json")
    assert first is not None and second is None
    assert box.holding() == [first]
    assert first.name == "a.json" and first.key.endswith("~a.json")


def test_done_and_rejected_never_replace_a_file(home, box):
    for _ in range(2):
        drop(home, "a.json", "{}")
        box.mark_done(take(box, "a.json"))
    assert sorted(os.listdir(home.inbox_done)) == ["a.1.json", "a.json"]
    drop(home, "b.yaml", "x")
    target = box.reject(take(box, "b.yaml"), "not a mapping", "the file holds a str")
    note = target.with_name("b.yaml.error.txt").read_text()
    assert note.splitlines()[0] == "not a mapping" and "str" in note
    assert box.holding() == []


def test_symlink_fifo_directory_and_huge_files_are_refused(home, box, tmp_path):
    secret = tmp_path / "secret.json"
    secret.write_text(json.dumps({"run": "r1", "trigger": "a", "by": "x"}))
    os.symlink(secret, home.inbox / "link.json")
    os.mkfifo(home.inbox / "pipe.json")
    (home.inbox / "dir.json").mkdir()
    drop(home, "huge.json", b" " * (message.MAX_BYTES + 1))
    reasons = {}
    for name in inbox.pending(home):
        assert inbox.is_complete(home.inbox / name)
        with pytest.raises(InvalidMessageError) as info:
            inbox.read_message(take(box, name))
        reasons[name] = info.value.reason
    assert reasons == {
        "dir.json": "not a regular file",
        "huge.json": "file too large",
        "link.json": "symlink refused",
        "pipe.json": "not a regular file",
    }
    for item in box.holding():
        box.reject(item, "refused")
    assert sorted(os.listdir(home.inbox_rejected)) == sorted(
        n for name in reasons for n in (name, name + ".error.txt")
    )
    assert secret.exists()


@pytest.mark.parametrize("name, reason", [
    ("notes.txt", "unsupported file type"),
    ("a b.json", "unsafe file name"),
    ("x\n.json", "unsafe file name"),
])
def test_bad_names_are_claimed_then_refused(home, box, name, reason):
    drop(home, name, "{}")
    item = take(box, name)
    with pytest.raises(InvalidMessageError) as info:
        inbox.read_message(item)
    assert info.value.reason == reason
    target = box.reject(item, info.value.reason)
    assert target.parent == home.inbox_rejected and "\n" not in target.name


def test_hidden_files_and_our_folders_are_not_pending(home):
    drop(home, ".swp", "x")
    drop(home, "a.json", "{}")
    assert inbox.pending(home) == ["a.json"]


def test_a_file_open_for_writing_is_not_complete(home):
    path = home.inbox / "slow.json"
    with open(path, "w") as f:
        f.write('{"run": "r1", ')
        f.flush()
        assert not inbox.is_complete(path)
    assert inbox.is_complete(path)


def test_unclaim_puts_the_file_back(home, box):
    drop(home, "a.json", "{}")
    box.unclaim(take(box, "a.json"))
    assert inbox.pending(home) == ["a.json"] and box.holding() == []


def test_a_live_claimers_files_are_its_own_a_dead_ones_are_adopted(home, box):
    drop(home, "a.json", "{}")
    mine = take(box, "a.json")
    other = inbox.ClaimBox(home)
    try:
        assert other.adopt_orphans() == []  # box is alive (holds its lock)
        box.close()  # as if its process died: the lock goes, the file stays
        adopted = other.adopt_orphans()
        assert [(i.key, i.name) for i in adopted] == [(mine.key, "a.json")]
        assert sorted(os.listdir(home.inbox_claimed)) == [other.path.name]
    finally:
        other.close()


@pytest.mark.parametrize("sweep", ["before its lock", "after its lock"])
def test_a_sweep_while_another_box_is_being_made_leaves_both_claiming(home, box, monkeypatch, sweep):
    """Supervisor A (`box`) sweeps for orphans at the worst moment of supervisor B's start:
    between the creation of B's claim folder and B's lock on it (or just after the lock).
    A must not take B's folder for a dead one; both must then claim files."""
    real_flock, swept = fcntl.flock, []

    def flock_with_a_sweep(fd, operation):
        first = not swept
        swept.append(operation)
        if first and sweep == "before its lock":
            box.adopt_orphans()  # A's sweep, after B made its folder, before B locks it
        result = real_flock(fd, operation)
        if first and sweep == "after its lock":
            box.adopt_orphans()
        return result

    monkeypatch.setattr(inbox.fcntl, "flock", flock_with_a_sweep)
    other = inbox.ClaimBox(home)  # supervisor B
    monkeypatch.undo()
    try:
        assert swept, "the sweep was not forced into B's start"
        drop(home, "a.json", "{}")
        drop(home, "b.json", "{}")
        mine, theirs = box.claim("a.json"), other.claim("b.json")
        assert mine is not None and theirs is not None, "a supervisor can no longer claim files"
        assert [i.key for i in box.adopt_orphans()] == [mine.key]  # B is alive: its files stay its own
        assert [i.key for i in other.adopt_orphans()] == [theirs.key]
        assert sorted(os.listdir(home.inbox_claimed)) == sorted([box.path.name, other.path.name])
    finally:
        other.close()


def test_a_folder_left_half_made_by_a_crash_is_swept_away(home, box):
    os.mkdir(home.inbox_claimed / ".new-0000000000000001-1")  # its maker died before locking it
    assert box.adopt_orphans() == []
    assert os.listdir(home.inbox_claimed) == [box.path.name]


def test_a_box_that_vanished_is_said_and_made_again(home, box, caplog):
    drop(home, "a.json", "{}")
    os.rmdir(box.path)  # removed behind its back (by hand, or by a buggy sweep)
    with caplog.at_level(logging.WARNING, logger="ratchet.supervisor"):
        item = box.claim("a.json")
    assert item is not None and box.holding() == [item] and box.path.is_dir()
    assert "vanished" in caplog.text and str(home.inbox_claimed) in caplog.text
    drop(home, "b.json", "{}")
    assert take(box, "b.json").path.parent == box.path  # and it goes on claiming
    assert box.claim("a.json") is None  # a file another claimer won is still just None


# --- Symlinked folders ------------------------------------------------------------------


@pytest.mark.parametrize("folder", ["inbox_done", "inbox_rejected", "inbox_claimed"])
def test_a_symlinked_inbox_folder_is_refused(home, tmp_path, folder):
    outside = tmp_path / "outside"
    outside.mkdir()
    path = getattr(home, folder)
    os.rmdir(path)
    os.symlink(outside, path)
    with pytest.raises(UnsafeInboxError, match="is a symlink"):
        inbox.ClaimBox(home)
    assert os.listdir(outside) == []


def test_a_folder_swapped_for_a_symlink_after_start_cannot_take_files_out(home, box, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    for name in ("a.json", "b.json"):
        drop(home, name, "{}")
    a, b = take(box, "a.json"), take(box, "b.json")
    for folder in (home.inbox_done, home.inbox_rejected):
        os.rename(folder, folder.with_name(folder.name + ".old"))
        os.symlink(outside, folder)
    box.mark_done(a)
    box.reject(b, "refused")
    assert os.listdir(outside) == []
    assert os.listdir(home.inbox / "done.old") == ["a.json"]
    assert sorted(os.listdir(home.inbox / "rejected.old")) == ["b.json", "b.json.error.txt"]


def test_home_ensure_refuses_a_symlinked_inbox_folder(tmp_path):
    from engine.home import Home

    home = Home(tmp_path / "home").ensure()
    outside = tmp_path / "outside"
    outside.mkdir()
    os.rmdir(home.inbox_rejected)
    os.symlink(outside, home.inbox_rejected)
    with pytest.raises(UnsafeInboxError, match="rejected: is a symlink"):
        home.ensure()
