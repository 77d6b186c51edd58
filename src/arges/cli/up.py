"""``arges up``: run the management plane in the foreground until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import click

from arges.apiserver.server import ApiServer, ApiServerConfig
from arges.apiserver.storage import StorageError


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
    server = ApiServer(ApiServerConfig(data_dir=data_dir, address=api_address, port=api_port))
    try:
        asyncio.run(_run(server))
    except StorageError as exc:
        raise click.ClickException(f"cannot open the state database: {exc}") from exc
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {api_address}:{api_port}: {exc}") from exc


async def _run(server: ApiServer) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    try:
        click.echo(f"Arges is up. API server: {server.url}")
        click.echo(f"  export KUBECONFIG={server.kubeconfig_path.resolve()}")
        click.echo("  kubectl get namespaces")
        click.echo("Press Ctrl-C to stop.")
        await stop.wait()
    finally:
        await server.stop()
