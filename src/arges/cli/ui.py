"""``arges ui``: the dashboard's credentials."""

from __future__ import annotations

from pathlib import Path

import click

from arges.cli import options
from arges.ui.auth import viewer_token


@click.group()
def ui() -> None:
    """The dashboard (https://API-ADDRESS:API-PORT/ui, served by `arges up`)."""


@ui.command()
@options.data_dir("The directory `arges up` keeps its state in.")
@click.option(
    "--read-only",
    is_flag=True,
    help="Print the read-only token (made on first use): it signs in to look, not to act.",
)
def token(data_dir: Path, read_only: bool) -> None:
    """Print a token to sign in to the dashboard with (the admin token unless --read-only)."""
    pki = data_dir / "pki"
    if read_only:
        click.echo(viewer_token(pki))
        return
    try:
        click.echo((pki / "admin.token").read_text().strip())
    except FileNotFoundError as exc:
        raise click.ClickException(
            f"{pki / 'admin.token'} does not exist: start Arges first (`arges up --data-dir "
            f"{data_dir}`)"
        ) from exc
