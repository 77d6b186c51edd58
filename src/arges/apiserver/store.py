"""The object store: current state in memory, every write durable in SQLite before it is seen.

This is the API server's equivalent of etcd plus the watch cache. All writes go through one
writer task that groups whatever transactions are waiting into a single SQLite transaction
(group commit), so throughput does not pay one fsync per object, yet no transaction is
acknowledged, installed in memory or broadcast to watchers before its batch is on disk.

A batch gathers for :data:`GATHER_ROUNDS` turns of the event loop after its first commit
arrives: a write request reaches the store a few steps after it is read (its task, its
checks), and each batch costs an fsync that the loop waits for. At idle the turns take
microseconds; in ``benchmarks/fleet.py`` (500 servers) they made 1,000 batches of 13 changes
out of 2,100 of 6, and the controllers' median latency from a write to their decision fell
(the servers controller's from 4 ms to 1.3).

The batch is written on the event loop itself while the disk keeps up: handing it to a thread
and back costs two thread wake-ups, more than the write (a lone commit: 250 us of CPU through
the writer thread, 133 on the loop; in ``benchmarks/fleet.py``, 500 servers, six runs each
way, alternated: the CPU per server without the secrets bundles 27.5-31.4 ms against
29.4-32.4, 1.9 ms less in the mean of the pairs). A write that takes longer than
:data:`SLOW_WRITE` (a slow disk's fsync, a checkpoint) sends the writes of the next
:data:`SLOW_BACKOFF` seconds to the writer thread, so reads and watches are not held up
behind the disk.

Revisions are one global counter, as in etcd: every change (create, update, delete) gets the
next integer, which becomes the object's ``metadata.resourceVersion``.

Memory holds, per object, its JSON bytes and the few metadata fields that selectors, the
garbage collector and the owner index need (an :class:`~arges.apiserver.entries.Entry`);
never a parsed object, so ten thousand 2 KiB objects stay around 30 MiB.

Errors of this layer (:class:`StoreError` and subclasses) name which precondition failed; the
REST layer translates them into Kubernetes ``Status`` errors with the resource's names.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from arges.apiserver import codec
from arges.apiserver.encryption import Encryption
from arges.apiserver.entries import (
    Change,
    Entry,
    ObjKey,
    Op,
    Put,
    entry_from_raw,
    make_entry,
)
from arges.apiserver.storage import Database, LogRecord, StorageError
from arges.errors import ArgesError
from arges.tasks import cancel_and_wait

log = logging.getLogger(__name__)

SLOW_WRITE = 0.02
"""Seconds of wall time past which a write on the event loop is slow (see the module
docstring); in ``benchmarks/fleet.py`` (500 servers, 1,040 batches of 12.5 changes on average)
a batch took 0.9 ms at the median, 8 to 9 at the 99th percentile, 12.6 at most."""
SLOW_BACKOFF = 10.0
"""Seconds the writes after a slow one run on the writer thread."""
GATHER_ROUNDS = 4
"""Times the event loop goes round between a commit's arrival and its batch's write, so
that the writes of requests already under way join the batch (see the module docstring)."""


class StoreError(ArgesError):
    """A transaction's precondition failed; nothing of it was written."""

    def __init__(self, resource: str, namespace: str, name: str) -> None:
        super().__init__(f"{resource} {namespace}/{name}")
        self.resource = resource
        self.namespace = namespace
        self.name = name


class AlreadyStored(StoreError):
    """A create found the key taken."""


class NotStored(StoreError):
    """An update or delete found no object."""


class Stale(StoreError):
    """An update or delete expected another revision than the one stored."""


class Expired(ArgesError):
    """History at or before the compaction mark was asked for (the client must relist)."""

    def __init__(self, requested: int, oldest: int) -> None:
        super().__init__(f"too old resource version: {requested} ({oldest})")
        self.requested = requested
        self.oldest = oldest


class Subscription:
    """A bounded queue of changes for one watcher; overflows end the watch instead of growing.

    A watcher that falls ``limit`` changes behind is cut off (``overflowed``), as kube-apiserver
    cuts off unresponsive watchers; its client resumes from its last revision.

    Waking a watcher is one future per wait and its deadline one timer kept across waits: this
    runs once per watcher for every change, so it avoids ``asyncio.wait_for`` (a task and a
    timer per wait).
    """

    def __init__(self, resource: str | None, limit: int) -> None:
        self.resource = resource
        self.limit = limit
        self.overflowed = False
        self.closed = False
        self._buf: deque[Change] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None

    def push(self, change: Change) -> None:
        """Queue ``change`` and wake the watcher; past ``limit`` queued, mark it ``overflowed``
        instead (its watch ends) and drop what it held."""
        if self.overflowed or self.closed:
            return
        if len(self._buf) >= self.limit:
            self.overflowed = True
            self._buf.clear()
        else:
            self._buf.append(change)
        self._wake()

    def close(self) -> None:
        """End the subscription: a waiting :meth:`get` returns, its timer is dropped."""
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _expire(self) -> None:
        self._timer = None
        self._wake()

    async def get(self, max_wait: float | None = None) -> list[Change]:
        """Wait for changes (up to ``max_wait`` seconds) and return all that are queued.

        May return nothing before ``max_wait`` has passed (when a previous, earlier deadline
        comes first); callers check their own clock and wait again.
        """
        if not self._buf and not self.overflowed and not self.closed:
            loop = asyncio.get_running_loop()
            if max_wait is not None:
                due = loop.time() + max_wait
                # A timer due no later than this one serves; one due later must be moved.
                if self._timer is None or self._timer.when() > due + _TIMER_SLACK:
                    if self._timer is not None:
                        self._timer.cancel()
                    self._timer = loop.call_at(due, self._expire)
            self._waiter = loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        out = list(self._buf)
        self._buf.clear()
        return out


_TIMER_SLACK = 0.01
"""Seconds a watch's timer may fire after the deadline asked for, so that a deadline computed
again from the clock (a hair later each time) does not move the timer on every wait."""


@dataclass
class _Pending:
    ops: Sequence[Op]
    future: asyncio.Future[list[Change]]


@dataclass
class _State:
    objects: dict[str, dict[ObjKey, Entry]] = field(default_factory=dict)
    by_uid: dict[str, tuple[str, ObjKey]] = field(default_factory=dict)
    dependents: dict[str, set[tuple[str, ObjKey]]] = field(default_factory=dict)


class Store:
    """Durable, watchable object storage (see the module docstring).

    Create with :meth:`open`, then :meth:`start` inside the event loop; :meth:`close` drains.
    """

    def __init__(self, db: Database, reader: Database, *, retention: float) -> None:
        self._db = db
        self._reader = reader
        self.retention = retention
        self._state = _State()
        self.rv = db.revision()
        self.compacted = db.compacted()
        self._writer_pool = ThreadPoolExecutor(1, thread_name_prefix="arges-store-writer")
        self._reader_pool = ThreadPoolExecutor(1, thread_name_prefix="arges-store-reader")
        self._queue: list[_Pending] = []
        self._wake: asyncio.Event | None = None
        self._writer: asyncio.Task[None] | None = None
        self._compactor: asyncio.Task[None] | None = None
        self._subs: set[Subscription] = set()
        self._observers: list[Callable[[Change], None]] = []
        self._closing = False
        self._threaded_until = 0.0
        self._compact_due = False
        for row in db.load():
            self._install(entry_from_raw(row.resource, row.rv, row.data))

    @classmethod
    def open(
        cls, path: Path, *, retention: float = 300.0, encryption: Encryption | None = None
    ) -> Store:
        """Open (or create) the database at ``path``; ``retention`` is seconds of history;
        ``encryption`` seals Secrets at rest (values not sealed with its write key are
        rewritten first, see :mod:`arges.apiserver.storage`).

        Raises:
            StorageError: when the file cannot be opened, read or re-encrypted.
        """
        db = Database(path, encryption=encryption)
        try:
            objects, records = db.reencrypt()
            if objects or records:
                log.info(
                    "re-encrypted %d stored object(s) and %d change record(s) with key %s",
                    objects,
                    records,
                    encryption.write_key if encryption else "-",
                )
            reader = Database(path, readonly=True, encryption=encryption)
            return cls(db, reader, retention=retention)
        except BaseException:
            db.close()
            raise

    async def start(self) -> None:
        """Start the writer and the compactor tasks on the running event loop."""
        self._wake = asyncio.Event()
        self._writer = asyncio.create_task(self._write_loop(), name="arges-store-writer")
        self._compactor = asyncio.create_task(self._compact_loop(), name="arges-store-compactor")

    async def close(self) -> None:
        """Finish queued writes, end every watch, and close the database."""
        if self._compactor:
            await cancel_and_wait(self._compactor)
        self._closing = True
        if self._writer and self._wake:
            self._wake.set()
            await self._writer
        for sub in list(self._subs):
            sub.close()
        self._writer_pool.shutdown(wait=True)
        self._reader_pool.shutdown(wait=True)
        self._db.close()
        self._reader.close()

    # Reads: served from memory, always as of the last durable revision.

    def get(self, resource: str, namespace: str, name: str) -> Entry | None:
        """The current entry of an object (``namespace`` "" when cluster-scoped), or None."""
        return self._state.objects.get(resource, {}).get((namespace, name))

    def items(self, resource: str, namespace: str | None = None) -> list[Entry]:
        """Entries of ``resource`` (in one namespace, or all), unsorted."""
        objs = self._state.objects.get(resource, {})
        if namespace is None:
            return list(objs.values())
        return [e for e in objs.values() if e.namespace == namespace]

    def resources(self) -> list[str]:
        """The qualified names of the resources that hold at least one object."""
        return [r for r, objs in self._state.objects.items() if objs]

    def by_uid(self, uid: str) -> Entry | None:
        """The current entry of the object whose ``metadata.uid`` is ``uid``, or None."""
        where = self._state.by_uid.get(uid)
        if where is None:
            return None
        return self._state.objects.get(where[0], {}).get(where[1])

    def dependents(self, owner_uid: str) -> list[Entry]:
        """Objects whose ownerReferences name ``owner_uid``."""
        out = []
        for resource, key in self._state.dependents.get(owner_uid, ()):
            entry = self._state.objects.get(resource, {}).get(key)
            if entry is not None:
                out.append(entry)
        return out

    # Writes.

    async def commit(self, ops: Sequence[Op]) -> list[Change]:
        """Apply ``ops`` atomically and durably; returns one :class:`Change` per op.

        ``Put.obj`` gets ``metadata.resourceVersion`` set to its new revision.

        Raises:
            AlreadyStored, NotStored, Stale: a precondition failed (nothing was written).
            StorageError: the database refused the write (nothing was written).
        """
        assert self._wake is not None, "Store.start() was not awaited"
        future: asyncio.Future[list[Change]] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(ops, future))
        self._wake.set()
        return await future

    async def _write_loop(self) -> None:
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        while not (self._closing and not self._queue):
            await self._wake.wait()
            for _ in range(GATHER_ROUNDS):
                await asyncio.sleep(0)
            self._wake.clear()
            batch, self._queue = self._queue, []
            if self._compact_due:
                # Here, between batches: the connection is the write loop's alone.
                self._compact_due = False
                await self._compact(loop)
            if not batch:
                continue
            overlay: dict[tuple[str, ObjKey], Entry | None] = {}
            records: list[LogRecord] = []
            planned: list[tuple[_Pending, list[Change] | Exception]] = []
            rv = self.rv
            for pending in batch:
                try:
                    changes, rv = self._plan(pending.ops, overlay, rv)
                except StoreError as exc:
                    planned.append((pending, exc))
                    continue
                planned.append((pending, changes))
                records += [_record(c) for c in changes]
            if records:
                try:
                    await self._write(loop, records)
                except StorageError as exc:
                    log.error("write failed, %d transaction(s) refused: %s", len(batch), exc)
                    for pending in batch:
                        if not pending.future.done():
                            pending.future.set_exception(exc)
                    continue
            self.rv = rv
            for _, result in planned:
                if isinstance(result, Exception):
                    continue
                for change in result:
                    self._apply(change)
            for pending, result in planned:
                if pending.future.done():
                    continue
                if isinstance(result, Exception):
                    pending.future.set_exception(result)
                else:
                    pending.future.set_result(result)

    async def _write(self, loop: asyncio.AbstractEventLoop, records: list[LogRecord]) -> None:
        """Write ``records`` durably: on the loop while the disk keeps up, on the writer
        thread for :data:`SLOW_BACKOFF` seconds after a write slower than :data:`SLOW_WRITE`.

        Raises:
            StorageError: the database refused the write.
        """
        if loop.time() < self._threaded_until:
            await loop.run_in_executor(self._writer_pool, self._db.write, records, time.time())
            return
        started = time.perf_counter()
        self._db.write(records, time.time())
        took = time.perf_counter() - started
        if took > SLOW_WRITE:
            log.info(
                "a write of %d change(s) took %.0f ms: writing on a thread for %.0f s",
                len(records),
                took * 1000,
                SLOW_BACKOFF,
            )
            self._threaded_until = loop.time() + SLOW_BACKOFF

    def _plan(
        self,
        ops: Sequence[Op],
        overlay: dict[tuple[str, ObjKey], Entry | None],
        rv: int,
    ) -> tuple[list[Change], int]:
        local: dict[tuple[str, ObjKey], Entry | None] = {}
        changes: list[Change] = []

        def current(resource: str, key: ObjKey) -> Entry | None:
            where = (resource, key)
            if where in local:
                return local[where]
            if where in overlay:
                return overlay[where]
            return self.get(resource, *key)

        for op in ops:
            if isinstance(op, Put):
                meta = op.obj["metadata"]
                key = (meta.get("namespace") or "", meta["name"])
                existing = current(op.resource, key)
                if op.expect_rv is None and existing is not None:
                    raise AlreadyStored(op.resource, *key)
                if op.expect_rv is not None:
                    if existing is None:
                        raise NotStored(op.resource, *key)
                    if existing.rv != op.expect_rv:
                        raise Stale(op.resource, *key)
                rv += 1
                meta["resourceVersion"] = str(rv)
                entry = make_entry(op.resource, rv, codec.trim(codec.dumps(op.obj)), op.obj)
                changes.append(Change("ADDED" if existing is None else "MODIFIED", entry, existing))
                local[(op.resource, key)] = entry
            else:
                key = (op.namespace, op.name)
                existing = current(op.resource, key)
                if existing is None:
                    raise NotStored(op.resource, *key)
                if existing.rv != op.expect_rv:
                    raise Stale(op.resource, *key)
                rv += 1
                final = op.obj if op.obj is not None else existing.object()
                final["metadata"]["resourceVersion"] = str(rv)
                entry = make_entry(op.resource, rv, codec.trim(codec.dumps(final)), final)
                changes.append(Change("DELETED", entry, existing))
                local[(op.resource, key)] = None
        overlay.update(local)
        return changes, rv

    def _apply(self, change: Change) -> None:
        if change.prev is not None:
            self._uninstall(change.prev)
        if change.type != "DELETED":
            self._install(change.entry)
        for observe in self._observers:
            try:
                observe(change)
            except Exception:
                log.exception("observer failed on %s %s", change.type, change.entry.resource)
        for sub in list(self._subs):
            if sub.resource is None or sub.resource == change.entry.resource:
                sub.push(change)

    def _install(self, entry: Entry) -> None:
        state = self._state
        state.objects.setdefault(entry.resource, {})[entry.key] = entry
        where = (entry.resource, entry.key)
        if entry.uid:
            state.by_uid[entry.uid] = where
        for owner in entry.owners:
            state.dependents.setdefault(owner, set()).add(where)

    def _uninstall(self, entry: Entry) -> None:
        state = self._state
        state.objects.get(entry.resource, {}).pop(entry.key, None)
        where = (entry.resource, entry.key)
        if entry.uid and state.by_uid.get(entry.uid) == where:
            del state.by_uid[entry.uid]
        for owner in entry.owners:
            deps = state.dependents.get(owner)
            if deps is not None:
                deps.discard(where)
                if not deps:
                    del state.dependents[owner]

    # Watching and history.

    def observe(self, callback: Callable[[Change], None]) -> None:
        """Call ``callback`` synchronously for every change, as it is installed.

        Observers run before the writing request is answered, so what they derive (the
        served resource types of CRDs) is in place when the client sees its write succeed.
        They must be quick and must not write.
        """
        self._observers.append(callback)

    def subscribe(self, resource: str | None, *, limit: int = 20000) -> Subscription:
        """Receive every change committed from now on (to ``resource``, or to all if None)."""
        sub = Subscription(resource, limit)
        self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Stop delivering changes to ``sub`` and close it (a waiting ``get`` returns)."""
        self._subs.discard(sub)
        sub.close()

    async def history(self, resource: str | None, after: int, upto: int) -> list[Change]:
        """Changes with ``after < rv <= upto``, oldest first.

        Raises:
            Expired: when ``after`` is older than the retained history.
            StorageError: when the log cannot be read.
        """
        if after < self.compacted:
            raise Expired(after, self.compacted + 1)
        if after >= upto:
            return []
        records = await asyncio.get_running_loop().run_in_executor(
            self._reader_pool, _read_changes, self._reader, resource, after, upto
        )
        if after < self.compacted:
            raise Expired(after, self.compacted + 1)
        return records

    async def snapshot(self, resource: str, at: int) -> tuple[dict[ObjKey, Entry], int]:
        """The objects of ``resource`` as they were at revision ``at`` (<= the current one).

        Rebuilt from the current state by undoing later changes, which is how a paged list
        keeps serving the revision its first page saw. Returns the entries and ``at``.

        Raises:
            Expired: when the changes since ``at`` are no longer retained.
        """
        current = dict(self._state.objects.get(resource, {}))
        now = self.rv
        for change in reversed(await self.history(resource, at, now)):
            if change.type == "ADDED":
                current.pop(change.entry.key, None)
            elif change.prev is not None:
                current[change.entry.key] = change.prev
        return current, at

    async def _compact_loop(self) -> None:
        assert self._wake is not None
        while True:
            await asyncio.sleep(min(60.0, max(1.0, self.retention / 5)))
            self._compact_due = True
            self._wake.set()

    async def _compact(self, loop: asyncio.AbstractEventLoop) -> None:
        """Drop the change records older than the retention (on the writer thread: a
        large delete)."""
        try:
            self.compacted = await loop.run_in_executor(
                self._writer_pool, self._db.compact, time.time() - self.retention
            )
        except StorageError as exc:
            log.error("compaction failed: %s", exc)


def _record(change: Change) -> LogRecord:
    e = change.entry
    return LogRecord(
        rv=e.rv,
        resource=e.resource,
        namespace=e.namespace,
        name=e.name,
        type=change.type,
        data=e.raw,
        prev=change.prev.raw if change.prev is not None else None,
    )


def _read_changes(db: Database, resource: str | None, after: int, upto: int) -> list[Change]:
    out = []
    for rec in db.history(resource, after, upto):
        entry = entry_from_raw(rec.resource, rec.rv, rec.data)
        prev = None
        if rec.prev is not None:
            prev_obj = codec.loads(rec.prev)
            prev_rv = int((prev_obj.get("metadata") or {}).get("resourceVersion") or 0)
            prev = make_entry(rec.resource, prev_rv, rec.prev, prev_obj)
        out.append(Change(rec.type, entry, prev))
    return out
