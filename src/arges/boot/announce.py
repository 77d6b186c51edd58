"""The Event a Server gets when what it network-boots changes (agent, target, disk, nothing).

Only changes are announced: a server that boots the agent five times in a row while it is
wiped has one ``BootingAgent`` Event, not five; the condition ``PXEBooted`` keeps the last
boot's time.
"""

from __future__ import annotations

from typing import Any

from arges.api.server import Server
from arges.kube.client import KubeClient
from arges.metal.conditions import find
from arges.metal.stage import PXE_BOOTED, BootReason

REASONS = {
    BootReason.AGENT: "BootingAgent",
    BootReason.TARGET: "BootingTarget",
    BootReason.DISK: "BootingFromDisk",
    BootReason.NOT_READY: "BootNotReady",
}
"""``PXEBooted`` condition reason -> Event reason."""


async def announce_decision(
    kube: KubeClient,
    server: Server,
    body: dict[str, Any],
    reason: BootReason,
    what: str,
    why: str,
    client: str,
) -> None:
    """Record an Event on ``server`` (as read before this boot; ``body``: its JSON, which the
    Event names) when its boot decision ``reason`` (a ``PXEBooted`` reason) differs from its
    previous one."""
    previous = find(server.status.conditions, PXE_BOOTED)
    if previous is not None and previous.reason == reason:
        return
    kind = "Warning" if reason is BootReason.NOT_READY else "Normal"
    message = f"{client or 'an unknown address'} was given {what}: {why}"
    await kube.event(body, REASONS.get(reason, reason), message, type=kind)
