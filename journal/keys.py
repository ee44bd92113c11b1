"""Ed25519 key files: the one format every Ratchet key is kept in.

Private keys are PEM PKCS#8, unencrypted, written with mode 0600 (a home's sealing key,
a person's signing key); public keys are PEM SubjectPublicKeyInfo. Both are what
`openssl pkey` reads and writes, so an auditor can check a signature without Ratchet.
The cryptography is PyCA's `cryptography`; nothing here is home-made.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from journal.errors import KeyFileError


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
    pem = _read(path)  # outside the try: its KeyFileError is a ValueError too
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError as exc:
        raise KeyFileError(f"{path}: not a PEM public key; hint: export one with 'ratchet keys export'") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError(f"{path}: not an Ed25519 public key; hint: Ratchet signs with Ed25519 only")
    return key


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read key file ({exc.strerror}); hint: check the path") from exc
