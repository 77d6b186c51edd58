"""Whether a running Arges' network boot settings fit a lab, and the flags that would.

The lab's servers reach Arges at the lab network's host address (10.88.0.1) on its host
link (``arges0``). An Arges started with its defaults tells them its first non-loopback
address instead, and they network-boot for ever; so ``arges lab up`` compares the running
Arges' settings (what ``arges up`` records, :mod:`arges.cli.running`) with the lab and
refuses, naming the flags, before it builds anything.
"""

from __future__ import annotations

from dataclasses import dataclass

from arges.lab.network import LabNetwork


@dataclass(frozen=True)
class BootSettings:
    """The network boot settings of a running Arges (its ``arges up`` flags):
    ``dhcp_mode`` is ``proxy``, ``full`` or None (off)."""

    address: str
    dhcp_mode: str | None
    dhcp_interface: str | None
    dhcp_network: str | None


def flags(network: LabNetwork, *, site_dhcp: bool) -> str:
    """The ``arges up`` flags for a lab on ``network``, with or without its site DHCP."""
    out = f"--boot-address {network.host_address} --dhcp-interface {network.host_link}"
    if not site_dhcp:
        out += f" --dhcp-mode full --dhcp-network {network.subnet}"
    return out


def misfits(
    settings: BootSettings, network: LabNetwork, *, site_dhcp: bool, network_boot: bool
) -> list[str]:
    """What in ``settings`` keeps a lab on ``network`` from booting (empty: they fit).

    Each entry says what Arges does and what the lab needs. ``site_dhcp``: the lab runs its
    own DHCP server (addresses only), so Arges answers as ProxyDHCP; without it Arges must
    hand out addresses (full mode) on the lab's subnet. ``network_boot``: the servers
    network-boot (else they reach the agent by virtual media, and only need an address).
    """
    found = []
    if settings.address != network.host_address:
        found.append(
            f"Arges tells servers to reach it at {settings.address}, "
            f"but the lab's servers reach it at {network.host_address}"
        )
    mode = settings.dhcp_mode
    if mode is None and (network_boot or not site_dhcp):
        found.append(
            "Arges runs no DHCP, so "
            + ("the servers get no boot file" if site_dhcp else "nothing hands out addresses")
        )
    if mode == "proxy" and not site_dhcp:
        found.append("Arges answers as ProxyDHCP, but the lab has no site DHCP to give addresses")
    if mode == "full" and site_dhcp:
        found.append("Arges runs a full DHCP server beside the lab's site DHCP server")
    if mode == "full" and not site_dhcp and settings.dhcp_network != network.subnet:
        found.append(
            f"Arges hands out addresses in {settings.dhcp_network or 'no network'}, "
            f"the lab's subnet is {network.subnet}"
        )
    if mode is not None and settings.dhcp_interface is None:
        found.append(
            "Arges' DHCP is pinned to no interface, so its broadcast replies leave by the "
            f"default route, not by the lab's link {network.host_link}"
        )
    elif mode is not None and settings.dhcp_interface != network.host_link:
        found.append(
            f"Arges' DHCP listens on {settings.dhcp_interface}, "
            f"the lab's link is {network.host_link}"
        )
    return found
