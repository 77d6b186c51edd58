"""What a server's power should be, as a pure function of its state (the power controller's
rules; Sidero's power loop, ``reference/sidero.md`` §4.4, without its reboot loops).

=========================================  =============================================
accepted, bound, not installed             network boot next, power on
accepted, bound, installed                 power on
accepted, unbound, not clean               network boot next, power cycle (the agent
                                           wipes), unless a cycle was requested or the
                                           agent was seen within ``reboot_timeout``
                                           (a server whose last network boot was into
                                           its target or its disk runs no agent, however
                                           recently it reported)
accepted, unbound, clean                   power off
not accepted                               nothing (nothing destructive happens to it)
=========================================  =============================================
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

from arges.api.binding import INSTALLED, ServerBinding
from arges.api.server import Server
from arges.metal.boot import PXE_BOOTED
from arges.metal.conditions import find, is_true

POWER_CYCLE = "PowerCycle"
"""Condition recording when a power cycle was last requested (its lastTransitionTime)."""


@dataclass(frozen=True)
class PowerIntent:
    """The action to take (None: none), whether to boot from the network next, and why."""

    action: Literal["on", "off", "cycle"] | None
    network_boot: bool
    reason: str


def intent(
    server: Server,
    binding: ServerBinding | None,
    *,
    now: dt.datetime,
    reboot_timeout: dt.timedelta,
) -> PowerIntent:
    """The power intent for ``server`` (see the module docstring)."""
    if not server.spec.accepted:
        return PowerIntent(None, False, "not accepted: no power actions")
    if binding is not None:
        if is_true(binding.status.conditions, INSTALLED):
            return PowerIntent("on", False, "installed: keep it running")
        return PowerIntent("on", True, "allocated: boot the target environment")
    if server.status.is_clean:
        return PowerIntent("off", False, "clean and available: power off")
    cycled = find(server.status.conditions, POWER_CYCLE)
    if cycled is not None and now - cycled.last_transition_time < reboot_timeout:
        return PowerIntent(None, False, "waiting for the agent to wipe (cycle requested)")
    seen = server.status.last_seen
    booted = find(server.status.conditions, PXE_BOOTED)
    agent = booted is None or booted.reason not in ("Target", "Disk")
    if agent and seen is not None and now - seen < reboot_timeout:
        return PowerIntent(None, False, "the agent is running; waiting for its wipe")
    return PowerIntent("cycle", True, "not clean: boot the agent to wipe")
