"""Options several ``arges`` commands share, so they read and default alike."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

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
