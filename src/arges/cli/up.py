"""``arges up``: run the management plane in the foreground until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import click

from arges.apiserver.storage import StorageError
from arges.plane import ManagementPlane, PlaneConfig


@click.command()
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".arges"),
    show_default=True,
    help="Where state, credentials and the kubeconfig are kept.",
)
@click.option(
    "--api-address",
    default="127.0.0.1",
    show_default=True,
    help="Address the Kubernetes API listens on.",
)
@click.option(
    "--api-port",
    type=click.IntRange(0, 65535),
    default=6443,
    show_default=True,
    help="Port the Kubernetes API listens on (0: any free port).",
)
def up(data_dir: Path, api_address: str, api_port: int) -> None:
    """Start Arges: the embedded Kubernetes API server and everything built on it.

    Runs in the foreground; Ctrl-C (SIGINT) or SIGTERM shuts it down cleanly.
    kubectl works at once with --kubeconfig DATA_DIR/kubeconfig.
    """
    plane = ManagementPlane(
        PlaneConfig(data_dir=data_dir, api_address=api_address, api_port=api_port)
    )
    try:
        asyncio.run(_run(plane))
    except StorageError as exc:
        raise click.ClickException(f"cannot open the state database: {exc}") from exc
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {api_address}:{api_port}: {exc}") from exc


async def _run(plane: ManagementPlane) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await plane.start()
    try:
        click.echo(f"Arges is up. API server: {plane.api.url}")
        click.echo(f"  export KUBECONFIG={plane.api.kubeconfig_path.resolve()}")
        click.echo("  kubectl get servers,serverclasses,environments")
        click.echo("Press Ctrl-C to stop.")
        await stop.wait()
    finally:
        await plane.stop()
