"""What a person asks of a server through annotations: a power cycle, a re-inspection.

The dashboard's actions set them, and so can ``kubectl annotate``; the value is the time of
the request (RFC 3339, e.g. ``2026-12-03T10:00:00Z``). A request is done once the power
controller has cycled the server after that time (the ``PowerCycle`` condition's time), and,
for a re-inspection, once the agent it booted has registered again (refreshing the
inventory). Requests are honoured only for accepted servers: nothing happens to a server
before a person accepts it.
"""

from __future__ import annotations

import datetime as dt

from arges.api.base import parse_time
from arges.api.server import Server

POWER_CYCLE_REQUESTED = "metal.arges.dev/power-cycle-requested"
"""Power-cycle the server (it then boots as Arges decides: agent, target or disk)."""
REINSPECT_REQUESTED = "metal.arges.dev/reinspect-requested"
"""Boot the agent to register the server's inventory again (unbound servers only)."""


def requested(server: Server, annotation: str) -> dt.datetime | None:
    """When ``annotation`` asked for its action; None without one (or with a value that is
    no time, which asks for nothing)."""
    return parse_time((server.metadata.get("annotations") or {}).get(annotation))


def stamp(now: dt.datetime) -> str:
    """The annotation value for a request made at ``now``."""
    return now.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
