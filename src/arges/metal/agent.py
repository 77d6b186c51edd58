"""What the discovery agent on a server should do next: a pure function of the server's state.

- not accepted → wait (nothing destructive happens until a person accepts it; unlike Sidero,
  the agent polls instead of rebooting in a loop);
- bound → reboot (its next network boot serves the target Environment);
- not clean → wipe;
- clean and unbound → power off when a BMC can power it on again, else wait, polling, so a
  server without a BMC is reprovisioned as soon as it is allocated, without reboot loops.
"""

from __future__ import annotations

from arges.api.binding import ServerBinding
from arges.api.server import Server
from arges.wire import Instruction, WipeMode

POLL_SECONDS = 10


def instruct(
    server: Server, binding: ServerBinding | None, *, wipe_mode: WipeMode = "fast"
) -> Instruction:
    """The next instruction for the agent running on ``server``."""
    if not server.spec.accepted:
        return Instruction("wait", POLL_SECONDS, reason="not accepted yet")
    if binding is not None:
        return Instruction("reboot", reason="allocated: rebooting into the target environment")
    if not server.status.is_clean:
        return Instruction("wipe", wipe_mode=wipe_mode, reason="disks must be wiped")
    if server.spec.bmc is not None:
        return Instruction("poweroff", reason="clean and available: powering off")
    return Instruction("wait", POLL_SECONDS, reason="clean and available: waiting for allocation")
