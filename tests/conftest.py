"""The root of the test tree: shared fixtures would go here; its presence puts `tests/` on sys.path.

pytest's default ("prepend") import mode inserts the first folder above a conftest.py that
has no `__init__.py` -- here `tests/` itself -- so every test folder can import the shared
toolkit by module name:

- `waiting`: `wait_for`, a poll with a deadline (never a bare sleep as synchronisation);
- `journal_builders`: journal records in one short call (`run_started`, `step_batch`);
- `damage`: break a journal file on purpose (`lines_of`, `write_lines`, `flip_byte`, `cut_at`);
- `lane_actions`: actions for the concurrent driver's tests (a ledger lanes share, a meeting point).

Code run in a subprocess gets none of this (it imports only `engine` and `journal`):
keep such code self-contained.
"""

import pytest

from pg_cluster import Cluster, running_cluster


@pytest.fixture(scope="session")
def pg_cluster():
    """A private PostgreSQL server (tests/pg_cluster.py), started once, for the whole session."""
    with running_cluster() as cluster:
        yield cluster


@pytest.fixture
def pg_url(pg_cluster: Cluster) -> str:
    """A URL to the private server whose tables live in a new, empty schema."""
    return pg_cluster.fresh_schema()


@pytest.fixture(autouse=True)
def _signal_handlers_restored():
    """A test that runs a supervisor or a driver in-process installs its signal handlers:
    each test starts with the handlers the one before it found, so no test's Ctrl-C or
    SIGTERM reaches a supervisor object another test left behind."""
    import signal

    kept = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGIO)}
    yield
    for sig, handler in kept.items():
        if handler is not None:
            signal.signal(sig, handler)
