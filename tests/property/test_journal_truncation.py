"""Cut a real journal at EVERY byte offset: recovery keeps exactly the complete records before the cut.

Hypothesis chooses the journal's contents (record types, unicode text, nested data);
the offsets are not sampled: each example is checked at all of them.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from journal import (
    FileStore,
    RunStarted,
    StepFailed,
    StepStarted,
    StepSucceeded,
    Transition,
    TriggerReceived,
    Waiting,
    hash_definition,
    read,
    to_builtins,
    verify,
)

names = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)
text = st.text(max_size=12)  # any unicode, newlines and quotes included: they must stay escaped
scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1),
                    st.floats(allow_nan=False, allow_infinity=False), text)
data = st.dictionaries(text, st.recursive(scalars, lambda inner: st.lists(inner, max_size=3), max_leaves=4), max_size=3)

steps = st.one_of(
    st.builds(StepStarted, state=names, attempt=st.integers(1, 9), idempotency_key=text),
    st.builds(StepSucceeded, state=names, attempt=st.integers(1, 9), trigger=names, data=data),
    st.builds(StepFailed, state=names, attempt=st.integers(1, 9), error=text, error_type=text),
    st.builds(Transition, trigger=names, source=names, dest=names),
    st.builds(Waiting, state=names, triggers=st.lists(names, max_size=3)),
    st.builds(TriggerReceived, trigger=names, state=names, by=text, comment=st.none() | text, data=data),
)
journals = st.tuples(
    data.flatmap(lambda definition: st.builds(
        RunStarted, run_id=st.just("r1"), machine=names, version=st.integers(1, 9),
        definition=st.just(definition), definition_hash=st.just(hash_definition(definition)), input=data)),
    st.lists(steps, min_size=1, max_size=5),
)


def after_cut(store: FileStore, data: bytes, cut: int) -> None:
    path = store.path("r1")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:  # rewrite in place: truncating to zero makes ext4 flush on close (auto_da_alloc), 50x slower
        os.pwrite(fd, data[:cut], 0)
        os.ftruncate(fd, cut)
    finally:
        os.close(fd)
    boundary = data.rfind(b"\n", 0, cut) + 1  # end of the last complete line before the cut
    complete = data[:boundary].count(b"\n")
    expected = [to_builtins(r) for r in ORIGINAL[:complete]]

    contents = read(path)
    assert [to_builtins(r) for r in contents.records] == expected
    assert (contents.end_offset, contents.torn_bytes) == (boundary, cut - boundary)
    result = verify(path)
    assert result.ok and result.records == complete and result.torn_bytes == cut - boundary

    with store.writer("r1") as w:  # recovery cuts the torn part; the next append is clean
        assert w.recovered_bytes == cut - boundary and w.last_seq == complete
        w.append(ORIGINAL[0].__copy__() if complete == 0 else Transition(trigger="resumed", source="a", dest="b"))
    after = path.read_bytes()
    assert after[:boundary] == data[:boundary] and after.endswith(b"\n")
    result = verify(path)
    assert result.ok and result.records == complete + 1 and not result.torn


ORIGINAL: list = []


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(journal=journals)
def test_recovery_at_every_offset_keeps_exactly_the_complete_records(tmp_path: Path, journal) -> None:
    first, rest = journal
    store = FileStore(tmp_path / uuid.uuid4().hex, durability="none")  # the cut's own fsync still runs
    with store.writer("r1", create=True) as w:
        written = w.append_many([first, *rest])
    ORIGINAL[:] = [r.__copy__() for r in written]
    data = store.path("r1").read_bytes()
    assert data.count(b"\n") == len(written)
    for cut in range(len(data) + 1):
        after_cut(store, data, cut)
    os.unlink(store.path("r1"))
