"""A server's stage in its life, decided in one place (docs/architecture.md, "A server's life").

A Server goes: unregistered (powered, no inventory yet) → registered (the agent reported its
inventory) → accepted (a person or policy said yes) → wiping → clean (wiped since its last use)
→ allocated (a ServerBinding holds it) → booting (it network-booted its target Environment) →
config delivered (the metadata service served its machine config) → installed (the target
reported its config on disk) → released (the binding is going: the server is wiped before
anyone else gets it) → accepted again. A failed wipe is ``WipeFailed`` until the next try.

Everything that needs to know where a server is (boot, power, the agent endpoints, the cluster
controllers, the dashboard, the demo) reads it from here; the condition reasons that carry it
between them are the enums below rather than bare strings.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

from arges.api.binding import CONFIG_DELIVERED, INSTALLED, ServerBinding
from arges.api.server import Server
from arges.metal.conditions import find, is_true

PXE_BOOTED = "PXEBooted"
"""The Server condition recording each network boot: its reason (a :class:`BootReason`) says
what the server was given, its message from where and when."""

WIPE = "Wipe"
"""The Server condition of the agent's last wipe: Unknown/InProgress while it runs, True/Wiped
or False/WipeFailed after."""


class BootReason(StrEnum):
    """The reason of the ``PXEBooted`` condition: what the server's last network boot got."""

    AGENT = "Agent"
    """The discovery agent (registration, wipe, or waiting while clean)."""
    TARGET = "Target"
    """The bound server's target Environment (Talos, with its machine config URL)."""
    DISK = "Disk"
    """Told to boot from its disk (installed)."""
    NOT_READY = "NotReady"
    """Nothing: the Environment chosen was not ready to be served (HTTP 412)."""


class Stage(StrEnum):
    """Where a server is in its life (see the module docstring for the order)."""

    UNREGISTERED = "Unregistered"
    REGISTERED = "Registered"
    ACCEPTED = "Accepted"
    WIPING = "Wiping"
    WIPE_FAILED = "WipeFailed"
    CLEAN = "Clean"
    ALLOCATED = "Allocated"
    BOOTING = "Booting"
    CONFIG_DELIVERED = "ConfigDelivered"
    INSTALLED = "Installed"
    RELEASED = "Released"


def last_boot(server: Server | None) -> BootReason | None:
    """What the server's last network boot got (None: no network boot recorded, or a reason
    this version does not know)."""
    booted = find(server.status.conditions, PXE_BOOTED) if server is not None else None
    if booted is None:
        return None
    try:
        return BootReason(booted.reason)
    except ValueError:
        return None


def runs_agent(server: Server) -> bool:
    """Whether what last reported for this server is the agent: its last network boot was into
    the agent, or none was recorded (a server registers from the agent). After a boot into its
    target or from disk, reports come from the installed system instead."""
    return last_boot(server) not in (BootReason.TARGET, BootReason.DISK)


def stage(
    server: Server | None, binding: ServerBinding | None, *, releasing: bool = False
) -> Stage:
    """The stage of ``server`` given the ServerBinding that holds it (None: unbound), and
    whether that binding is being deleted (``releasing``; see ``api.binding.releasing``)."""
    if server is None or server.status.hardware is None:
        return Stage.UNREGISTERED
    if binding is not None and releasing:
        return Stage.RELEASED
    if binding is not None:
        conditions = binding.status.conditions
        if is_true(conditions, INSTALLED):
            return Stage.INSTALLED
        if is_true(conditions, CONFIG_DELIVERED):
            return Stage.CONFIG_DELIVERED
        if last_boot(server) is BootReason.TARGET:
            return Stage.BOOTING
        return Stage.ALLOCATED
    if not server.spec.accepted:
        return Stage.REGISTERED
    if server.status.is_clean:
        return Stage.CLEAN
    wipe = find(server.status.conditions, WIPE)
    if wipe is not None and wipe.status == "Unknown":
        return Stage.WIPING
    if wipe is not None and wipe.status == "False":
        return Stage.WIPE_FAILED
    return Stage.ACCEPTED


def stays_clean(server: Server, *, bound: bool, released: bool) -> bool:
    """Whether a server recorded clean is still clean: only while accepted, unbound and not
    just released (a binding, even one deleted at once, means its disks may hold a tenant's
    data; an unaccepted server is wiped once accepted)."""
    return bool(server.status.is_clean) and server.spec.accepted and not bound and not released


REGISTRATION_GRACE = 3.0
"""Seconds from a Server's creation that the Server controller leaves a Server with no
status to the registration that created it (``arges.discovery``), which records its
allocation state in its first status write, a moment after the create."""


def registration_wait(has_status: bool, created: dt.datetime | None, now: dt.datetime) -> float:
    """Seconds to wait before recording a Server's allocation state (``inUse``, ``isClean``)
    oneself: what is left of :data:`REGISTRATION_GRACE` since ``created`` (its
    ``creationTimestamp``) while it has no status at all; 0 once it has one, once the grace
    is over, or when ``created`` is unknown or later than ``now`` (clocks apart: no wait).

    A Server the agent registers gets its first status from the registration, with the same
    values the Server controller would record; writing them first makes two writes of one
    fact, or a write refused (409) on a copy the registration has just changed. A Server
    created otherwise (``kubectl``, an import) gets its state once the grace is over.
    """
    if has_status or created is None:
        return 0.0
    elapsed = (now - created).total_seconds()
    if elapsed < 0 or elapsed >= REGISTRATION_GRACE:
        return 0.0
    return REGISTRATION_GRACE - elapsed


def clean_after_wipe(*, accepted: bool, bound: bool) -> bool:
    """Whether the agent's successful wipe makes the server clean: only an accepted, unbound
    server becomes available (a wipe the agent reports while bound or before acceptance
    changes nothing)."""
    return accepted and not bound
