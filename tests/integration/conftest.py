"""Fixtures of the supervisor tests: a folder of test machines, and a home with a file clock."""

from __future__ import annotations

from pathlib import Path

import pytest

from supervisor_harness import Env, machine_folder


@pytest.fixture(scope="session")
def machine_dir(tmp_path_factory) -> Path:
    return machine_folder(tmp_path_factory)


@pytest.fixture
def env(tmp_path: Path, machine_dir: Path):
    """A supervisor home (tests that need another kind of `env` define their own)."""
    e = Env(tmp_path, machine_dir)
    yield e
    e.cleanup()
