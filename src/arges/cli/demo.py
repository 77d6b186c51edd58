"""``arges demo``: the main job on the lab, from an empty machine to a provisioned cluster."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import click

from arges.cli import options
from arges.lab import demo as steps
from arges.lab.plan import LabSpec


@click.command()
@options.data_dir("Arges' state, kubeconfig and logs (the lab's files go in DATA_DIR/lab).")
@click.option("--servers", type=click.IntRange(2, 8), default=3, show_default=True)
@click.option(
    "--firmware",
    type=click.Choice(["bios", "uefi", "mixed"]),
    default="mixed",
    show_default=True,
    help="mixed: BIOS and UEFI servers alternating, BIOS first.",
)
@click.option(
    "--dhcp-mode",
    type=click.Choice(["proxy", "full"]),
    default="proxy",
    show_default=True,
    help="proxy: Arges' ProxyDHCP beside the lab's site DHCP server (dnsmasq); full: Arges "
    "is the lab's only DHCP server.",
)
@click.option(
    "--keep/--no-keep",
    default=None,
    help="Keep everything running until Ctrl-C (default when run from a terminal), or tear "
    "down as soon as the cluster's configs are delivered.",
)
def demo(data_dir: Path, servers: int, firmware: str, dhcp_mode: str, keep: bool | None) -> None:
    """Run the main job on the lab: start Arges, bring up a lab of SERVERS QEMU servers,
    discover, accept and wipe them, create a Talos cluster of one control plane and one
    worker, and wait until both have their machine configs.

    Needs root (the lab makes a network namespace and taps). The lab cannot download Talos,
    so the agent image stands in for it (see the README).
    """
    if keep is None:
        keep = os.isatty(0)
    spec = LabSpec(servers=servers, firmware=firmware, site_dhcp=dhcp_mode == "proxy")  # type: ignore[arg-type]
    started = time.monotonic()

    def say(message: str) -> None:
        click.echo(f"[{time.monotonic() - started:6.1f}s] {message}")

    async def until_stopped() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        say("everything keeps running; press Ctrl-C to tear down")
        await stop.wait()

    try:
        asyncio.run(
            steps.run(
                data_dir.absolute(),
                spec,
                dhcp_mode=dhcp_mode,
                say=say,
                keep=until_stopped if keep else None,
            )
        )
    except steps.DemoFailed as exc:
        raise click.ClickException(f"the demo failed: {exc}") from exc
