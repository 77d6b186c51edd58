"""SQLite persistence: current objects, the change log that watches replay, the revision counter.

One database file (``DIR/state.db``), WAL mode, ``synchronous=FULL``: a transaction is on disk
when :meth:`Database.write` returns, so nothing is acknowledged to a client before it is durable
(a kill -9 or a power cut after the reply loses nothing).

Tables:

``objects(resource, namespace, name, rv, data)``
    The current state, one row per object. ``resource`` is the qualified resource name
    (``servers.metal.arges.dev``; ``secrets`` for the core group), ``namespace`` is ``""`` for
    cluster-scoped objects, ``data`` the object's JSON with its ``metadata.resourceVersion``
    already set to ``rv``.
``events(rv, resource, namespace, name, type, data, prev, ts)``
    The change log, like etcd's history: every write appends ``ADDED``, ``MODIFIED`` or
    ``DELETED`` with the new object and the previous one (``prev``), and the wall time ``ts``
    (seconds since the epoch). It lets a watch resume at any retained revision, across restarts,
    and lets a paged or exact-revision list be served as of an older revision. A write is an
    append here: triggers on it keep ``objects`` and ``meta.rv`` in step, in the same
    transaction.
``meta(key, value)``
    ``rv``: the last revision handed out. ``compacted``: the newest revision no longer in
    ``events``; asking for history at or before it is answered with 410 Gone.

Values of the resources an :class:`~arges.apiserver.encryption.Encryption` covers (Secrets)
are sealed on their way into ``objects`` and ``events`` and opened on their way out, so
neither the database file nor its WAL ever holds their plaintext. Opening a writer rewrites
every such value not sealed with the current write key (plaintext from before encryption, or
an older key after a rotation) in one transaction with ``secure_delete`` on, then truncates
the WAL, so no earlier copy stays behind in freed pages; a crash half-way leaves the previous
state, and the next open does it again.

The database, its WAL and shared-memory files are mode 0600 (SQLite gives the latter two the
database's mode), its directory 0700. One writer per file: the writer holds an exclusive
``flock`` on ``state.db.lock`` until it closes, so a second ``arges up`` (or a key rotation
while Arges runs) is refused instead of interleaving with the first.

All methods are blocking, and a connection serves one caller at a time (the store writes on its
event loop or its writer thread, one write at a time, and reads on a reader thread).
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from arges.apiserver.encryption import Encryption, EncryptionError
from arges.errors import ArgesError

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS objects (
    resource TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    rv INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (resource, namespace, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
    rv INTEGER PRIMARY KEY,
    resource TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    type TEXT NOT NULL,
    data BLOB NOT NULL,
    prev BLOB,
    ts REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_resource ON events (resource, rv);
CREATE INDEX IF NOT EXISTS events_by_time ON events (ts);
CREATE TRIGGER IF NOT EXISTS events_store AFTER INSERT ON events WHEN NEW.type != 'DELETED'
BEGIN
    INSERT OR REPLACE INTO objects (resource, namespace, name, rv, data)
        VALUES (NEW.resource, NEW.namespace, NEW.name, NEW.rv, NEW.data);
    INSERT OR REPLACE INTO meta (key, value) VALUES ('rv', NEW.rv);
END;
CREATE TRIGGER IF NOT EXISTS events_delete AFTER INSERT ON events WHEN NEW.type = 'DELETED'
BEGIN
    DELETE FROM objects
        WHERE resource = NEW.resource AND namespace = NEW.namespace AND name = NEW.name;
    INSERT OR REPLACE INTO meta (key, value) VALUES ('rv', NEW.rv);
END;
"""


@dataclass(frozen=True, slots=True)
class Row:
    """One stored object as read back: where it lives, its revision and its JSON bytes."""

    resource: str
    namespace: str
    name: str
    rv: int
    data: bytes


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One change: ``type`` is ADDED, MODIFIED or DELETED; ``prev`` is None for ADDED."""

    rv: int
    resource: str
    namespace: str
    name: str
    type: str
    data: bytes
    prev: bytes | None


class StorageError(ArgesError):
    """The database could not be read or written (disk full, corrupt file, I/O error)."""


class Database:
    """A connection to the state database; see the module docstring for the layout.

    ``encryption``: how values of encrypted resources are sealed and opened (None: stored as
    they are).

    Raises:
        StorageError: from every method, wrapping :class:`sqlite3.Error` (and, for values
            that do not decrypt, :class:`~arges.apiserver.encryption.EncryptionError`).
    """

    def __init__(
        self, path: Path, *, readonly: bool = False, encryption: Encryption | None = None
    ) -> None:
        self.path = path
        self.encryption = encryption
        self._lock: int | None = None
        try:
            if readonly:
                uri = f"file:{path}?mode=ro"
                self._conn = sqlite3.connect(
                    uri, uri=True, isolation_level=None, check_same_thread=False
                )
            else:
                self._lock = _exclusive(path)
                _private(path)
                # A prepared statement per row count of the log's INSERTs (see _insert).
                self._conn = sqlite3.connect(
                    path,
                    isolation_level=None,
                    check_same_thread=False,
                    cached_statements=ROWS_PER_STATEMENT + 32,
                )
                self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.execute("PRAGMA synchronous=FULL")
                self._conn.executescript(SCHEMA)
            self._conn.execute("PRAGMA busy_timeout=10000")
        except sqlite3.Error as exc:
            self._unlock()
            raise StorageError(f"cannot open {path}: {exc}") from exc
        except OSError as exc:
            self._unlock()
            raise StorageError(f"cannot open {path}: {exc.strerror or exc}") from exc

    def _unlock(self) -> None:
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def _seal(self, resource: str, namespace: str, name: str, data: bytes) -> bytes:
        if self.encryption is None or not self.encryption.applies(resource):
            return data
        return self.encryption.seal(resource, namespace, name, data)

    def _open(self, resource: str, namespace: str, name: str, data: bytes) -> bytes:
        if self.encryption is None:
            return data
        try:
            return self.encryption.open(resource, namespace, name, data)
        except EncryptionError as exc:
            raise StorageError(str(exc)) from exc

    def close(self) -> None:
        """Close the connection and release the writer's lock on the file."""
        self._conn.close()
        self._unlock()

    def _meta_int(self, key: str) -> int:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else 0

    def revision(self) -> int:
        """The last revision handed out (0 for a new database)."""
        try:
            return self._meta_int("rv")
        except sqlite3.Error as exc:
            raise StorageError(f"cannot read the revision: {exc}") from exc

    def compacted(self) -> int:
        """The newest revision whose change record has been dropped from the log."""
        try:
            return self._meta_int("compacted")
        except sqlite3.Error as exc:
            raise StorageError(f"cannot read the compaction mark: {exc}") from exc

    def load(self) -> Iterator[Row]:
        """Every current object, in key order."""
        try:
            cur = self._conn.execute(
                "SELECT resource, namespace, name, rv, data FROM objects "
                "ORDER BY resource, namespace, name"
            )
            for resource, namespace, name, rv, data in cur:
                plain = self._open(resource, namespace, name, bytes(data))
                yield Row(resource, namespace, name, rv, plain)
        except sqlite3.Error as exc:
            raise StorageError(f"cannot load objects: {exc}") from exc

    def write(self, records: Sequence[LogRecord], now: float) -> None:
        """Append ``records`` (in revision order) to the log in one durable transaction; the
        log's triggers (``events_store``, ``events_delete``) apply each to ``objects`` and
        move the revision in ``meta``, in order (an object stored, deleted and made again in
        one batch is there).

        A batch of up to :data:`ROWS_PER_STATEMENT` records is one statement, its own
        transaction: the sqlite3 module lets go of the GIL for every statement it prepares
        and steps, and on the store's writer thread, beside a busy event loop, each taking
        back waits for a switch (batches of 8 records of 2.5 KB beside a thread holding the
        GIL: 78 us of the process' CPU per record as a transaction of five statements, 53 as
        one).
        """
        if not records:
            return
        conn = self._conn
        log = [
            (
                r.rv,
                r.resource,
                r.namespace,
                r.name,
                r.type,
                self._seal(r.resource, r.namespace, r.name, r.data),
                r.prev and self._seal(r.resource, r.namespace, r.name, r.prev),
                now,
            )
            for r in records
        ]
        try:
            if len(log) <= ROWS_PER_STATEMENT:
                _insert(conn, _LOG, log)
                return
            conn.execute("BEGIN IMMEDIATE")
            _insert(conn, _LOG, log)
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise StorageError(f"cannot write {len(records)} change(s): {exc}") from exc

    def history(self, resource: str | None, after: int, upto: int) -> list[LogRecord]:
        """Change records with ``after < rv <= upto``, oldest first, for one resource or all."""
        try:
            if resource is None:
                cur = self._conn.execute(
                    "SELECT rv, resource, namespace, name, type, data, prev FROM events "
                    "WHERE rv > ? AND rv <= ? ORDER BY rv",
                    (after, upto),
                )
            else:
                cur = self._conn.execute(
                    "SELECT rv, resource, namespace, name, type, data, prev FROM events "
                    "WHERE resource = ? AND rv > ? AND rv <= ? ORDER BY rv",
                    (resource, after, upto),
                )
            return [
                LogRecord(
                    rv,
                    res,
                    ns,
                    name,
                    typ,
                    self._open(res, ns, name, bytes(data)),
                    self._open(res, ns, name, bytes(prev)) if prev else None,
                )
                for rv, res, ns, name, typ, data, prev in cur
            ]
        except sqlite3.Error as exc:
            raise StorageError(f"cannot read the change log: {exc}") from exc

    def compact(self, older_than: float) -> int:
        """Drop change records written before ``older_than`` (epoch seconds).

        Returns the new compaction mark (the newest dropped revision, or the previous mark).
        """
        conn = self._conn
        try:
            row = conn.execute("SELECT MAX(rv) FROM events WHERE ts < ?", (older_than,)).fetchone()
            newest = row[0] if row and row[0] is not None else None
            if newest is None:
                return self._meta_int("compacted")
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("DELETE FROM events WHERE rv <= ?", (newest,))
            conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('compacted', ?)", (str(newest),)
            )
            conn.execute("COMMIT")
            return int(newest)
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise StorageError(f"cannot compact the change log: {exc}") from exc

    def reencrypt(self) -> tuple[int, int]:
        """Rewrite every value of an encrypted resource not sealed with the write key (see
        the module docstring); returns how many objects and change records were rewritten.
        """
        if self.encryption is None:
            return 0, 0
        conn = self._conn
        resources = sorted(self.encryption.resources)
        marks = ", ".join("?" for _ in resources)
        try:
            objects = [
                row
                for row in conn.execute(
                    "SELECT resource, namespace, name, data FROM objects "
                    f"WHERE resource IN ({marks})",
                    resources,
                )
                if not self.encryption.current(row[3])
            ]
            events = [
                row
                for row in conn.execute(
                    "SELECT rv, resource, namespace, name, data, prev FROM events "
                    f"WHERE resource IN ({marks})",
                    resources,
                )
                if not self.encryption.current(row[4])
                or (row[5] is not None and not self.encryption.current(row[5]))
            ]
            if not objects and not events:
                return 0, 0
            conn.execute("PRAGMA secure_delete=ON")
            conn.execute("BEGIN IMMEDIATE")
            for resource, namespace, name, data in objects:
                plain = self._open(resource, namespace, name, bytes(data))
                conn.execute(
                    "UPDATE objects SET data = ? WHERE resource = ? AND namespace = ? AND name = ?",
                    (self._seal(resource, namespace, name, plain), resource, namespace, name),
                )
            for rv, resource, namespace, name, data, prev in events:
                sealed = self._seal(
                    resource, namespace, name, self._open(resource, namespace, name, data)
                )
                sealed_prev = (
                    None
                    if prev is None
                    else self._seal(
                        resource, namespace, name, self._open(resource, namespace, name, prev)
                    )
                )
                conn.execute(
                    "UPDATE events SET data = ?, prev = ? WHERE rv = ?", (sealed, sealed_prev, rv)
                )
            conn.execute("COMMIT")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.execute("PRAGMA secure_delete=OFF")
            return len(objects), len(events)
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise StorageError(f"cannot re-encrypt stored values: {exc}") from exc


_LOG = "INSERT INTO events (rv, resource, namespace, name, type, data, prev, ts) VALUES "
ROWS_PER_STATEMENT = 100
"""Rows one INSERT carries at most: 800 values for the log's eight columns, within the 999 a
statement may bind in every SQLite version."""


def _insert(conn: sqlite3.Connection, head: str, rows: Sequence[tuple[object, ...]]) -> None:
    """``head`` (``INSERT ... VALUES``) with ``rows`` in order, a statement per
    :data:`ROWS_PER_STATEMENT`."""
    for start in range(0, len(rows), ROWS_PER_STATEMENT):
        chunk = rows[start : start + ROWS_PER_STATEMENT]
        marks = "(" + ",".join("?" * len(chunk[0])) + ")"
        conn.execute(head + ",".join([marks] * len(chunk)), [v for row in chunk for v in row])


def _exclusive(path: Path) -> int:
    """An exclusive lock on ``path.lock`` (see the module docstring); its file descriptor.

    Raises:
        StorageError: another process holds it.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        os.close(fd)
        raise StorageError(
            f"{path} is in use by another process (is `arges up` running with this data directory?)"
        ) from exc
    return fd


def _private(path: Path) -> None:
    """Make the database, its WAL and shared-memory files mode 0600 (created so if new)."""
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    for name in (path.name, f"{path.name}-wal", f"{path.name}-shm", f"{path.name}-journal"):
        try:
            path.with_name(name).chmod(0o600)
        except FileNotFoundError:
            continue
