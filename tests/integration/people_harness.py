"""People for the trust tests: a people.yaml with Ed25519 keys, real Unix users, signed drops.

`Trust` adds to a supervisor `Env` (supervisor_harness) what proving a sender needs: a key
pair per person (public keys in HOME/keys/, people.yaml listing them), messages signed
as the CLI signs them (engine.trust.envelope), files written into the inbox *as another
Unix user* (a forked child that drops its privileges), and a way to wait for what the
supervisor made of a file (done/, or rejected/ with its .error.txt).
"""

from __future__ import annotations

import json
import os
import pwd
import subprocess
from datetime import timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from engine.trust.envelope import sign
from journal.durable import publish
from journal.keys import new_private_key, public_pem

from supervisor_harness import Env
from waiting import wait_for

# A wait that needs two of three approvers, never the run's starter; only carol resolves;
# only ops cancels or upgrades. `charge` is the side effect that must never run unapproved.
FOUR_EYES = """
name: four_eyes
version: 1
initial: prepare
resolvers: [carol]
operators: [ops]
states:
  prepare: {action: sup_acts:work}
  review:
    approvers: [alice, bob, carol]
    quorum: {approve: 2}
    not_starter: true
    timeout: 1d
  charge: {action: sup_acts:work, idempotent: false}
  done: {final: true}
  rejected: {final: true, outcome: rejected}
transitions:
  - {trigger: ok, source: prepare, dest: review}
  - {trigger: approve, source: review, dest: charge}
  - {trigger: reject, source: review, dest: rejected}
  - {trigger: ok, source: charge, dest: done}
"""
PEOPLE = ("alice", "bob", "carol", "dave", "mallory", "ops")


class Trust:
    """Keys and a people file for `env`'s home; `unix` maps people to real Unix users."""

    def __init__(self, env: Env, unix: dict[str, str] | None = None) -> None:
        self.env = env
        self.keys: dict[str, Ed25519PrivateKey] = {}
        lines = []
        for name in PEOPLE:
            self.keys[name] = new_private_key(env.dir / f"{name}.key")
            public = env.home.root / "keys" / f"{name}.pub"
            public.parent.mkdir(exist_ok=True)
            public.write_bytes(public_pem(self.keys[name]))
            user = (unix or {}).get(name)
            lines.append(f"{name}: {{public_key: keys/{name}.pub" + (f", unix_user: {user}}}" if user else "}"))
        (env.home.root / "people.yaml").write_text("\n".join(lines) + "\n")
        self.drops = 0

    def signed(self, run: str, by: str, *, key: str | None = None, answers: int | None = None,
               expires_in: float = 3600, **fields: object) -> dict:
        """A message from `by` signed with `key`'s key (default: by's own) for the run's
        wait now (or `answers`), expiring `expires_in` seconds from the clock's now."""
        body = {"run": run, "by": by, **fields}
        at = self.env.row(run).stands_at if answers is None else answers
        expires = self.env.clock.now() + timedelta(seconds=expires_in)
        return sign(body, self.keys[key or by], at, expires)

    def drop(self, message: dict, *, as_user: str | None = None) -> str:
        """Drop `message` into the inbox (as Unix user `as_user`, else as this process); its name."""
        self.drops += 1
        name = f"drop-{self.drops}.json"
        data = json.dumps(message).encode()
        if as_user is None:
            publish(self.env.home.inbox_tmp / name, self.env.home.inbox / name, data, exclusive=True, mode=0o644)
        else:
            write_as(as_user, self.env.home.inbox_tmp, self.env.home.inbox, name, data)
        return name

    def outcome(self, name: str, timeout: float = 20.0) -> tuple[str, str]:
        """("done", "") once the file is applied, or ("rejected", the reason it was filed with)."""
        home = self.env.home

        def filed() -> tuple[str, str] | None:
            if (home.inbox_done / name).exists():
                return "done", ""
            note = home.inbox_rejected / f"{name}.error.txt"
            if note.exists() and (home.inbox_rejected / name).exists():
                return "rejected", note.read_text()
            return None

        return wait_for(filed, timeout=timeout, what=f"inbox file {name} to be filed")

    def refusals(self, run: str) -> list[dict]:
        return [r for r in self.env.records(run) if r["type"] == "trigger_refused"]


# --- real Unix users --------------------------------------------------------------------------


def add_user(name: str) -> None:
    subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
                   check=True, capture_output=True)


def remove_user(name: str) -> None:
    subprocess.run(["userdel", name], check=False, capture_output=True)


def open_inbox_to_everyone(env: Env) -> None:
    """inbox/ and inbox/.tmp writable by all, sticky (as /tmp): people drop their own files there."""
    for folder in (env.home.inbox, env.home.inbox_tmp):
        os.chmod(folder, 0o1777)


def write_as(user: str, tmp_dir: Path, inbox: Path, name: str, data: bytes, mode: int = 0o644) -> None:
    """Write `name` into `tmp_dir`, then rename it into `inbox`, as Unix user `user` (a forked
    child that drops root first): the file is that user's, as if they had written it.

    The folders are opened before the fork, so the child needs no access to their parents.
    """
    entry = pwd.getpwnam(user)
    tmp_fd = os.open(tmp_dir, os.O_RDONLY | os.O_DIRECTORY)
    inbox_fd = os.open(inbox, os.O_RDONLY | os.O_DIRECTORY)
    try:
        pid = os.fork()
        if pid == 0:  # the child: never returns into pytest
            code = 1
            try:
                os.setgroups([])
                os.setgid(entry.pw_gid)
                os.setuid(entry.pw_uid)
                os.umask(0o022)
                fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode, dir_fd=tmp_fd)
                os.fchmod(fd, mode)
                os.write(fd, data)
                os.fsync(fd)
                os.close(fd)
                os.rename(name, name, src_dir_fd=tmp_fd, dst_dir_fd=inbox_fd)
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(f"writing {name} as {user} failed")
    finally:
        os.close(tmp_fd)
        os.close(inbox_fd)
