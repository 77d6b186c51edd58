"""``arges secrets rotate-key``: a new key for Secrets at rest, every Secret re-encrypted.

Offline, as kube-apiserver's rotation needs restarts too: the database's writer lock (see
:mod:`arges.apiserver.storage`) refuses it while ``arges up`` runs on the data directory.
The steps are ordered so that a crash anywhere leaves every Secret readable and a rerun (or
the next ``arges up``, which rewrites values not sealed with the write key) finishes it:

1. the configuration gets the new key first, the old keys after it (they still read);
2. every Secret and every change record of one is rewritten with the new key, in one
   transaction, freed pages zeroed and the WAL truncated;
3. the configuration keeps only the new key.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from arges.apiserver.encryption import CONFIG_FILE, Encryption, new_key, read_config, write_config
from arges.apiserver.storage import Database, StorageError

STATE_FILE = "state.db"


@dataclass(frozen=True)
class Rotation:
    """What a rotation did: the new key's name, the objects and change records rewritten."""

    key: str
    objects: int
    records: int


def rotate_key(data_dir: Path) -> Rotation:
    """Rotate the key of ``data_dir`` (see the module docstring).

    Raises:
        StorageError: there is no database, Arges is running on it, or it cannot be written.
        EncryptionError: the existing configuration cannot be read.
    """
    state = data_dir / STATE_FILE
    if not state.exists():
        raise StorageError(f"there is no state database at {state}")
    config = data_dir / "pki" / CONFIG_FILE
    old = read_config(config) if config.exists() else []
    key = new_key(old)
    db = Database(state, encryption=Encryption(old or [key]))
    try:
        write_config(config, [key, *old])
        db.encryption = Encryption([key, *old])
        objects, records = db.reencrypt()
        write_config(config, [key])
    finally:
        db.close()
    return Rotation(key.name, objects, records)
