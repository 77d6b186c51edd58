"""``arges secrets ...``: Secrets at rest in the embedded API server's store."""

from __future__ import annotations

from pathlib import Path

import click

from arges.apiserver.encryption import EncryptionError
from arges.apiserver.rotation import rotate_key
from arges.apiserver.storage import StorageError
from arges.cli import options


@click.group()
def secrets() -> None:
    """Secrets at rest (AES-GCM, as kube-apiserver's aesgcm provider stores them)."""


@secrets.command("rotate-key")
@options.data_dir("The data directory of the Arges whose key is rotated.")
def rotate(data_dir: Path) -> None:
    """Make a new encryption key and re-encrypt every Secret with it; the old key is then
    dropped. Run it while Arges is stopped (it refuses otherwise)."""
    try:
        done = rotate_key(data_dir)
    except (StorageError, EncryptionError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(
        f"new key {done.key}: re-encrypted {done.objects} Secret(s) and {done.records} change "
        f"record(s) in {data_dir / 'state.db'}"
    )
