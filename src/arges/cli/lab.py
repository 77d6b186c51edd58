"""``arges lab``: the virtual datacenter (QEMU servers with BMCs on a provisioning network)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import click

from arges.cli import options
from arges.cli.running import running_boot
from arges.lab import datacenter
from arges.lab.console import ConsoleError, attach
from arges.lab.datacenter import LabStatus
from arges.lab.fit import flags, misfits
from arges.lab.plan import LabSpec, PlanError, parse_disks
from arges.lab.records import LAB_LABEL

DATA_DIR = options.data_dir(
    "The data directory of the Arges the lab belongs to (its kubeconfig is there)."
)


@click.group()
def lab() -> None:
    """The lab: a virtual datacenter of QEMU servers with BMCs, on a provisioning network.

    One lab per machine, run as root. Arges runs beside it, on the lab's network:
    arges up --boot-address 10.88.0.1 --dhcp-interface arges0 (add --dhcp-mode full
    --dhcp-network 10.88.0.0/24 for a lab without site DHCP).
    """


def _disks(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, ...]:
    try:
        return parse_disks(value)
    except PlanError as exc:
        raise click.BadParameter(str(exc)) from exc


@lab.command()
@click.option(
    "--servers",
    type=click.IntRange(1, 32),
    default=3,
    show_default=True,
    help="How many servers.",
)
@click.option(
    "--firmware",
    type=click.Choice(["bios", "uefi", "mixed"]),
    default="mixed",
    show_default=True,
    help="bios: SeaBIOS and the iPXE NIC ROM; uefi: OVMF's own PXE; mixed: alternate, BIOS first.",
)
@click.option(
    "--disks",
    default="4G",
    show_default=True,
    callback=_disks,
    help="Disk sizes, one disk each (e.g. 4G,2G); raw sparse files.",
)
@click.option(
    "--memory",
    type=click.IntRange(128, 65536),
    default=1024,
    show_default=True,
    help="Memory per server, MiB.",
)
@click.option(
    "--nics", type=click.IntRange(1, 4), default=1, show_default=True, help="NICs per server."
)
@click.option(
    "--site-dhcp/--no-site-dhcp",
    default=True,
    show_default=True,
    help="Run the site's DHCP server (dnsmasq, addresses only; Arges answers as ProxyDHCP). "
    "Without it, Arges' --dhcp-mode full hands out the addresses.",
)
@click.option(
    "--bmc",
    type=click.Choice(["ipmi", "redfish", "mixed"]),
    default="ipmi",
    show_default=True,
    help="ipmi: IPMI over LAN (pyghmi); redfish: Redfish over HTTPS with session login "
    "(sushy-tools' emulator), virtual media included; mixed: alternate, IPMI first.",
)
@click.option(
    "--network-boot/--no-network-boot",
    default=True,
    show_default=True,
    help="Whether the servers' firmware can boot from the network (off: no PXE, no NIC "
    "ROM; such servers reach the agent through Redfish virtual media only).",
)
@click.option("--qemu", default="qemu-system-x86_64", hidden=True)
@DATA_DIR
def up(
    servers: int,
    firmware: str,
    disks: tuple[int, ...],
    memory: int,
    nics: int,
    site_dhcp: bool,
    bmc: str,
    network_boot: bool,
    qemu: str,
    data_dir: Path,
) -> None:
    """Build the lab and power its servers on; returns once everything runs.

    Each server's BMC is recorded in Arges ahead of discovery (a Secret with its
    credentials, and a Server named by its SMBIOS UUID with spec.bmc), so Arges needs to be
    running with this --data-dir. Refuses, naming the flags to restart it with, when that
    Arges' network boot settings would leave the servers booting for ever.
    """
    spec = LabSpec(
        servers=servers,
        firmware=firmware,  # type: ignore[arg-type]
        disks=disks,
        memory_mib=memory,
        nics=nics,
        site_dhcp=site_dhcp,
        qemu=qemu,
        bmc=bmc,  # type: ignore[arg-type]
        network_boot=network_boot,
    )
    _check_arges_boot(data_dir, spec)
    state = asyncio.run(
        datacenter.up(spec, data_dir, progress=lambda m: click.echo(f"  {m}", err=True))
    )
    net = state.network
    click.echo(
        f"The lab is up: {len(state.servers)} server(s) on {net.subnet} "
        f"(namespace {net.namespace}; Arges reaches it at {net.host_address} on {net.host_link})."
    )
    if state.site_dhcp:
        start, end = net.dhcp_range()
        click.echo(f"  site DHCP: dnsmasq at {net.bridge_address}, addresses {start}-{end}")
    else:
        click.echo(
            "  no site DHCP: Arges must hand out addresses "
            f"(arges up --dhcp-mode full --dhcp-network {net.subnet} ...)"
        )
    for server in state.servers:
        click.echo(
            f"  {server.name}  {server.firmware:<4}  {server.uuid}  {server.macs[0]}  "
            f"BMC {server.bmc_kind} {server.bmc_url}"
        )
    click.echo(
        f"BMC credentials: Secrets bmc-<uuid> in namespace default (label {LAB_LABEL}). "
        "The servers are powering on: arges lab status, kubectl get servers."
    )


@lab.command()
@DATA_DIR
def status(data_dir: Path) -> None:
    """The lab's servers: firmware, UUID, MAC, BMC kind and address, power, console log."""
    current = datacenter.status(data_dir)
    click.echo(_status_table(current))


def _check_arges_boot(data_dir: Path, spec: LabSpec) -> None:
    """Refuse, naming the ``arges up`` flags, when the Arges running with ``data_dir`` has
    network boot settings the lab's servers cannot boot with (:mod:`arges.lab.fit`)."""
    settings = running_boot(data_dir)
    if settings is None:
        return
    found = misfits(
        settings, spec.network, site_dhcp=spec.site_dhcp, network_boot=spec.network_boot
    )
    if found:
        raise click.ClickException(
            f"the Arges running with --data-dir {data_dir} cannot boot this lab's servers:\n"
            + "".join(f"  - {line}\n" for line in found)
            + f"restart it as: arges up --data-dir {data_dir} "
            + flags(spec.network, site_dhcp=spec.site_dhcp)
        )


def _status_table(current: LabStatus) -> str:
    state = current.state
    supervisor = (
        f"running (pid {state.supervisor_pid})" if current.supervisor_running else "NOT running"
    )
    lines = [
        f"network: {state.network.subnet} in namespace {state.network.namespace}, "
        f"site DHCP {'on' if state.site_dhcp else 'off'}; supervisor {supervisor}",
    ]
    rows = [("NAME", "FIRMWARE", "UUID", "MAC", "BMC", "POWER", "CONSOLE LOG")]
    for entry in current.servers:
        server = entry.server
        rows.append(
            (
                server.name,
                server.firmware,
                server.uuid,
                ",".join(server.macs),
                f"{server.bmc_kind} {server.bmc_url}",
                "on" if entry.qemu_pid else "off",
                str(server.console_log),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines += [
        "  ".join(cell.ljust(width) for cell, width in zip(r, widths, strict=False)) + "  " + r[-1]
        for r in rows
    ]
    return "\n".join(lines)


@lab.command()
@click.argument("name")
@DATA_DIR
def console(name: str, data_dir: Path) -> None:
    """Attach to server NAME's serial console (Ctrl-] detaches).

    When standard input is not a terminal, print the console log instead.
    """
    current = datacenter.status(data_dir)
    server = current.state.server(name)
    if server is None:
        names = ", ".join(s.name for s in current.state.servers)
        raise click.ClickException(f"no lab server {name!r} (the lab has {names})")
    if not sys.stdin.isatty():
        try:
            sys.stdout.buffer.write(server.console_log.read_bytes())
        except FileNotFoundError:
            click.echo(f"{name} has written nothing to its console yet", err=True)
        return
    click.echo(f"{name}: serial console; Ctrl-] detaches.", err=True)
    try:
        attach(server.console_socket, sys.stdin.fileno(), sys.stdout.fileno())
    except ConsoleError as exc:
        raise click.ClickException(f"{name}: {exc} (is it powered on?)") from exc
    click.echo("\r\ndetached.", err=True)


@lab.command()
@DATA_DIR
def down(data_dir: Path) -> None:
    """Remove the lab: servers, BMCs, site DHCP, network, and its files.

    Safe to run twice, or after a crash. The lab's BMC Secrets are deleted from Arges when
    it answers; its Server objects stay (the inventory record).
    """
    if os.geteuid() != 0:
        raise click.ClickException("the lab must be removed as root (network namespaces)")
    report = asyncio.run(datacenter.down(data_dir))
    for line in report:
        click.echo(f"  {line}")
    click.echo("The lab is down." if report else "There was no lab; nothing to remove.")
