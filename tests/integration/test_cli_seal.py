"""Sealed journals through the real console script: `ratchet verify [--key]`, `ratchet keys
export`, and the auditor's openssl recipe of journal/FORMAT.md, attacked as a forger would.

The template home holds run `ID` of renewal_review, approved by alice and finished: its
journal has a seal after the wait and after the end. Each test works on a copy.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from journal.keys import key_id, public_pem
from journal.seal import sign

RATCHET = shutil.which("ratchet") or str(Path(sys.executable).parent / "ratchet")
ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "journals"


def ratchet(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    environ = {**os.environ, "RATCHET_HOME": str(home), "RATCHET_LEDGER": str(home.parent / "ledger.jsonl"), **env}
    for name in ("RATCHET_CRASH_AT", "RATCHET_CRASH_COUNT", "RATCHET_CLOCK_FILE"):
        if name not in env:
            environ.pop(name, None)
    return subprocess.run([RATCHET, *args], capture_output=True, text=True, env=environ, cwd=ROOT, timeout=120)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("sealed") / "home"
    assert ratchet(home, "run", "renewal_review", "--input", "customer=acme", "--id", "ID").returncode == 0
    assert ratchet(home, "approve", "ID", "--by", "alice").returncode == 0
    done = ratchet(home, "supervise", "--once")
    assert done.returncode == 0 and "run ID finished in 'sent'" in done.stderr, done.stderr
    exported = ratchet(home, "keys", "export", "-o", str(home.parent / "auditor.pub"))
    assert exported.returncode == 0, exported.stderr
    return home


@pytest.fixture
def home(template: Path, tmp_path: Path) -> Path:
    shutil.copytree(template, tmp_path / "home")
    shutil.copy(template.parent / "auditor.pub", tmp_path / "auditor.pub")
    return tmp_path / "home"


def journal(home: Path) -> Path:
    return home / "runs" / "ID.jsonl"


def records(home: Path) -> list[dict]:
    return [json.loads(line) for line in journal(home).read_bytes().splitlines()]


def seal_lines(home: Path) -> list[int]:
    return [r["seq"] for r in records(home) if r["type"] == "sealed"]


def rewrite(home: Path, edited: list[dict], *, fix_heads: bool, from_line: int = 1,
            resign: Ed25519PrivateKey | None = None) -> None:
    """Write `edited` as the journal, recomputing every `prev` from `from_line` on with sha256, as
    FORMAT.md describes the chain (a forger's re-chain); `fix_heads`: also point each seal's
    `head` at its new line before (a forger who read FORMAT.md's seal section too); `resign`:
    and sign each seal again with that key."""
    lines: list[bytes] = []
    for number, record in enumerate(edited, 1):
        if number > 1 and number >= from_line:
            record["prev"] = hashlib.sha256(lines[-1]).hexdigest()
            if fix_heads and record["type"] == "sealed":
                record["head"] = record["prev"]
                if resign is not None:
                    again = sign(resign, "ID", record["through"], record["head"])
                    record["key"], record["sig"] = again.key, again.sig
        lines.append(json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode())
    journal(home).write_bytes(b"\n".join(lines) + b"\n")


def edit_decision(home: Path, *, fix_heads: bool) -> int:
    """alice's approval becomes bob's; every prev after it re-chained. Returns its line."""
    edited = records(home)
    decision = next(r for r in edited if r["type"] == "trigger_received")
    assert decision["by"] == "alice"
    decision["by"] = "bob"
    rewrite(home, edited, fix_heads=fix_heads, from_line=decision["seq"] + 1)
    if fix_heads:  # the side file too, so it agrees with the rewritten journal
        (home / "seals" / "ID.json").write_bytes(journal(home).read_bytes().splitlines()[-1] + b"\n")
    return decision["seq"]


def without_private_key(home: Path) -> None:
    """The verifier has only the exported public key: the home's key files are gone."""
    for name in ("home.key", "home.pub"):
        (home / "keys" / name).unlink()


# --- verify ------------------------------------------------------------------------------------


def test_a_finished_run_verifies_with_the_home_key_and_with_the_exported_one_alone(home):
    seals = seal_lines(home)
    n = len(records(home))
    assert seals == [6, n] and records(home)[-2]["type"] == "run_finished"
    out = ratchet(home, "verify")
    assert (out.returncode, out.stdout) == (0, f"ID: ok ({n} records; sealed through line {n - 1})\n")
    without_private_key(home)
    blind = ratchet(home, "verify")
    assert blind.returncode == 1
    assert blind.stdout.startswith(f"{journal(home)}:6: sealed by key ")
    assert "no public key to check it; pass --key" in blind.stdout
    audited = ratchet(home, "verify", "--key", str(home.parent / "auditor.pub"))
    assert (audited.returncode, audited.stdout) == (0, out.stdout)


@pytest.mark.parametrize("fix_heads", [False, True], ids=["prev-rechained", "prev-and-seal-heads-rechained"])
def test_a_decision_edited_and_rechained_fails_with_the_line_with_or_without_the_private_key(home, fix_heads):
    intact = ratchet(home, "verify", "ID")
    assert intact.returncode == 0
    line = edit_decision(home, fix_heads=fix_heads)
    assert '"by":"bob"' in journal(home).read_text().splitlines()[line - 1]
    chain_only = subprocess.run([sys.executable, "-c", "import sys; from journal import verify; "
                                 "print(verify(sys.argv[1]).ok)", str(journal(home))],
                                capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert chain_only.stdout == "True\n"  # the re-chain holds: only the seal can tell
    last_seal = seal_lines(home)[-1]
    why = "seal signature does not verify" if fix_heads else "seal does not match the line before it"
    expected = f"{journal(home)}:{last_seal}: {why}"
    out = ratchet(home, "verify", "ID")
    assert out.returncode == 1 and out.stdout.startswith(expected), out.stdout
    assert f"lines 7-{last_seal - 1} changed since they were sealed" in out.stdout  # after the intact seal at 6
    without_private_key(home)
    audited = ratchet(home, "verify", "ID", "--key", str(home.parent / "auditor.pub"))
    assert (audited.returncode, audited.stdout) == (1, out.stdout)


def test_a_forged_seal_fails_and_another_homes_key_is_an_unknown_key(home):
    edited = records(home)
    edited[5]["sig"] = edited[5]["sig"][:10] + ("A" if edited[5]["sig"][10] != "A" else "B") + edited[5]["sig"][11:]
    rewrite(home, edited, fix_heads=False, from_line=7)
    out = ratchet(home, "verify", "ID")
    assert out.returncode == 1
    assert out.stdout.startswith(f"{journal(home)}:6: seal signature does not verify: lines 1-5 changed")

    # Every seal made again with another home's key (and the side file), the chain kept whole.
    other = Ed25519PrivateKey.generate()
    rewrite(home, records(home), fix_heads=True, resign=other)
    (home / "seals" / "ID.json").write_bytes(journal(home).read_bytes().splitlines()[-1] + b"\n")
    out = ratchet(home, "verify", "ID")
    assert out.returncode == 1
    assert f"{journal(home)}:6: sealed by key {key_id(other)}, not by the key given (" in out.stdout
    assert "an unknown key" in out.stdout
    # The key an auditor trusts is what decides: the other home's own key vouches for its seals.
    (home.parent / "other.pub").write_bytes(public_pem(other))
    assert ratchet(home, "verify", "ID", "--key", str(home.parent / "other.pub")).returncode == 0


def test_a_journal_cut_back_before_its_last_seal_fails_while_the_home_keeps_that_seal(home):
    lines = journal(home).read_bytes().splitlines(keepends=True)
    first = seal_lines(home)[0]
    journal(home).write_bytes(b"".join(lines[:first + 3]))  # a chain that still holds, sealed at 6
    out = ratchet(home, "verify", "ID")
    assert out.returncode == 1
    assert out.stdout == (f"{journal(home)}:{first + 3}: the journal ends at line {first + 3}, but the home's "
                          f"latest seal (seals/ID.json) sealed it through line {len(lines) - 1} (seal at line "
                          f"{len(lines)}): lines were cut off its end\n")
    # What it cannot see: the side file replaced by a copy of the older seal as well.
    (home / "seals" / "ID.json").write_bytes(lines[first - 1])
    assert ratchet(home, "verify", "ID").returncode == 0
    # Nor a journal cut back to before any seal with the side file deleted: it looks unsealed.
    journal(home).write_bytes(b"".join(lines[:first - 1]))
    (home / "seals" / "ID.json").unlink()
    out = ratchet(home, "verify", "ID")
    assert (out.returncode, out.stdout) == (0, f"ID: ok ({first - 1} records; unsealed)\n")


def test_a_deleted_or_damaged_side_file_fails(home):
    (home / "seals" / "ID.json").write_text("{}\n")
    out = ratchet(home, "verify", "ID")
    assert out.returncode == 1 and "seals/ID.json: not a seal" in out.stdout
    (home / "seals" / "ID.json").unlink()
    out = ratchet(home, "verify", "ID")
    assert out.returncode == 1 and "the journal is sealed but the home keeps no seal of it" in out.stdout


def test_journals_older_than_sealing_are_unsealed_not_broken(home):
    shutil.copy(FIXTURES / "renewal_approved.jsonl", home / "runs" / "renewal-acme.jsonl")
    out = ratchet(home, "verify")
    n = len(records(home))
    assert out.returncode == 0
    assert out.stdout.splitlines() == [f"ID: ok ({n} records; sealed through line {n - 1})",
                                       "renewal-acme: ok (12 records; unsealed)"]


def test_an_archived_journal_keeps_its_seals_checked(home, tmp_path):
    clock = tmp_path / "clock"
    clock.write_text("2027-03-01T00:00:00Z")
    archived = ratchet(home, "archive", "--finished-before", "30d", RATCHET_CLOCK_FILE=str(clock))
    assert archived.returncode == 0 and "ID: archived" in archived.stdout, archived.stdout + archived.stderr
    out = ratchet(home, "verify", "--all")
    assert out.returncode == 0 and re.fullmatch(r"ID \(archived\): ok \(\d+ records; sealed through line \d+\)\n",
                                                out.stdout), out.stdout
    packed = home / "archive" / "ID.jsonl.gz"
    lines = gzip.decompress(packed.read_bytes()).splitlines(keepends=True)
    packed.write_bytes(gzip.compress(b"".join(lines[:-1])))  # the last seal cut off the archive
    out = ratchet(home, "verify", "ID")
    assert out.returncode == 1 and "lines were cut off its end" in out.stdout


def test_an_exported_journal_verifies_with_the_exported_key_and_a_forged_one_does_not(home, tmp_path):
    """`ratchet export ID > F; ratchet verify F --key PUB`: a file carries no home, so no side
    file can be asked of it; its seals are checked with the auditor's key all the same."""
    auditor = str(home.parent / "auditor.pub")
    exported = tmp_path / "ID.jsonl"
    exported.write_bytes(subprocess.run([RATCHET, "export", "ID"], env={**os.environ, "RATCHET_HOME": str(home)},
                                        cwd=ROOT, capture_output=True, timeout=60, check=True).stdout)
    n = len(records(home))
    out = ratchet(home, "verify", str(exported), "--key", auditor)
    assert (out.returncode, out.stdout) == (0, f"{exported}: ok ({n} records; sealed through line {n - 1})\n")
    line = edit_decision(home, fix_heads=True)  # alice's approval made bob's, chain and seal heads recomputed
    assert line < seal_lines(home)[-1]
    exported.write_bytes(journal(home).read_bytes())
    out = ratchet(home, "verify", str(exported), "--key", auditor)
    assert out.returncode == 1 and out.stdout.startswith(f"{exported}:{n}: seal signature does not verify"), out.stdout


# --- keys export and the auditor's recipe --------------------------------------------------------


def test_keys_export_prints_the_public_key_whose_id_openssl_computes(home):
    out = ratchet(home, "keys", "export")
    assert out.returncode == 0 and out.stdout.encode() == (home / "keys" / "home.pub").read_bytes()
    assert out.stdout.startswith("-----BEGIN PUBLIC KEY-----\n")
    assert oct((home / "keys" / "home.key").stat().st_mode & 0o777) == "0o600"
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=out.stdout.encode(),
                         capture_output=True, check=True).stdout
    assert {r["key"] for r in records(home) if r["type"] == "sealed"} == {hashlib.sha256(der).hexdigest()[:16]}
    again = ratchet(home, "keys", "export", "-o", str(home.parent / "auditor.pub"))
    assert again.returncode == 1 and again.stderr == (
        f"ratchet: error: {home.parent / 'auditor.pub'}: already exists; hint: choose another file or remove it\n")


def recipe() -> str:
    """The shell block of journal/FORMAT.md that follows the seal-recipe marker, as written."""
    text = (ROOT / "journal" / "FORMAT.md").read_text()
    after = text.split("<!-- seal-recipe:", 1)[1]
    return after.split("```sh\n", 1)[1].split("```", 1)[0]


def run_recipe(home: Path) -> subprocess.CompletedProcess:
    shutil.copy(home.parent / "auditor.pub", home / "home.pub")
    return subprocess.run(["bash", "-c", recipe()], cwd=home, capture_output=True, text=True, timeout=60)


def test_the_auditors_openssl_recipe_in_format_md_checks_a_real_seal(home):
    assert "openssl pkeyutl -verify -pubin -inkey home.pub -rawin" in recipe()
    original = journal(home).read_bytes()
    ok = run_recipe(home)
    assert (ok.returncode, ok.stdout.strip()) == (0, "Signature Verified Successfully"), ok.stdout + ok.stderr

    edited = records(home)
    edited[2]["data"] = {"draft_id": "a draft nobody wrote"}  # line 3, under the seal at line 6
    rewrite(home, edited, fix_heads=True, from_line=4)  # re-chained, the seal's head pointed at the new line 5
    forged = run_recipe(home)
    assert forged.returncode != 0 and "Signature Verification Failure" in forged.stdout, forged.stdout
    assert "changed" not in forged.stdout  # the head matches: only the signature can tell

    journal(home).write_bytes(original)
    edited = records(home)
    edited[4]["deadline"] = "2099-01-01T00:00:00.000000Z"  # line 5, the sealed line itself
    rewrite(home, edited, fix_heads=False, from_line=len(edited) + 1)  # not re-chained
    assert run_recipe(home).stdout.startswith("line 5 changed\n")
