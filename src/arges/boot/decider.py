"""The ``/ipxe`` decision made from cluster state, and the record that a server network-booted.

Reads the Server (by the UUID iPXE reports) and its ServerBinding from the API, its
ServerClass and the Environments from the boot port's mirrors (:mod:`arges.kube.informer`;
an answer of "not ready" is checked against the API's copy of the Environment first, so a
mirror a moment behind never makes a server wait), then applies
:func:`arges.metal.boot.decide`. The requester is vetted first
(:meth:`arges.access.guard.BootGuard.vet`): one that is not plausibly that server's firmware
gets a refusal (403) and changes nothing. An Environment to boot comes with a credential
minted for this boot (``agent`` or ``config``); any other answer spends the previous boot's.

Each answer is recorded on the Server as condition ``PXEBooted`` (what it was given, from
where, and when) together with the credential's record (its hash, the asking address, the
NIC, what DHCP saw). With a credential the write must succeed before the answer goes out
(else 503 and the server asks again, so no credential is handed out unrecorded); without
one it is best effort, and a failure to record never fails the boot.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from arges.access import credentials
from arges.access.guard import BootGuard, Refused
from arges.api.base import BootFromDiskMethod, ConditionStatus
from arges.api.binding import ServerBinding, releasing
from arges.api.environment import Environment
from arges.api.server import CredentialPurpose, Server
from arges.api.serverclass import ServerClass
from arges.boot.announce import announce_decision
from arges.boot.ipxe import BootAnswer
from arges.kube.client import KubeClient
from arges.kube.errors import KubeError, NotFound
from arges.kube.informer import Body, Informer
from arges.kube.resources import (
    ENVIRONMENTS,
    SERVER_BINDINGS,
    SERVER_CLASSES,
    SERVERS,
    Resource,
)
from arges.metal.boot import BootDecision, boot_reason, decide
from arges.metal.conditions import condition_patch
from arges.metal.stage import PXE_BOOTED

log = logging.getLogger(__name__)


class KubeBootDecider:
    r"""Decides from the Kubernetes API (the embedded one or a real one).

    ``environments`` and ``server_classes``: the boot port's mirrors of those resources
    (running :class:`~arges.kube.informer.Informer`\ s); by default informers that are never
    run, which read every time from the API.
    """

    def __init__(
        self,
        kube: KubeClient,
        guard: BootGuard,
        default_disk_method: BootFromDiskMethod = "ipxe-exit",
        *,
        environments: Informer | None = None,
        server_classes: Informer | None = None,
    ):
        self.kube = kube
        self.guard = guard
        self.default_disk_method = default_disk_method
        self.environments = environments or Informer(kube, ENVIRONMENTS)
        self.server_classes = server_classes or Informer(kube, SERVER_CLASSES)
        self._parsed: dict[str, tuple[str, Environment]] = {}

    async def decide(self, uuid: str, client: str, mac: str) -> BootAnswer:
        """The answer for the server ``uuid`` booting from NIC ``mac`` at address ``client``.

        Raises:
            KubeError: when the API cannot be read, or a credential cannot be recorded (the
                caller answers 503).
        """
        body = await self._body(SERVERS, uuid) if uuid else None
        server = Server.from_json(body) if body is not None else None
        binding = await self._binding(uuid) if server else None
        server_class = None
        if binding is not None and binding.spec.server_class_ref is not None:
            class_body = await self.server_classes.read(binding.spec.server_class_ref.name)
            server_class = ServerClass.from_json(class_body) if class_body is not None else None
        environments = self._parse(await self.environments.list())

        def decided() -> BootDecision:
            return decide(
                server,
                binding,
                server_class,
                environments,
                default_disk_method=self.default_disk_method,
            )

        decision = decided()
        if decision.kind == "not-ready" and decision.environment and self.environments.synced:
            # The mirror may not have the Environment's creation or its Ready condition yet:
            # the API's copy decides before a server is told to wait.
            fresh = await self._body(ENVIRONMENTS, decision.environment)
            if fresh is not None:
                environments[decision.environment] = Environment.from_json(fresh)
                decision = decided()
        env = environments.get(decision.environment or "")
        refused, seen = self.guard.vet(server, uuid, mac, client)
        if refused is not None:
            await self.guard.refused("/ipxe", "BootRefused", uuid, client, Refused(refused, body))
            return BootAnswer(decision, env, refused=refused)
        now = dt.datetime.now(dt.UTC)
        credential, patch = "", None
        if decision.kind == "environment":
            purpose: CredentialPurpose = "config" if decision.target else "agent"
            credential, patch = self.guard.issue(server, uuid, purpose, client, mac, seen, now)
        elif server is not None:
            patch = credentials.spent(server.status.boot_credential, "the server booted again")
        if server is not None:
            assert body is not None
            await self._record(server, body, decision, client, patch, now)
        return BootAnswer(decision, env, credential)

    async def _binding(self, uuid: str) -> ServerBinding | None:
        """The server's binding; one being deleted holds nothing (the server goes back to
        the agent to be wiped)."""
        body = await self._body(SERVER_BINDINGS, uuid)
        return None if body is None or releasing(body) else ServerBinding.from_json(body)

    async def _body(self, resource: Resource, name: str) -> dict[str, Any] | None:
        try:
            return await self.kube.get(resource, name)
        except NotFound:
            return None

    def _parse(self, bodies: list[Body]) -> dict[str, Environment]:
        """The Environments by name, each parsed once per resourceVersion (a mirror hands the
        same objects to every request)."""
        parsed: dict[str, tuple[str, Environment]] = {}
        for body in bodies:
            meta = body["metadata"]
            name, version = meta["name"], str(meta.get("resourceVersion", ""))
            held = self._parsed.get(name)
            env = held[1] if held is not None and held[0] == version else None
            parsed[name] = (version, env or Environment.from_json(body))
        self._parsed = parsed
        return {name: env for name, (_, env) in parsed.items()}

    async def _record(
        self,
        server: Server,
        body: dict[str, Any],
        decision: BootDecision,
        client: str,
        credential: dict[str, Any] | None,
        now: dt.datetime,
    ) -> None:
        """Record the decision as condition ``PXEBooted`` on ``server`` (``body``: as this
        request read it, the write's first try; a copy gone stale is refused and read again)."""
        what = (
            f"environment {decision.environment}"
            if decision.kind == "environment"
            else "boot from disk"
            if decision.kind == "disk"
            else f"nothing ({decision.reason})"
        )
        status: ConditionStatus = "True" if decision.kind != "not-ready" else "False"
        reason = boot_reason(decision)
        message = f"{now:%Y-%m-%dT%H:%M:%SZ}: {client} was given {what}"
        try:
            await self.kube.update_status(
                SERVERS,
                server.name,
                lambda obj: condition_patch(
                    obj, PXE_BOOTED, status, reason, message, now=now, extra=credential
                ),
                current=body,
            )
        except KubeError as exc:
            if credential is not None:
                raise
            log.info("could not record the network boot of %s: %s", server.name, exc)
        await announce_decision(self.kube, server, body, reason, what, decision.reason, client)
