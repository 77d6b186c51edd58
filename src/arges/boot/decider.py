"""The ``/ipxe`` decision made from cluster state, and the record that a server network-booted.

Reads the Server (by the UUID iPXE reports), its ServerBinding and ServerClass, and the
Environments, then applies :func:`arges.metal.boot.decide`. Each answer is recorded on the
Server as condition ``PXEBooted`` (what it was given, from where, and when), best effort: a
failure to record never fails the boot.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import TypeVar

from arges.api.base import BootFromDiskMethod, ConditionStatus
from arges.api.binding import ServerBinding, releasing
from arges.api.environment import Environment
from arges.api.server import Server
from arges.api.serverclass import ServerClass
from arges.boot.announce import announce_decision
from arges.kube.client import KubeClient
from arges.kube.errors import KubeError, NotFound
from arges.kube.resources import (
    ENVIRONMENTS,
    SERVER_BINDINGS,
    SERVER_CLASSES,
    SERVERS,
    Resource,
)
from arges.metal.boot import PXE_BOOTED, BootDecision, decide
from arges.metal.conditions import condition_patch

log = logging.getLogger(__name__)
_T = TypeVar("_T", Server, ServerBinding, ServerClass)


class KubeBootDecider:
    """Decides from the Kubernetes API (the embedded one or a real one)."""

    def __init__(self, kube: KubeClient, default_disk_method: BootFromDiskMethod = "ipxe-exit"):
        self.kube = kube
        self.default_disk_method = default_disk_method

    async def decide(self, uuid: str, client: str) -> tuple[BootDecision, Environment | None]:
        """The decision for the server ``uuid`` booting from address ``client``.

        Raises:
            KubeError: when the API cannot be read (the caller answers 503).
        """
        server = await self._get(Server, SERVERS, uuid) if uuid else None
        binding = await self._binding(uuid) if server else None
        server_class = None
        if binding is not None and binding.spec.server_class_ref is not None:
            server_class = await self._get(
                ServerClass, SERVER_CLASSES, binding.spec.server_class_ref.name
            )
        environments = {
            e["metadata"]["name"]: Environment.from_json(e)
            for e in await self.kube.list(ENVIRONMENTS)
        }
        decision = decide(
            server,
            binding,
            server_class,
            environments,
            default_disk_method=self.default_disk_method,
        )
        env = environments.get(decision.environment or "")
        if server is not None:
            await self._record(server, decision, client)
        return decision, env

    async def _binding(self, uuid: str) -> ServerBinding | None:
        """The server's binding; one being deleted holds nothing (the server goes back to
        the agent to be wiped)."""
        try:
            body = await self.kube.get(SERVER_BINDINGS, uuid)
        except NotFound:
            return None
        return None if releasing(body) else ServerBinding.from_json(body)

    async def _get(self, model: type[_T], resource: Resource, name: str) -> _T | None:
        try:
            return model.from_json(await self.kube.get(resource, name))
        except NotFound:
            return None

    async def _record(self, server: Server, decision: BootDecision, client: str) -> None:
        now = dt.datetime.now(dt.UTC)
        what = (
            f"environment {decision.environment}"
            if decision.kind == "environment"
            else "boot from disk"
            if decision.kind == "disk"
            else f"nothing ({decision.reason})"
        )
        status: ConditionStatus = "True" if decision.kind != "not-ready" else "False"
        reason = {"environment": "Target" if decision.target else "Agent", "disk": "Disk"}.get(
            decision.kind, "NotReady"
        )
        message = f"{now:%Y-%m-%dT%H:%M:%SZ}: {client} was given {what}"
        try:
            await self.kube.update_status(
                SERVERS,
                server.name,
                lambda obj: condition_patch(obj, PXE_BOOTED, status, reason, message, now=now),
            )
        except KubeError as exc:
            log.info("could not record the network boot of %s: %s", server.name, exc)
        await announce_decision(self.kube, server, reason, what, decision.reason, client)
