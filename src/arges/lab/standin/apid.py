"""The stand-in's Talos API: ``python3 -m arges.lab.standin.apid``, which the stand-in image's
``/init`` runs beside the agent (:mod:`arges.lab.standin.image`).

1. it waits until the agent in target mode has written the machine config to the first disk
   (the agent's on-disk form, :mod:`arges.agent.target`);
2. it reads what the config says about the node (:mod:`arges.lab.standin.node`); a control
   plane adds its VIPs to the interface that holds its address (``ip addr add``, then a
   gratuitous ARP); it gets its apid certificate, retrying while a worker's trustd is not
   up yet;
3. it serves Talos' API on TCP 50000 (a control plane also trustd on 50001), answered by the
   fake apid (:class:`arges.talos.fakeapi.FakeTalosNode`), until the machine goes down.

What the calls do to the machine: a config ApplyConfiguration keeps is written to the disk,
as Talos keeps it on STATE; a reboot for an upgrade or a config change is simulated in place
(apid stops answering for a few seconds and comes back with a new boot time and the staged
config or upgraded version; the machine itself does not reboot, since a lab server booting
from its disk finds no Talos there); a Reset wipes the config from the disk and really
reboots the machine (``reboot -f``), which network-boots into the agent to be wiped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
import sys
from pathlib import Path

from arges.agent import collect, target, wipe
from arges.lab.standin.node import Facts, admin_kubeconfig, facts, identity
from arges.talos.fakeapi import FakeTalosNode, Identity
from arges.talos.faketrustd import TRUSTD_PORT, FakeTrustd

log = logging.getLogger("arges.lab.standin.apid")

APID_PORT = 50000
POLL_SECONDS = 2.0
RETRY_SECONDS = 5.0
HEADER_BYTES = 1 << 20
"""How much of the disk's start holds the installed config (what a wipe of STATE zeroes)."""
REBOOT_SECONDS = 5.0
INSTALL_SECONDS = 5.0


def read_installed() -> tuple[Path, str] | None:
    """The first disk holding an installed machine config, and the config."""
    for disk in wipe.disks():
        try:
            with disk.path.open("rb") as device:
                head = device.read(HEADER_BYTES)
            return disk.path, target.decode(head).decode()
        except (OSError, ValueError, UnicodeDecodeError):
            continue
    return None


def addresses() -> dict[str, list[str]]:
    """This machine's IPv4 addresses (without prefix) per interface."""
    return {
        nic: [a.split("/")[0] for a in found if ":" not in a]
        for nic, found in collect.ip_addresses().items()
    }


def hold_vips(node: Facts, nics: dict[str, list[str]]) -> None:
    """Add the node's VIPs to the interface holding its first address, and announce them."""
    nic = next((n for n, found in nics.items() if list(node.addresses[:1]) == found[:1]), None)
    for vip in node.vips if nic else ():
        subprocess.run(["ip", "addr", "add", f"{vip}/32", "dev", str(nic)], check=False)
        subprocess.run(["arping", "-U", "-c", "1", "-I", str(nic), vip], check=False)
        log.info("holding the VIP %s on %s", vip, nic)


class StandIn:
    """The apid (and trustd) of one installed config on ``disk``."""

    def __init__(self, disk: Path, node: Facts, config: str, cert: Identity) -> None:
        self.disk = disk
        self.facts = node
        self.apid = FakeTalosNode(
            cert,
            address="0.0.0.0",
            port=APID_PORT,
            machine_type=node.machine_type,
            hostname=node.hostname,
            kubeconfig=admin_kubeconfig(node),
            talos_version=node.talos_version,
            config=config,
            on_reboot=self.reboot,
            persist=self.persist,
            reboot_seconds=REBOOT_SECONDS,
            install_seconds=INSTALL_SECONDS,
        )
        self.trustd = FakeTrustd(cert, node.os_ca, node.token) if node.control_plane else None

    def persist(self, config: str | None) -> None:
        """Keep ``config`` on the disk; None wipes it (Reset wipes STATE)."""
        if config is not None:
            target.install(self.disk, config.encode())
            return
        fd = os.open(self.disk, os.O_WRONLY)
        try:
            os.write(fd, bytes(HEADER_BYTES))
            os.fsync(fd)
        finally:
            os.close(fd)

    async def reboot(self, why: str) -> None:
        """A reset reboots the machine; any other reboot is simulated in place."""
        if why == "reset":
            log.info("reset: the config is wiped; rebooting into the network boot")
            os.sync()
            process = await asyncio.create_subprocess_exec("reboot", "-f")
            await process.wait()
            await asyncio.Event().wait()
        log.info("%s: rebooting (simulated: apid is down for %.0f s)", why, REBOOT_SECONDS)
        await self.apid.stop()
        await asyncio.sleep(REBOOT_SECONDS)
        await self.apid.start()
        log.info("back: Talos %s, boot time %d", self.apid.talos_version, self.apid.boot_time)

    async def serve(self) -> None:
        """Serve until the process ends."""
        await self.apid.start()
        if self.trustd is not None:
            await self.trustd.start()
        log.info(
            "serving Talos' API as %s %s (Talos %s) on :%d%s",
            self.facts.machine_type,
            self.facts.hostname,
            self.facts.talos_version,
            APID_PORT,
            f", trustd on :{TRUSTD_PORT}" if self.trustd else "",
        )
        await asyncio.Event().wait()


async def run() -> None:
    """Wait for the installed config, then serve (see the module docstring)."""
    found = read_installed()
    while found is None:
        await asyncio.sleep(POLL_SECONDS)
        found = read_installed()
    disk, config = found
    nics = addresses()
    mine = [a for found in nics.values() for a in found]
    node = facts(config, mine)
    log.info("machine config on %s: %s, addresses %s", disk, node.machine_type, ", ".join(mine))
    if node.vips:
        hold_vips(node, nics)
    while True:
        try:
            async with asyncio.timeout(30):
                cert = await identity(node, trustd_port=TRUSTD_PORT)
            break
        except Exception as exc:
            log.info(
                "no apid certificate yet (%s: %s); again in %.0f s",
                type(exc).__name__,
                exc,
                RETRY_SECONDS,
            )
            await asyncio.sleep(RETRY_SECONDS)
    await StandIn(disk, node, config, cert).serve()


def main() -> int:
    """Serve Talos' API on a machine booted into the stand-in (nothing on any other boot)."""
    logging.basicConfig(level=logging.INFO, format="arges-apid: %(message)s", stream=sys.stdout)
    with contextlib.suppress(OSError):
        if "talos.config=" not in Path("/proc/cmdline").read_text():
            log.info("not booted as a Talos target: nothing to serve")
            return 0
    asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
