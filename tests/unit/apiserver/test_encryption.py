"""Secrets at rest: sealed as kube-apiserver's aesgcm provider seals them, in the file and WAL."""

from __future__ import annotations

import base64
import sqlite3
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from arges.apiserver.encryption import (
    Encryption,
    EncryptionError,
    Key,
    ensure_config,
    new_key,
    read_config,
)
from arges.apiserver.entries import Put
from arges.apiserver.rotation import rotate_key
from arges.apiserver.storage import Database, LogRecord, StorageError
from arges.apiserver.store import Store

VALUE = "hunter2-correct-horse-battery-staple"


def secret(name: str, value: str = VALUE) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": "default"},
        "data": {"password": base64.b64encode(value.encode()).decode()},
        "stringData": {"plain": value},
    }


def on_disk(path: Path) -> bytes:
    """Everything SQLite has written for ``path``: the file, its WAL and shared memory."""
    out = b""
    for name in (path.name, f"{path.name}-wal", f"{path.name}-shm"):
        file = path.with_name(name)
        if file.exists():
            out += file.read_bytes()
    return out


def leaks(raw: bytes, value: str = VALUE) -> bool:
    return value.encode() in raw or base64.b64encode(value.encode()) in raw


async def test_secrets_are_sealed_in_the_file_and_wal_and_read_back(tmp_path: Path) -> None:
    encryption = ensure_config(tmp_path / "pki")
    path = tmp_path / "state.db"
    store = Store.open(path, encryption=encryption)
    await store.start()
    await store.commit([Put("secrets", secret("db"))])
    await store.commit([Put("configmaps", {**secret("cm", "public-value"), "kind": "ConfigMap"})])
    raw = on_disk(path)
    assert b"public-value" in raw, "other kinds are stored as they are"
    assert not leaks(raw) and b"k8s:enc:aesgcm:v1:key1:" in raw
    await store.close()
    reopened = Store.open(path, encryption=encryption)
    entry = reopened.get("secrets", "default", "db")
    assert entry is not None and entry.object()["stringData"]["plain"] == VALUE
    await reopened.start()
    history = await reopened.history("secrets", 0, reopened.rv)
    assert history[0].entry.object()["stringData"]["plain"] == VALUE
    await reopened.close()


def test_the_format_is_kube_apiservers() -> None:
    key = Key("key1", b"k" * 32)
    sealed = Encryption([key]).seal("secrets", "default", "db", b'{"a":1}')
    assert sealed.startswith(b"k8s:enc:aesgcm:v1:key1:")
    body = sealed[len(b"k8s:enc:aesgcm:v1:key1:") :]
    plain = AESGCM(key.secret).decrypt(body[:12], body[12:], b"/registry/secrets/default/db")
    assert plain == b'{"a":1}'


def test_a_value_moved_to_another_object_or_key_does_not_open() -> None:
    encryption = Encryption([Key("key1", b"k" * 32)])
    sealed = encryption.seal("secrets", "default", "db", b"{}")
    with pytest.raises(EncryptionError, match="does not authenticate"):
        encryption.open("secrets", "default", "other", sealed)
    with pytest.raises(EncryptionError, match="'key1' is not in the encryption configuration"):
        Encryption([Key("key2", b"x" * 32)]).open("secrets", "default", "db", sealed)
    assert encryption.open("secrets", "default", "db", b'{"plain":1}') == b'{"plain":1}'


async def test_a_plaintext_database_is_rewritten_without_leaving_copies(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    before = Store.open(path)
    await before.start()
    for i in range(20):
        await before.commit([Put("secrets", secret(f"s{i}"))])
    await before.close()
    assert leaks(on_disk(path))
    store = Store.open(path, encryption=ensure_config(tmp_path / "pki"))
    try:
        assert not leaks(on_disk(path)), "no plaintext in live rows, freed pages or the WAL"
        entry = store.get("secrets", "default", "s7")
        assert entry is not None and entry.object()["stringData"]["plain"] == VALUE
    finally:
        await store.close()


async def test_rotation_reencrypts_everything_and_drops_the_old_key(tmp_path: Path) -> None:
    pki, path = tmp_path / "pki", tmp_path / "state.db"
    store = Store.open(path, encryption=ensure_config(pki))
    await store.start()
    for i in range(5):
        await store.commit([Put("secrets", secret(f"s{i}", f"{VALUE}-{i}"))])
    with pytest.raises(StorageError, match="in use by another process"):
        rotate_key(tmp_path)
    await store.close()
    done = rotate_key(tmp_path)
    assert (done.key, done.objects, done.records) == ("key2", 5, 5)
    assert [k.name for k in read_config(pki / "encryption-config.yaml")] == ["key2"]
    raw = on_disk(path)
    assert b"aesgcm:v1:key2:" in raw and b"aesgcm:v1:key1:" not in raw
    store = Store.open(path, encryption=ensure_config(pki))
    try:
        for i in range(5):
            entry = store.get("secrets", "default", f"s{i}")
            assert entry is not None and entry.object()["stringData"]["plain"] == f"{VALUE}-{i}"
    finally:
        await store.close()


def test_a_rotation_interrupted_after_the_new_key_is_written_finishes_on_open(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.db"
    first = ensure_config(tmp_path / "pki")
    db = Database(path, encryption=first)
    db.write([LogRecord(1, "secrets", "default", "db", "ADDED", b'{"v":1}', None)], 0.0)
    db.close()
    # As step 1 of a rotation leaves it: the new key first, the old one still there to read.
    db = Database(path, encryption=Encryption([new_key(first.keys), *first.keys]))
    assert db.reencrypt() == (1, 1)
    assert [r.data for r in db.load()] == [b'{"v":1}']
    assert db.reencrypt() == (0, 0), "done once"
    db.close()
    assert b"aesgcm:v1:key2:" in on_disk(path) and b"aesgcm:v1:key1:" not in on_disk(path)


def test_store_files_are_private(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    path = data / "state.db"
    db = Database(path, encryption=ensure_config(data / "pki"))
    db.write([LogRecord(1, "secrets", "default", "db", "ADDED", b'{"v":1}', None)], 0.0)
    reader = sqlite3.connect(path)
    reader.execute("SELECT 1").fetchall()
    for name in ("state.db", "state.db-wal", "state.db-shm", "pki/encryption-config.yaml"):
        assert stat.S_IMODE((data / name).stat().st_mode) == 0o600, name
    assert stat.S_IMODE((data / "pki").stat().st_mode) == 0o700
    reader.close()
    db.close()
