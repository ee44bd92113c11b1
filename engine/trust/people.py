"""`$RATCHET_HOME/people.yaml`: who may act, and how each person is recognised.

    alice: {unix_user: alice}                       # files owned by Unix user alice are alice's
    bob:   {public_key: keys/bob.pub}               # messages signed with bob's Ed25519 key are bob's
    ops:   {unix_user: svc-ops, public_key: keys/ops.pub}

The file is optional: without it the home is *open* (anyone who can write into the inbox
may claim any name, and decisions are journaled as unverified). With it, every inbox
file must prove its sender (engine.trust.sender). It is validated like a definition:
every mistake at once, each `people.yaml:LINE: what; hint` (PeopleFileError). Public
key paths are relative to the home and are read when the file is loaded, so a missing
or broken key is a mistake of the people file, not a surprise at the first message.
`PeopleBook` reloads the file (and its keys) whenever one of them changes on disk.
"""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Annotated, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, RootModel, ValidationError, field_validator, model_validator

from engine.definition.sources import NO_DATA, describe, read_yaml
from engine.errors import EngineError
from journal.errors import KeyFileError
from journal.keys import load_public_key

PEOPLE_FILE = "people.yaml"
PERSON_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,127}$"  # what a message's `by` may be
UNIX_USER_PATTERN = r"^[a-z_][a-z0-9_.-]{0,31}\$?$"  # useradd's NAME_REGEX


class PeopleFileError(EngineError):
    """people.yaml cannot be used: every mistake, one `file:line: what; hint` per line."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class Person(BaseModel):
    """How one person is recognised: a Unix user who owns their files, an Ed25519 key, or both."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    unix_user: str | None = Field(default=None, pattern=UNIX_USER_PATTERN)
    public_key: str | None = None

    @field_validator("public_key")
    @classmethod
    def _inside_home(cls, value: str | None) -> str | None:
        if value is not None:
            path = PurePosixPath(value)
            if path.is_absolute() or ".." in path.parts or not path.parts:
                raise ValueError(f"public_key {value!r} must be a path inside the home, e.g. keys/bob.pub")
        return value

    @model_validator(mode="after")
    def _recognisable(self) -> Person:
        if self.unix_user is None and self.public_key is None:
            raise ValueError("give unix_user, public_key or both: otherwise nobody can be recognised as them")
        return self


class _People(RootModel[dict[Annotated[str, Field(pattern=PERSON_PATTERN)], Person]]):
    pass


@dataclass(frozen=True)
class People:
    """A loaded, valid people file: each person, and each person's public key (loaded)."""

    path: Path
    persons: dict[str, Person]
    keys: dict[str, Ed25519PublicKey]

    def names_of_unix_user(self, user: str) -> list[str]:
        return [name for name, person in self.persons.items() if person.unix_user == user]


def load_people(home: Path) -> People | None:
    """The home's people file, validated; None if there is none (an open home)."""
    path = home / PEOPLE_FILE
    if not path.exists():
        return None
    source = read_yaml(path)
    problems = [str(problem) for problem in source.problems]
    if source.raw is NO_DATA or problems:
        raise PeopleFileError(problems or [f"{path}: empty file; hint: write 'NAME: {{unix_user: USER}}' lines "
                                           "or remove the file to leave the home open"])
    raw = source.raw
    try:
        persons = _People.model_validate(raw).root
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            loc = tuple(part for part in error["loc"] if part != "[key]")
            where = ".".join(map(str, loc)) or "people"
            what = describe(error)
            if error["type"] == "string_pattern_mismatch" and len(loc) == 1:
                what = f"invalid name {loc[0]!r}: use letters, digits and '.', '_', '@', '+', '-'"
            lines.append(f"{path}:{source.line_of(loc)}: {where}: {what}; hint: see README 'Who decided'")
        raise PeopleFileError(lines) from exc
    keys: dict[str, Ed25519PublicKey] = {}
    seen: dict[str, str] = {}
    for name, person in persons.items():
        if person.public_key is not None:
            try:
                keys[name] = load_public_key(home / person.public_key)
            except KeyFileError as exc:
                problems.append(f"{path}:{source.line_of((name, 'public_key'))}: {name}.public_key: {exc}")
        if person.unix_user is not None:
            if person.unix_user in seen:
                problems.append(f"{path}:{source.line_of((name, 'unix_user'))}: {name}.unix_user: Unix user "
                                f"'{person.unix_user}' is also {seen[person.unix_user]}'s; hint: one person per "
                                "Unix user, or a file's owner could not say who sent it")
            seen[person.unix_user] = name
    if problems:
        raise PeopleFileError(problems)
    return People(path, persons, keys)


class PeopleBook:
    """The home's people file, loaded again only when it or one of its keys changed.

    `current()` returns the People (None: an open home) or raises PeopleFileError; it
    costs a few `stat` calls when nothing changed.
    """

    def __init__(self, home: Path) -> None:
        self.home = Path(home)
        self._stamp: tuple[object, ...] | None = None
        self._people: People | None = None
        self._error: PeopleFileError | None = None

    def current(self) -> People | None:
        stamp = self._stamp_now()
        if stamp != self._stamp:
            try:
                self._people, self._error = load_people(self.home), None
            except PeopleFileError as exc:
                self._people, self._error = None, exc
            # A broken file is read again next time: the fix may be in a key file it names.
            self._stamp = stamp if self._error is None else None
        if self._error is not None:
            raise self._error
        return self._people

    def _stamp_now(self) -> tuple[object, ...]:
        paths = [self.home / PEOPLE_FILE]
        if self._people is not None:
            paths += [self.home / p.public_key for p in self._people.persons.values() if p.public_key]
        return tuple(_stat(path) for path in paths)


def _stat(path: Path) -> tuple[int, int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def starter_name(home: Path) -> str:
    """Who starts a run when `--by` is not given: the person people.yaml gives this process's
    Unix user, else that Unix user's name (a broken people file is reported elsewhere)."""
    login = _login()
    try:
        people = load_people(home)
    except PeopleFileError:
        people = None
    names = people.names_of_unix_user(login) if people is not None else []
    return names[0] if names else login


class StarterError(EngineError):
    """`--by` names a starter this process cannot prove to be (a home with people.yaml)."""


def starter(home: Path, claimed: str | None = None) -> str:
    """Who starts a run: `claimed` (`--by`, the API's `by`), else `starter_name`.

    With a people file, a claimed name must be one it gives this process's Unix user: a
    `not_starter` wait is four eyes only if nobody can start a run in someone else's name
    (start as bob, approve as alice). A broken people file verifies nobody: a claim is then
    refused (fails closed). In an open home any name is taken, as every name is there."""
    if claimed is None:
        return starter_name(home)
    try:
        people = load_people(home)
    except PeopleFileError as exc:
        raise StarterError(f"--by {claimed}: cannot be verified while the people file is broken: "
                           f"{exc.problems[0]}") from exc
    if people is None:
        return claimed
    login = _login()
    names = people.names_of_unix_user(login)
    if claimed not in names:
        given = " or ".join(f"'{name}'" for name in names) or "nobody"
        raise StarterError(f"--by {claimed}: not verified: this process runs as Unix user '{login}', whom "
                           f"{people.path.name} gives as {given}; hint: leave --by out, or start the run as "
                           f"{claimed}'s Unix user")
    return claimed


def _login() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return f"uid-{os.geteuid()}"


def strangers(people: People, definition: dict[str, Any]) -> list[str]:
    """Names a canonical definition lets act (approvers, resolvers, operators) that `people`
    does not list: nobody could ever prove to be them, so they could never act."""
    found = []
    lists = [("machine", key, definition.get(key)) for key in ("resolvers", "operators")]
    for state, fields in definition.get("states", {}).items():
        lists += [(f"state '{state}'", key, fields.get(key)) for key in ("approvers", "resolvers")]
    for where, key, names in lists:
        for name in names or ():
            if name not in people.persons:
                found.append(f"{key} of {where} name '{name}', whom {people.path} does not list: "
                             "they could never be verified; add them there or drop the name")
    return found
