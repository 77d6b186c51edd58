"""Options several ``arges`` commands share, so they read and default alike."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from arges.kube.client import KubeClient
from arges.kube.connection import ConfigError, from_kubeconfig

DEFAULT_DATA_DIR = Path(".arges")


def data_dir(help: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--data-dir DIR`` (default ``./.arges``, the directory ``arges up`` keeps its state in),
    described for the command by ``help``."""
    return click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=DEFAULT_DATA_DIR,
        show_default=True,
        help=help,
    )


def connect(path: Path, context: str | None, what: str, component: str) -> KubeClient:
    """A client of the API in kubeconfig ``path`` (its ``context``), for ``component``.

    Raises:
        click.ClickException: the kubeconfig cannot be used (``what`` names it).
    """
    try:
        return KubeClient(from_kubeconfig(path, context), component=component)
    except ConfigError as exc:
        raise click.ClickException(f"{what}: {exc}") from exc
