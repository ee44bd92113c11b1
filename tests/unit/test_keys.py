import stat

import pytest

from journal import KeyFileError
from journal.keys import load_private_key, load_public_key, new_private_key, public_pem


def test_a_new_key_is_private_and_its_public_half_round_trips(tmp_path):
    key = new_private_key(tmp_path / "keys" / "alice.key")
    assert stat.S_IMODE((tmp_path / "keys" / "alice.key").stat().st_mode) == 0o600
    (tmp_path / "alice.pub").write_bytes(public_pem(key))
    signature = load_private_key(tmp_path / "keys" / "alice.key").sign(b"approve")
    load_public_key(tmp_path / "alice.pub").verify(signature, b"approve")  # raises if wrong


def test_a_key_is_never_overwritten(tmp_path):
    new_private_key(tmp_path / "k")
    with pytest.raises(FileExistsError):
        new_private_key(tmp_path / "k")


def test_a_file_that_is_not_a_key_is_refused_in_one_line(tmp_path):
    (tmp_path / "bob.pub").write_text("hello\n")
    with pytest.raises(KeyFileError, match=r"bob.pub: not a PEM public key"):
        load_public_key(tmp_path / "bob.pub")
    with pytest.raises(KeyFileError, match="cannot read key file"):
        load_public_key(tmp_path / "missing.pub")
