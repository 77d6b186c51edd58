"""The kernel command line the agent is booted with (``/proc/cmdline``).

``arges.url=`` is the base URL of Arges' boot HTTP service (where ``/agent/v1/...`` lives),
``arges.mac=`` the NIC the machine network-booted from, ``arges.token=`` the credential of
this boot, which every request to Arges carries (all added by ``/ipxe``, see
:mod:`arges.boot.ipxe`, or written into the agent ISO for virtual media). ``ip=`` gives a
static address in the kernel's own format (``Documentation/admin-guide/nfs/nfsroot.rst``:
``ip=<client>:<server>:<gateway>:<netmask>:<hostname>:<device>:<autoconf>:<dns0>:<dns1>``,
autoconf ``off``, ``none`` or ``static``); any other ``ip=`` leaves the agent to DHCP.
``talos.config=`` puts the agent in target mode, where it stands in for Talos (see
:mod:`arges.agent.target`). Quoting follows the kernel's own parser (``lib/cmdline.c``:
double quotes group a value with spaces).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

MAC_RE = re.compile(r"^[0-9a-f]{2}([:-][0-9a-f]{2}){5}$")


@dataclass(frozen=True)
class StaticIp:
    """A static IPv4 configuration: ``address`` with ``prefix`` length, an optional
    ``gateway`` and name servers, and the interface name ``device`` ("" for any)."""

    address: str
    prefix: int
    gateway: str = ""
    nameservers: tuple[str, ...] = ()
    device: str = ""


@dataclass(frozen=True)
class BootArgs:
    """What the agent needs from the command line; "" (None) where absent."""

    url: str = ""
    mac: str = ""
    token: str = ""
    talos_config: str = ""
    static: StaticIp | None = None


def split(text: str) -> dict[str, str]:
    """``key=value`` words as a dict (the last one wins, as in the kernel); flags map to ""."""
    words = [m.group(0).replace('"', "") for m in re.finditer(r'(?:[^\s"]+|"[^"]*")+', text)]
    args: dict[str, str] = {}
    for word in words:
        key, _, value = word.partition("=")
        args[key] = value
    return args


def parse(text: str) -> BootArgs:
    """:class:`BootArgs` from a command line; a malformed ``arges.mac=`` is ignored (the agent
    then uses every NIC with a link) and trailing slashes are dropped from ``arges.url=``."""
    args = split(text)
    mac = args.get("arges.mac", "").lower().replace("-", ":")
    return BootArgs(
        url=args.get("arges.url", "").rstrip("/"),
        mac=mac if MAC_RE.match(mac) else "",
        token=args.get("arges.token", ""),
        talos_config=args.get("talos.config", ""),
        static=static_ip(args.get("ip", "")),
    )


def static_ip(value: str) -> StaticIp | None:
    """The static configuration an ``ip=`` value gives (see the module docstring), or None
    for DHCP, other autoconf methods, or a value that is not one."""
    fields = [*value.split(":"), *[""] * 9][:9]
    client, _server, gateway, netmask, _host, device, autoconf, dns0, dns1 = fields
    if autoconf not in ("off", "none", "static") or not client:
        return None
    try:
        address = ipaddress.IPv4Address(client)
        prefix = ipaddress.IPv4Network(f"0.0.0.0/{netmask or '255.255.255.0'}").prefixlen
        if gateway:
            ipaddress.IPv4Address(gateway)
        servers = tuple(str(ipaddress.IPv4Address(d)) for d in (dns0, dns1) if d)
    except ValueError:
        return None
    return StaticIp(str(address), prefix, gateway, servers, device)
