"""The agent's wire protocol: what the discovery agent and Arges say to each other over HTTP.

Both sides import it: the agent (:mod:`arges.agent`), which runs from a minimal initramfs,
and the server (:mod:`arges.discovery`, :mod:`arges.metal.agent`). So it sits below every
layer, outside the agent package, and uses the standard library only (import-linter keeps
it so); the agent image carries it beside :mod:`arges.errors`.
All bodies are JSON; field names are camelCase like Kubernetes'. Every request carries the
credential of the server's current boot (``Authorization: Bearer``, from ``arges.token=``
on the kernel command line, beside ``arges.url=``); without it Arges answers 403.

``POST {arges.url}/agent/v1/register`` with a :class:`Registration`
    Creates the Server (named by the lowercase SMBIOS UUID) or refreshes its inventory,
    addresses and ``lastSeen``; answers an :class:`Instruction`.
``POST {arges.url}/agent/v1/report`` with a :class:`Report`
    Heartbeats and outcomes (wipe progress, wipe done or failed, target config installed);
    answers the next :class:`Instruction`.

Instructions: ``wait`` (poll again after ``pollSeconds``), ``wipe`` (``wipeMode`` fast: the
first and last MiB of each disk plus partition tables and filesystem signatures; full:
every byte), ``reboot``, ``poweroff``. Errors are HTTP 4xx with a JSON ``{"error": "..."}``
the agent logs; it then retries after a delay. A 403 means its credential no longer works
(Arges restarted before recording it, or the server booted again elsewhere): an agent
refused for ``REFUSED_REBOOT_SECONDS`` reboots, and its next boot brings a new one.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

SMBIOS_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
"""A Server's name: an SMBIOS system UUID, lowercase, 8-4-4-4-12 hex digits."""


def server_name(value: object) -> str | None:
    """The Server name of an SMBIOS UUID as firmware, iPXE, Talos or the agent write it
    (surrounding blanks dropped, hex digits lowercased), or None when ``value`` is not one.
    The one normalisation every door uses (the agent's inventory, ``/ipxe``, ``/configdata``,
    the agent endpoints, agent ISOs), so a UUID is checked before it names anything and
    never reaches an API path unvalidated."""
    if not isinstance(value, str):
        return None
    name = value.strip().lower()
    return name if SMBIOS_UUID.match(name) else None


REGISTER_PATH = "/agent/v1/register"
REPORT_PATH = "/agent/v1/report"
REFUSED_REBOOT_SECONDS = 120.0
"""How long an agent whose credential is refused (403) keeps trying before it reboots."""
MAX_BODY_BYTES = 256 * 1024
"""Largest registration or report Arges accepts (an inventory is a few KiB)."""

Action = Literal["wait", "wipe", "reboot", "poweroff"]
WipeMode = Literal["fast", "full"]
Phase = Literal["idle", "wiping", "wiped", "wipe-failed", "installed", "install-failed"]

ACTIONS: tuple[str, ...] = ("wait", "wipe", "reboot", "poweroff")
PHASES: tuple[str, ...] = ("idle", "wiping", "wiped", "wipe-failed", "installed", "install-failed")


@dataclass
class Registration:
    """What the agent sends first: who it is and what it found.

    ``hardware`` has the shape of the Server's ``status.hardware`` (see
    :class:`arges.api.server.HardwareInformation`): system, compute, memory, storage,
    network, sizes in bytes. ``uuid`` must equal ``hardware.system.uuid``.
    """

    uuid: str
    hardware: dict[str, Any]
    hostname: str = ""
    addresses: list[str] = field(default_factory=list)
    boot_mac: str = ""

    def to_json(self) -> dict[str, Any]:
        """The JSON the agent posts to the registration endpoint."""
        return {
            "uuid": self.uuid,
            "hardware": self.hardware,
            "hostname": self.hostname,
            "addresses": self.addresses,
            "bootMac": self.boot_mac,
        }


@dataclass
class Report:
    """A heartbeat or an outcome. ``wiped`` lists ``{"name", "size", "bytesZeroed"}`` per disk
    once a wipe is done; ``message`` explains a failure."""

    uuid: str
    phase: Phase
    message: str = ""
    wiped: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The JSON the agent posts as a report (empty fields left out)."""
        out = asdict(self)
        return {k: v for k, v in out.items() if v not in ("", [])}


@dataclass
class Instruction:
    """What Arges tells the agent to do next."""

    action: Action
    poll_seconds: int = 10
    wipe_mode: WipeMode = "fast"
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        """The JSON Arges answers the agent with."""
        return {
            "action": self.action,
            "pollSeconds": self.poll_seconds,
            "wipeMode": self.wipe_mode,
            "reason": self.reason,
        }

    @classmethod
    def from_json(cls, data: Any) -> Instruction:
        """Parse an answer from Arges.

        Raises:
            ValueError: when it is not an instruction this agent understands.
        """
        if not isinstance(data, dict) or data.get("action") not in ACTIONS:
            raise ValueError(f"not an instruction: {data!r}")
        mode = data.get("wipeMode", "fast")
        if mode not in ("fast", "full"):
            raise ValueError(f"unknown wipe mode {mode!r}")
        return cls(
            action=data["action"],
            poll_seconds=max(1, int(data.get("pollSeconds", 10))),
            wipe_mode=mode,
            reason=str(data.get("reason", "")),
        )
