"""What a server gets when it network-boots: the ``/ipxe`` decision (``docs/architecture.md``,
"The boot path").

In order:

1. unknown or not accepted server → the agent Environment (discovery, nothing destructive);
2. accepted and not bound → the agent (it wipes a dirty server, and waits on a clean one);
3. bound and installed, unless ``pxeBootAlways`` → boot from disk, by the Server's method,
   else the ServerClass's, else the default;
4. bound (not installed, or ``pxeBootAlways``) → the target Environment: the Server's, else
   the ServerClass's, else ``default``, with ``talos.config=`` pointing at the metadata
   service;
5. whichever Environment was chosen, if its assets are not ready → not-ready (HTTP 412).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from arges.api.base import BootFromDiskMethod
from arges.api.binding import INSTALLED, ServerBinding
from arges.api.environment import AGENT_ENVIRONMENT, DEFAULT_ENVIRONMENT, Environment
from arges.api.server import Server
from arges.api.serverclass import ServerClass
from arges.metal.conditions import is_true
from arges.metal.stage import BootReason

DecisionKind = Literal["environment", "disk", "not-ready"]


@dataclass(frozen=True)
class BootDecision:
    """The outcome of :func:`decide`.

    ``kind``: ``environment`` (boot ``environment``; ``target`` tells the Talos target from
    the agent), ``disk`` (tell the firmware to boot from disk by ``disk_method``), or
    ``not-ready`` (the Environment cannot be served yet). ``reason`` says why, for logs,
    conditions and the 412 body.
    """

    kind: DecisionKind
    reason: str
    environment: str | None = None
    target: bool = False
    disk_method: BootFromDiskMethod | None = None


def boot_reason(decision: BootDecision) -> BootReason:
    """The ``PXEBooted`` reason recording ``decision``."""
    if decision.kind == "environment":
        return BootReason.TARGET if decision.target else BootReason.AGENT
    if decision.kind == "disk":
        return BootReason.DISK
    return BootReason.NOT_READY


def ready(env: Environment | None) -> bool:
    """Whether an Environment's assets are cached and verified (condition Ready)."""
    return env is not None and is_true(env.status.conditions, "Ready")


def decide(
    server: Server | None,
    binding: ServerBinding | None,
    server_class: ServerClass | None,
    environments: Mapping[str, Environment],
    *,
    default_disk_method: BootFromDiskMethod = "ipxe-exit",
) -> BootDecision:
    """The boot decision for one PXE request (see the module docstring)."""
    if server is None:
        return _serve(environments, AGENT_ENVIRONMENT, False, "unknown server: discovery")
    if not server.spec.accepted:
        return _serve(environments, AGENT_ENVIRONMENT, False, "server is not accepted")
    if binding is None:
        why = "server is clean and unallocated" if server.status.is_clean else "server needs a wipe"
        return _serve(environments, AGENT_ENVIRONMENT, False, why)
    installed = is_true(binding.status.conditions, INSTALLED)
    if installed and not server.spec.pxe_boot_always:
        method = (
            server.spec.boot_from_disk_method
            or (server_class.spec.boot_from_disk_method if server_class else None)
            or default_disk_method
        )
        return BootDecision("disk", "server is installed", disk_method=method)
    name = (
        (server.spec.environment_ref.name if server.spec.environment_ref else None)
        or (
            server_class.spec.environment_ref.name
            if server_class and server_class.spec.environment_ref
            else None
        )
        or DEFAULT_ENVIRONMENT
    )
    why = "pxeBootAlways is set" if installed else "server is allocated and not yet installed"
    return _serve(environments, name, True, why)


def _serve(
    environments: Mapping[str, Environment], name: str, target: bool, reason: str
) -> BootDecision:
    env = environments.get(name)
    if env is None:
        return BootDecision("not-ready", f"environment {name!r} does not exist", environment=name)
    if not ready(env):
        return BootDecision("not-ready", f"environment {name!r} is not ready", environment=name)
    return BootDecision("environment", reason, environment=name, target=target)
