"""Ed25519 key files: the one format every Ratchet key is kept in.

Private keys are PEM PKCS#8, unencrypted, written with mode 0600 (a home's sealing key,
a person's signing key); public keys are PEM SubjectPublicKeyInfo. Both are what
`openssl pkey` reads and writes, so an auditor can check a signature without Ratchet.
The cryptography is PyCA's `cryptography`; nothing here is home-made.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from journal.errors import KeyFileError
from journal.writer import fsync_dir


def new_private_key(path: Path) -> Ed25519PrivateKey:
    """Create a new key at `path` (mode 0600, never overwriting an existing file)."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, pem)
        os.fsync(fd)
    finally:
        os.close(fd)
    return key


def load_or_create_private_key(path: Path) -> Ed25519PrivateKey:
    """The key at `path`, created first if there is none (a home's sealing key, on first use).

    Race-safe: the key is written in full under a temporary name, made durable, then
    hard-linked to `path`, which fails if another process got there first; the loser
    loads the winner's key, so two processes starting at once end with one key. A reader
    never sees a half-written key, and the folder is fsync'd so the name survives a crash.
    """
    if not os.path.lexists(path):
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        with contextlib.suppress(FileExistsError):  # another process created it: load theirs
            _create_once(path, pem, 0o600)
    return load_private_key(path)


def write_public_key(path: Path, key: Ed25519PrivateKey | Ed25519PublicKey) -> None:
    """Write the public half of `key` at `path` (PEM) unless a file is there already (race-safe)."""
    if not os.path.lexists(path):
        with contextlib.suppress(FileExistsError):
            _create_once(path, public_pem(key), 0o644)


def key_id(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """A key's id: the first 16 hex digits of the sha256 of its public key in DER
    (SubjectPublicKeyInfo), what `openssl pkey -pubin -in K.pub -outform DER | sha256sum` prints."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()[:16]


def _create_once(path: Path, data: bytes, mode: int) -> None:
    """Create `path` holding `data`, complete and durable, or raise FileExistsError."""
    if not path.parent.is_dir():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fsync_dir(path.parent.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.link(tmp, path)  # atomic, and never replaces: FileExistsError if someone was first
    finally:
        os.unlink(tmp)
    fsync_dir(path.parent)


def public_pem(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_private_key(path: Path) -> Ed25519PrivateKey:
    pem = _read(path)
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:  # TypeError: an encrypted key
        raise KeyFileError(f"{path}: not an unencrypted PEM private key; hint: make one with "
                           "'ratchet keys new NAME'") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path}: not an Ed25519 private key; hint: make one with 'ratchet keys new NAME'")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    return public_key_from_pem(_read(path), str(path))  # _read outside: its KeyFileError is a ValueError too


def public_key_from_pem(pem: bytes, where: str) -> Ed25519PublicKey:
    """The Ed25519 public key in `pem` (read from `where`, named in errors)."""
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError as exc:
        raise KeyFileError(f"{where}: not a PEM public key; hint: export one with 'ratchet keys export'") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError(f"{where}: not an Ed25519 public key; hint: Ratchet signs with Ed25519 only")
    return key


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read key file ({exc.strerror}); hint: check the path") from exc
