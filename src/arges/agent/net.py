"""Bringing up the network: the NIC the machine booted from, with busybox ``udhcpc``.

With ``arges.mac=`` the agent configures that NIC only (a multi-NIC machine may have other
networks on its other ports, the reason Sidero v0.6 stopped using ``ip=dhcp``); without it,
or when no NIC has that MAC, every NIC that reports a link. ``udhcpc`` runs the image's
``/usr/share/udhcpc/default.script`` (address, routes, DNS, MTU, host name) and stays in
the background to renew the lease.
"""

from __future__ import annotations

import logging
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("arges.agent")

UDHCPC_SCRIPT = "/usr/share/udhcpc/default.script"
LINK_WAIT = 10.0


@dataclass(frozen=True)
class Nic:
    """A physical NIC: kernel name and MAC (lowercase, colon-separated)."""

    name: str
    mac: str


def nics(root: Path = Path("/")) -> list[Nic]:
    """The NICs under ``root/sys/class/net`` that have a device behind them and a MAC."""
    found = []
    sys_net = root / "sys/class/net"
    for entry in sorted(sys_net.iterdir()) if sys_net.is_dir() else []:
        try:
            mac = (entry / "address").read_text().strip().lower()
        except OSError:
            continue
        if (entry / "device").exists() and mac and mac != "00:00:00:00:00:00":
            found.append(Nic(entry.name, mac))
    return found


def choose(available: list[Nic], mac: str) -> list[Nic]:
    """The NIC with ``mac``, else all of ``available`` (their links decide later)."""
    matching = [n for n in available if n.mac == mac]
    if mac and not matching:
        log.warning("no NIC has arges.mac=%s; trying every NIC with a link", mac)
    return matching or available


def has_carrier(name: str, root: Path = Path("/")) -> bool:
    """Whether ``name`` reports a link (``carrier`` is 1; unreadable while the NIC is down)."""
    try:
        return (root / "sys/class/net" / name / "carrier").read_text().strip() == "1"
    except OSError:
        return False


def _run(argv: list[str], timeout: float) -> int:
    # udhcpc forks into the background holding the stdio it was given: hand it none, so the
    # pipe from the agent to the consoles closes when the agent exits.
    try:
        return subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=timeout,
            check=False,
        ).returncode
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("%s failed: %s", argv[0], exc)
        return -1


def bring_up(
    mac: str,
    root: Path = Path("/"),
    run: Callable[[list[str], float], int] = _run,
    sleep: Callable[[float], None] = time.sleep,
) -> list[str]:
    """Configure the boot NIC (see the module docstring); the names that got a lease."""
    run(["ip", "link", "set", "dev", "lo", "up"], 10)
    chosen = choose(nics(root), mac)
    if not chosen:
        log.warning("no network interfaces found (is the NIC's driver in the image?)")
        return []
    for nic in chosen:
        run(["ip", "link", "set", "dev", nic.name, "up"], 10)
    waited = 0.0
    while waited < LINK_WAIT and not any(has_carrier(n.name, root) for n in chosen):
        sleep(0.5)
        waited += 0.5
    leased = []
    for nic in chosen:
        if not has_carrier(nic.name, root) and not mac:
            log.info("%s (%s): no link, skipped", nic.name, nic.mac)
            continue
        log.info("%s (%s): asking for an address over DHCP", nic.name, nic.mac)
        code = run(["udhcpc", "-i", nic.name, "-s", UDHCPC_SCRIPT, "-n", "-t", "5", "-T", "3"], 60)
        if code == 0:
            leased.append(nic.name)
        else:
            log.warning("%s (%s): no DHCP lease (udhcpc exited %d)", nic.name, nic.mac, code)
    return leased
