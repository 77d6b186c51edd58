"""Bringing up the network: the NIC the machine booted from, with busybox ``udhcpc``.

With ``arges.mac=`` the agent configures that NIC only (a multi-NIC machine may have other
networks on its other ports, the reason Sidero v0.6 stopped using ``ip=dhcp``); without it,
or when no NIC has that MAC, every NIC that reports a link. ``udhcpc`` runs the image's
``/usr/share/udhcpc/default.script`` (address, routes, DNS, MTU, host name) and stays in
the background to renew the lease.

With a static configuration (``ip=`` on the kernel command line, as an agent ISO booted from
virtual media may carry where no DHCP serves the server) there is no DHCP: the address goes
on the NIC ``ip=`` names, else the ``arges.mac=`` one, else the first NIC with a link, with
the default route and name servers given.
"""

from __future__ import annotations

import logging
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from arges.agent.cmdline import StaticIp

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
    static: StaticIp | None = None,
) -> list[str]:
    """Configure the boot NIC (see the module docstring); the names that got an address."""
    run(["ip", "link", "set", "dev", "lo", "up"], 10)
    chosen = choose(nics(root), mac)
    if static is not None and static.device:
        chosen = [n for n in nics(root) if n.name == static.device] or chosen
    if not chosen:
        log.warning("no network interfaces found (is the NIC's driver in the image?)")
        return []
    for nic in chosen:
        run(["ip", "link", "set", "dev", nic.name, "up"], 10)
    waited = 0.0
    while waited < LINK_WAIT and not any(has_carrier(n.name, root) for n in chosen):
        sleep(0.5)
        waited += 0.5
    if static is not None:
        linked = [n for n in chosen if has_carrier(n.name, root)] or chosen
        return configure_static(linked[0], static, root, run)
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


def configure_static(
    nic: Nic,
    static: StaticIp,
    root: Path = Path("/"),
    run: Callable[[list[str], float], int] = _run,
) -> list[str]:
    """Put ``static`` on ``nic``: its address, default route and name servers; the NIC's
    name in a list when the address went on, else an empty list."""
    cidr = f"{static.address}/{static.prefix}"
    log.info("%s (%s): static address %s", nic.name, nic.mac, cidr)
    if run(["ip", "addr", "add", cidr, "dev", nic.name], 10) != 0:
        log.warning("%s: the address %s did not go on", nic.name, cidr)
        return []
    if static.gateway:
        run(["ip", "route", "add", "default", "via", static.gateway, "dev", nic.name], 10)
    if static.nameservers:
        resolv = root / "etc/resolv.conf"
        resolv.parent.mkdir(parents=True, exist_ok=True)
        resolv.write_text("".join(f"nameserver {d}\n" for d in static.nameservers))
    return [nic.name]
