"""What the discovery agent on a server should do next: a pure function of the server's state.

- not accepted → wait (nothing destructive happens until a person accepts it; unlike Sidero,
  the agent polls instead of rebooting in a loop);
- wiping (the answer to a ``wiping`` heartbeat) → wipe: the agent goes on with the wipe it is
  doing, and the next step comes with its outcome's report (its ``wiped`` report reads the
  binding; a heartbeat does not);
- bound → reboot (its next network boot serves the target Environment);
- not clean → wipe;
- clean and unbound → power off when a BMC can power it on again, else wait, polling, so a
  server without a BMC is reprovisioned as soon as it is allocated, without reboot loops.
"""

from __future__ import annotations

import datetime as dt

from arges.api.binding import ServerBinding
from arges.api.server import Server
from arges.wire import Instruction, WipeMode

POLL_SECONDS = 10

SEEN_EVERY = 60.0
"""Seconds between writes of a Server's ``lastSeen`` by reports that change nothing else."""


def instruct(
    server: Server,
    binding: ServerBinding | None,
    *,
    wipe_mode: WipeMode = "fast",
    wiping: bool = False,
) -> Instruction:
    """The next instruction for the agent running on ``server`` (see the module docstring);
    ``wiping``: the answer to a ``wiping`` heartbeat, whose ``binding`` is not read."""
    if not server.spec.accepted:
        return Instruction("wait", POLL_SECONDS, reason="not accepted yet")
    if wiping:
        return Instruction("wipe", wipe_mode=wipe_mode, reason="wiping: carry on")
    if binding is not None:
        return Instruction("reboot", reason="allocated: rebooting into the target environment")
    if not server.status.is_clean:
        return Instruction("wipe", wipe_mode=wipe_mode, reason="disks must be wiped")
    if server.spec.bmc is not None:
        return Instruction("poweroff", reason="clean and available: powering off")
    return Instruction("wait", POLL_SECONDS, reason="clean and available: waiting for allocation")


def seen_due(previous: dt.datetime | None, now: dt.datetime, every: float) -> bool:
    """Whether an agent's report at ``now`` writes ``lastSeen`` when it would write nothing
    else: when none is recorded (``previous`` None), the recorded one is at least ``every``
    seconds old, or it is later than ``now`` (the clock was stepped back).

    A report that writes anything else writes ``lastSeen`` too. So an idle or wiping agent,
    which reports every few seconds, costs a write (and its fan-out to every watch of the
    Server) once a minute, not every time, as kubelet posts an unchanged NodeStatus only
    every ``nodeStatusReportFrequency``. ``lastSeen`` is then at most ``every`` seconds
    plus one poll behind; the power rule "the agent is running" allows the reboot timeout
    (see :func:`seen_interval`).
    """
    if previous is None:
        return True
    return previous > now or (now - previous).total_seconds() >= every


def seen_interval(every: float, reboot_timeout: float) -> float:
    """The ``every`` of :func:`seen_due` for a plane whose power controller takes an agent
    unseen for ``reboot_timeout`` seconds to be gone (and power-cycles its server): the one
    configured, but at most a quarter of that timeout, so a running agent is never taken
    for a gone one."""
    return min(every, reboot_timeout / 4)
