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
                                           recently it reported), or Talos was asked to
                                           reset within ``reset_timeout`` and the agent
                                           has not been seen since (Talos wipes itself
                                           and reboots into the agent: condition
                                           ``TalosReset``)
accepted, unbound, clean                   power off
not accepted                               nothing (nothing destructive happens to it)
=========================================  =============================================

Before these rules, a person's requests (:mod:`arges.metal.requests`) of an accepted server:
a power cycle requested after the last cycle is done first (booting from the network next,
where Arges decides what it boots); a re-inspection of an unbound server cycles it into the
agent. After either, an unbound server is left alone until the agent registers again (or
``reboot_timeout`` passes), instead of being powered off before it has booted.

A server whose boot method is ``virtualMedia`` reaches the agent from the agent ISO in its
BMC's virtual CD, booted once, instead of from the network (``media`` replaces
``network_boot`` wherever the agent is wanted), and two rules change:

- not accepted and never registered: boot the agent from virtual media (power on, or cycle),
  once per ``reboot_timeout``. Setting ``bootMethod: virtualMedia`` on a Server is asking
  for its discovery; the agent does nothing destructive to a server that is not accepted;
- the ISO is ejected (``eject``) once the agent is done with it: when the server is clean,
  or bound (its target boots from the network or its disk).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

from arges.api.base import Condition
from arges.api.binding import INSTALLED, ServerBinding
from arges.api.server import BootMethod, Server
from arges.metal.conditions import find, is_true
from arges.metal.requests import POWER_CYCLE_REQUESTED, REINSPECT_REQUESTED, requested
from arges.metal.stage import runs_agent

POWER_CYCLE = "PowerCycle"
"""Condition recording when a power cycle was last requested (its lastTransitionTime)."""


TALOS_RESET = "TalosReset"
"""Condition recording that the cluster controller asked the server's Talos to reset itself
(True, its lastTransitionTime when): it reboots, network-boots into the agent and is wiped;
until ``reset_timeout`` has passed nothing power-cycles it."""

AGENT_MEDIA = "AgentMedia"
"""Condition recording the agent ISO in the BMC's virtual CD: True (reason ``Inserted``) from
its insertion until it is ejected (then False, ``Ejected``)."""


@dataclass(frozen=True)
class PowerIntent:
    """The action to take (None: none), whether to boot from the network next, whether to
    boot the agent from virtual media next, whether to eject the agent ISO, and why."""

    action: Literal["on", "off", "cycle"] | None
    network_boot: bool
    reason: str
    media: bool = False
    eject: bool = False


@dataclass(frozen=True)
class Reading:
    """What the power controller last carried out for a server: the ``plan``, the ``bmc`` it
    asked (its ``spec.bmc`` as canonical JSON text), the ``power`` that BMC then reported
    (``"on"``, ``"off"``, ``"unknown"``) and when (``at``: seconds on the controller's
    monotonic clock)."""

    plan: PowerIntent
    bmc: str
    power: str
    at: float


def kept_on_release(conditions: list[Condition], released_at: dt.datetime) -> list[Condition]:
    """``conditions`` as a release (its binding deleted at ``released_at``) leaves them.

    A ``PowerCycle`` requested before the release is dropped: it must not hold off the wipe
    the release starts. One requested since is that wipe's own and stays: the power
    controller may see the binding go and cycle the server before the release is recorded,
    and without its record it would cycle the booting server again. Both times are whole
    seconds (``metav1.Time``): a cycle in the release's second is taken as the wipe's.
    """
    return [c for c in conditions if c.type != POWER_CYCLE or c.last_transition_time >= released_at]


def read_again_in(
    last: Reading | None, plan: PowerIntent, bmc: str, *, now: float, refresh: float
) -> float:
    """Seconds until the BMC must be read for ``plan`` (0.0: now), given the ``last`` reading.

    Only a plan the last reading already showed done waits: the same plan, to the same BMC,
    needing no action or an ``on``/``off`` the BMC reported, read less than ``refresh``
    seconds ago (it waits out the rest). A cycle, an insertion or an ejection of virtual media
    is carried out each time it is planned, and a new plan or BMC is read at once. A Server is
    written a dozen times in its life for reasons no power decision turns on (its agent's
    heartbeats, boot records, its inventory): each woke a BMC reading and a read of the
    credentials Secret that told nothing new. The periodic refresh still reads every BMC, as
    Metal3's baremetal-operator polls power state, so a change made at the BMC is seen then.
    """
    if last is None or last.plan != plan or last.bmc != bmc or plan.media or plan.eject:
        return 0.0
    if plan.action is not None and plan.action != last.power:
        return 0.0
    return max(0.0, last.at + refresh - now)


def intent(
    server: Server,
    binding: ServerBinding | None,
    *,
    now: dt.datetime,
    reboot_timeout: dt.timedelta,
    reset_timeout: dt.timedelta = dt.timedelta(minutes=5),
    boot_method: BootMethod = "network",
) -> PowerIntent:
    """The power intent for ``server`` booting the agent by ``boot_method`` (see the module
    docstring)."""
    media = boot_method == "virtualMedia"
    inserted = media and is_true(server.status.conditions, AGENT_MEDIA)
    cycled = find(server.status.conditions, POWER_CYCLE)
    recently_cycled = cycled is not None and now - cycled.last_transition_time < reboot_timeout
    if not server.spec.accepted:
        if media and server.status.hardware is None and not recently_cycled:
            return PowerIntent("cycle", False, "discovery: boot the agent from virtual media", True)
        return PowerIntent(None, False, "not accepted: no power actions")
    asked = _asked(server, binding, cycled, recently_cycled, media)
    if asked is not None:
        return asked
    if binding is not None:
        if is_true(binding.status.conditions, INSTALLED):
            return PowerIntent("on", False, "installed: keep it running", eject=inserted)
        return PowerIntent("on", True, "allocated: boot the target environment", eject=inserted)
    if server.status.is_clean:
        return PowerIntent("off", False, "clean and available: power off", eject=inserted)
    if recently_cycled:
        return PowerIntent(None, False, "waiting for the agent to wipe (cycle requested)")
    seen = server.status.last_seen
    if runs_agent(server) and seen is not None and now - seen < reboot_timeout:
        return PowerIntent(None, False, "the agent is running; waiting for its wipe")
    reset = find(server.status.conditions, TALOS_RESET)
    if (
        reset is not None
        and reset.status == "True"
        and now - reset.last_transition_time < reset_timeout
        # Both times are whole seconds: a report in the reset's second (the member's own
        # "installed", say) came before it, as a reset's reboot into the agent takes longer.
        and (seen is None or seen <= reset.last_transition_time)
    ):
        return PowerIntent(None, False, "Talos is resetting itself; it reboots into the agent")
    if media:
        return PowerIntent("cycle", False, "not clean: boot the agent from virtual media", True)
    return PowerIntent("cycle", True, "not clean: boot the agent to wipe")


def _asked(
    server: Server,
    binding: ServerBinding | None,
    cycled: Condition | None,
    recently_cycled: bool,
    media: bool,
) -> PowerIntent | None:
    """What a person's pending request needs now (see the module docstring), if anything."""
    last_cycle = cycled.last_transition_time if cycled is not None else None
    cycle = requested(server, POWER_CYCLE_REQUESTED)
    if cycle is not None and (last_cycle is None or last_cycle < cycle):
        return PowerIntent("cycle", not media, "power cycle requested by a person")
    inspect = requested(server, REINSPECT_REQUESTED) if binding is None else None
    if inspect is not None and (last_cycle is None or last_cycle < inspect):
        return PowerIntent(
            "cycle", not media, "re-inspection requested: boot the agent", media=media
        )
    asked = [t for t in (cycle, inspect) if t is not None and last_cycle is not None]
    seen = server.status.last_seen
    if (
        binding is None
        and asked
        and recently_cycled
        and last_cycle is not None
        and (seen is None or seen <= last_cycle)
    ):
        # An unbound server would be powered off (or cycled again) at once: let it boot.
        return PowerIntent(None, False, "cycled as asked: waiting for the agent to register")
    return None
