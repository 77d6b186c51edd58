"""The kernel command line the agent is booted with (``/proc/cmdline``).

``arges.url=`` is the base URL of Arges' boot HTTP service (where ``/agent/v1/...`` lives),
``arges.mac=`` the NIC the machine network-booted from, ``arges.token=`` the credential of
this boot, which every request to Arges carries (all added by ``/ipxe``, see
:mod:`arges.boot.ipxe`). ``talos.config=`` puts the agent in target mode, where it stands
in for Talos (see :mod:`arges.agent.target`). Quoting follows the kernel's own parser
(``lib/cmdline.c``: double quotes group a value with spaces).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAC_RE = re.compile(r"^[0-9a-f]{2}([:-][0-9a-f]{2}){5}$")


@dataclass(frozen=True)
class BootArgs:
    """What the agent needs from the command line; "" where absent."""

    url: str = ""
    mac: str = ""
    token: str = ""
    talos_config: str = ""


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
    )
