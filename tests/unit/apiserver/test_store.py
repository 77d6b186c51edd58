import asyncio
import contextlib
import gc
import threading
import time
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from arges.apiserver.entries import Put, Remove, sort_entries
from arges.apiserver.storage import Database, LogRecord, StorageError
from arges.apiserver.store import (
    SLOW_WRITE,
    AlreadyStored,
    Expired,
    NotStored,
    Stale,
    Store,
)


def obj(name: str, ns: str = "", **extra: object) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Thing",
        "metadata": {"name": name, "namespace": ns, **extra},
    }


@contextlib.asynccontextmanager
async def opened(path: Path) -> AsyncIterator[Store]:
    """The store in ``path``, started, and closed after."""
    s = Store.open(path)
    await s.start()
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
async def store(tmp_path: Path):
    async with opened(tmp_path / "state.db") as s:
        yield s


async def test_revisions_are_one_global_counter(store: Store) -> None:
    (a,) = await store.commit([Put("things", obj("a"))])
    (b,) = await store.commit([Put("others", obj("b", "ns"))])
    (a2,) = await store.commit([Put("things", obj("a"), expect_rv=a.rv)])
    assert (a.rv, b.rv, a2.rv) == (1, 2, 3)
    assert a2.type == "MODIFIED" and a2.prev is not None and a2.prev.rv == 1
    entry = store.get("things", "", "a")
    assert entry is not None and entry.object()["metadata"]["resourceVersion"] == "3"


async def test_preconditions_fail_whole_transactions(store: Store) -> None:
    (a,) = await store.commit([Put("things", obj("a"))])
    with pytest.raises(AlreadyStored):
        await store.commit([Put("things", obj("a"))])
    with pytest.raises(Stale):
        await store.commit([Put("things", obj("a"), expect_rv=a.rv + 100)])
    with pytest.raises(NotStored):
        await store.commit([Remove("things", "", "zzz", 1)])
    with pytest.raises(AlreadyStored):
        await store.commit([Put("things", obj("b")), Put("things", obj("a"))])
    assert store.get("things", "", "b") is None, "a failed transaction wrote nothing"
    assert store.rv == a.rv


async def test_concurrent_writers_are_grouped_but_each_gets_its_answer(store: Store) -> None:
    results = await asyncio.gather(
        *(store.commit([Put("things", obj(f"n{i}"))]) for i in range(200)),
        store.commit([Put("things", obj("n5"))]),
        return_exceptions=True,
    )
    errors = [r for r in results if isinstance(r, Exception)]
    assert len(errors) == 1 and isinstance(errors[0], AlreadyStored)
    revs = sorted(r[0].rv for r in results if not isinstance(r, Exception))
    assert revs == list(range(1, 201))


async def test_state_and_history_survive_reopening(tmp_path: Path) -> None:
    async with opened(tmp_path / "state.db") as s:
        (a,) = await s.commit([Put("things", obj("a", labels={"x": "1"}))])
        await s.commit([Put("things", obj("b"))])
        await s.commit([Remove("things", "", "b", 2)])
    async with opened(tmp_path / "state.db") as s:
        assert s.rv == 3
        entry = s.get("things", "", "a")
        assert entry is not None and entry.labels == {"x": "1"} and entry.rv == a.rv
        assert s.get("things", "", "b") is None
        history = await s.history("things", 0, s.rv)
        assert [(c.type, c.entry.name, c.rv) for c in history] == [
            ("ADDED", "a", 1),
            ("ADDED", "b", 2),
            ("DELETED", "b", 3),
        ]
        (c,) = await s.commit([Put("things", obj("c"))])
        assert c.rv == 4


async def test_one_batch_is_stored_in_its_order_however_long(tmp_path: Path) -> None:
    # Objects are written many rows to a statement: what a batch deletes and makes again,
    # and batches past one statement's rows, must read back as they were committed.
    async with opened(tmp_path / "state.db") as s:
        await s.commit(
            [
                Put("things", obj("a")),
                Put("things", obj("gone")),
                Remove("things", "", "a", 1),
                Put("things", obj("a", labels={"v": "again"})),
                Remove("things", "", "gone", 2),
                *(Put("things", obj(f"n{i}")) for i in range(250)),
            ]
        )
    async with opened(tmp_path / "state.db") as s:
        assert s.rv == 255
        entry = s.get("things", "", "a")
        assert entry is not None and entry.labels == {"v": "again"} and entry.rv == 4
        assert s.get("things", "", "gone") is None
        assert len(s.items("things")) == 251
        history = await s.history("things", 0, s.rv)
        assert [(c.type, c.entry.name) for c in history[:5]] == [
            ("ADDED", "a"),
            ("ADDED", "gone"),
            ("DELETED", "a"),
            ("ADDED", "a"),
            ("DELETED", "gone"),
        ]
        assert [c.rv for c in history] == list(range(1, 256))


async def test_snapshot_rebuilds_an_older_revision(store: Store) -> None:
    await store.commit([Put("things", obj("a"))])
    (b,) = await store.commit([Put("things", obj("b"))])
    at = store.rv
    await store.commit([Put("things", obj("a", labels={"v": "2"}), expect_rv=1)])
    await store.commit([Remove("things", "", "b", b.rv)])
    await store.commit([Put("things", obj("c"))])
    snap, rv = await store.snapshot("things", at)
    assert rv == at
    assert sorted(snap) == [("", "a"), ("", "b")]
    assert snap[("", "a")].labels == {} and snap[("", "a")].rv == 1


async def test_compacted_history_is_expired(tmp_path: Path) -> None:
    s = Store.open(tmp_path / "state.db", retention=0.0)
    await s.start()
    try:
        await s.commit([Put("things", obj("a"))])
        await s.commit([Put("things", obj("b"))])
        s.compacted = await asyncio.get_running_loop().run_in_executor(None, s._db.compact, 1e12)
        with pytest.raises(Expired):
            await s.history("things", 0, s.rv)
        assert await s.history("things", s.rv, s.rv) == []
    finally:
        await s.close()


async def test_subscribers_see_changes_in_order_and_overflow_is_cut_off(store: Store) -> None:
    sub = store.subscribe("things", limit=5)
    for i in range(3):
        await store.commit([Put("things", obj(f"x{i}"))])
    await store.commit([Put("others", obj("o"))])
    got = await sub.get(max_wait=1)
    assert [c.entry.name for c in got] == ["x0", "x1", "x2"]
    for i in range(6):
        await store.commit([Put("things", obj(f"y{i}"))])
    await sub.get(max_wait=1)
    assert sub.overflowed
    store.unsubscribe(sub)


async def test_owner_index_follows_writes(store: Store) -> None:
    (_owner,) = await store.commit([Put("things", obj("owner", uid="u-1"))])
    await store.commit([Put("things", obj("dep", ownerReferences=[{"uid": "u-1"}]))])
    assert [e.name for e in store.dependents("u-1")] == ["dep"]
    assert store.by_uid("u-1") is not None
    dep = store.get("things", "", "dep")
    assert dep is not None
    await store.commit([Remove("things", "", "dep", dep.rv)])
    assert store.dependents("u-1") == []


async def test_the_index_holds_each_object_in_about_its_own_size(store: Store) -> None:
    # A Server with its inventory is about 4 KB of JSON; 2,000 of them and their Secrets
    # and Events are what the API server holds at fleet size. orjson's output kept as it
    # comes held 24 KiB for each.
    inventory = {f"disk{i}": {"model": "x" * 40, "serial": f"S{i:030d}"} for i in range(40)}
    count = 200
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(count):
            await store.commit([Put("things", obj(f"s{i}", status={"inventory": inventory}))])
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    entry = store.get("things", "", "s0")
    assert entry is not None and len(entry.raw) > 3_500
    assert held / count < 2 * len(entry.raw), (held / count, len(entry.raw))


@pytest.mark.parametrize("count", [2, 150], ids=["one statement", "a transaction of several"])
def test_a_refused_write_leaves_nothing_behind(tmp_path: Path, count: int) -> None:
    # The log's triggers write the objects and the revision: a batch the log refuses (here
    # its last record repeats a revision) must leave neither.
    db = Database(tmp_path / "state.db")
    try:
        records = [
            LogRecord(i + 1, "things", "", f"t{i}", "ADDED", b'{"v":1}', None) for i in range(count)
        ]
        records[-1] = LogRecord(1, "things", "", "last", "ADDED", b'{"v":1}', None)
        with pytest.raises(StorageError):
            db.write(records, 0.0)
        assert list(db.load()) == [] and db.revision() == 0
        db.write(records[:-1], 0.0)
        assert len(list(db.load())) == count - 1 and db.revision() == count - 1
    finally:
        db.close()


async def test_a_slow_disk_moves_writes_off_the_event_loop(tmp_path: Path) -> None:
    # Writes run on the event loop while the disk keeps up; after one slower than SLOW_WRITE
    # they go to the writer thread, so the loop (reads, watches) is not held up by the disk.
    async with opened(tmp_path / "state.db") as s:
        real = s._db.write
        threads: list[threading.Thread] = []
        delay = [0.0]

        def write(records: list[LogRecord], now: float) -> None:
            threads.append(threading.current_thread())
            time.sleep(delay[0])
            real(records, now)

        s._db.write = write  # type: ignore[method-assign]
        await s.commit([Put("things", obj("fast"))])
        assert threads[-1] is threading.current_thread(), "a quick disk: written on the loop"

        async def ticks_during(name: str) -> int:
            count = 0
            commit = asyncio.ensure_future(s.commit([Put("things", obj(name))]))
            while not commit.done():
                await asyncio.sleep(0.005)
                count += 1
            await commit
            return count

        delay[0] = 5 * SLOW_WRITE
        assert await ticks_during("slow") <= 2, "the slow write held the loop, once"
        assert threads[-1] is threading.current_thread()
        assert await ticks_during("after") >= 5, "the next one left the loop free"
        assert threads[-1] is not threading.current_thread()
        assert [e.name for e in sort_entries(s.items("things"))] == ["after", "fast", "slow"]
