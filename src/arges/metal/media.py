"""The agent booted from virtual media: its kernel command line, as a pure function.

An agent ISO carries its kernel command line (nothing reaches a CD-booted kernel from
Arges), so each Server gets its own: the agent Environment's arguments, ``arges.url=`` (where
it registers), and, when the Server gives ``spec.agentNetwork``, ``arges.mac=`` for the NIC
and ``ip=`` in the kernel's nfsroot format (``ip=<client>::<gateway>:<netmask>::<device>:off:
<dns0>:<dns1>``, what the agent's :mod:`arges.agent.cmdline` reads).
"""

from __future__ import annotations

import ipaddress

from arges.api.server import AgentNetwork
from arges.errors import ArgesError

PER_SERVER = ("arges.url=", "arges.mac=", "ip=")
"""Arguments this module sets, dropped from the Environment's if present there."""


class MediaUnavailable(ArgesError):
    """The agent ISO cannot be had (no agent image yet, a bad ``spec.agentNetwork``, the
    build failed); the message says which."""


def ip_argument(network: AgentNetwork) -> str:
    """``ip=`` for ``network``.

    Raises:
        MediaUnavailable: an address, gateway or name server is not an IPv4 address.
    """
    try:
        interface = ipaddress.IPv4Interface(network.address)
        gateway = str(ipaddress.IPv4Address(network.gateway)) if network.gateway else ""
        servers = [str(ipaddress.IPv4Address(d)) for d in (network.nameservers or [])[:2]]
    except ValueError as exc:
        raise MediaUnavailable(f"spec.agentNetwork is not usable: {exc}") from exc
    dns = ":".join(servers)
    return f"ip={interface.ip}::{gateway}:{interface.netmask}:::off" + (f":{dns}" if dns else "")


def agent_media_args(
    environment_args: list[str], base_url: str, network: AgentNetwork | None
) -> list[str]:
    """The kernel command line of one Server's agent ISO (see the module docstring).

    Raises:
        MediaUnavailable: ``network`` is not usable.
    """
    args = [a for a in environment_args if not a.startswith(PER_SERVER)]
    args.append(f"arges.url={base_url}")
    if network is not None:
        if network.mac:
            args.append(f"arges.mac={network.mac.lower()}")
        args.append(ip_argument(network))
    return args
