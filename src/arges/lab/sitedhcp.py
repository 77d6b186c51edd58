"""The lab's "site" DHCP server: Debian's dnsmasq handing out addresses only.

It stands for the DHCP server that a datacenter already runs and Arges does not own: no boot
file, no next-server, no DNS, so PXE clients must get their boot information from Arges'
ProxyDHCP. It runs inside the lab namespace, on the bridge.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from arges.lab.network import LabNetwork


def dnsmasq_argv(network: LabNetwork, lease_file: Path, lease_time: str = "1h") -> list[str]:
    """The dnsmasq command line (foreground, logging DHCP to stderr)."""
    start, end = network.dhcp_range()
    netmask = str(ipaddress.IPv4Network(network.subnet).netmask)
    return network.in_namespace(
        "dnsmasq",
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        "--no-resolv",
        "--no-hosts",
        "--port=0",
        f"--interface={network.bridge}",
        "--bind-interfaces",
        f"--dhcp-range={start},{end},{netmask},{lease_time}",
        f"--dhcp-leasefile={lease_file}",
        "--dhcp-authoritative",
        "--log-dhcp",
        "--log-facility=-",
    )
