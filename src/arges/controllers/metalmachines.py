"""The MetalMachine controller: the Cluster API InfraMachine contract on Arges' servers.

Following the contract's workflow (the Cluster API book, "Contract rules for InfraMachine"):

1. an object marked ``cluster.x-k8s.io/managed-by`` is left alone; while the Cluster or the
   object is paused only the ``Paused`` condition is written (no allocation, no release);
2. it waits for a Machine owner, the Cluster, the Cluster's infrastructure, and the Machine's
   bootstrap data (``spec.bootstrap.dataSecretName``), each shown as the reason of condition
   ``Ready=False`` (:func:`arges.metal.capi.machine_gate`); a finalizer
   (``metalmachine.infrastructure.cluster.x-k8s.io``, Sidero's) is added once owned;
3. a server is bound through a ServerBinding whose consumer is the MetalMachine, the same
   lock TalosClusters take, so no server is ever held twice: the one ``spec.serverRef`` pins,
   else one from ``spec.serverClassRef``'s ServerClass (clean, accepted, not cordoned); a
   binding left by a restart between the allocation and recording it is found again by the
   MetalMachine's uid (label ``metal.arges.dev/consumer-uid``), and one ``arges import sidero``
   left naming the MetalMachine before it was moved here (no uid yet) is adopted, its server
   untouched; no server available is condition ``ServerAllocated=False`` and another try when
   servers change;
4. ``spec.serverRef`` and ``spec.providerID`` (``arges://<uuid>``, or the one it already
   has, e.g. an imported Sidero machine's) are written, then the status: provisioned
   (``ready``, ``initialization.provisioned``), addresses from the server's inventory, and the
   binding's ``ConfigDelivered``/``Installed`` conditions; the power controller boots the server
   into its target, and the metadata service serves it the Machine's bootstrap data;
5. on deletion the binding is deleted (the server is wiped before reuse) and only once it is
   gone is the finalizer removed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging

from arges.api.base import ConditionStatus, LocalObjectReference, ObjectReference, SecretReference
from arges.api.binding import (
    CONFIG_DELIVERED,
    INSTALLED,
    RELEASE_FINALIZER,
    Role,
    ServerBinding,
    ServerBindingSpec,
    releasing,
)
from arges.api.server import Server
from arges.api.serverclass import ServerClass
from arges.controllers.allocation import allocate
from arges.controllers.capi import (
    CLUSTERS_WATCH,
    MACHINES_WATCH,
    InfrastructureController,
    infra_ref_key,
    patch_quietly,
    provisioned_status,
    with_finalizer,
    without_finalizer,
)
from arges.controllers.parsed import parsed
from arges.controllers.runtime import Body, Key, RetryLater, Watch, key_of
from arges.kube.errors import AlreadyExists, Conflict, NotFound
from arges.kube.resources import (
    METAL_MACHINES,
    SERVER_BINDINGS,
    SERVER_CLASSES,
    SERVERS,
)
from arges.metal.capi import (
    CLUSTER_NAME_LABEL,
    CONSUMER_UID_LABEL,
    addresses,
    cluster_name,
    data_secret_name,
    imported_binding,
    machine_gate,
    owner,
    paused,
    provider_id,
    role,
    server_class_name,
)
from arges.metal.classes import QualifierError
from arges.metal.conditions import find

log = logging.getLogger(__name__)

FINALIZER = "metalmachine.infrastructure.cluster.x-k8s.io"
SERVER_ALLOCATED = "ServerAllocated"
RETRY_ALLOCATION = 20.0
"""Seconds before trying again to find a server (server changes also trigger a try)."""


def _waiting(body: Body) -> bool:
    """Whether a (cached) MetalMachine still waits for a server."""
    return not ((body.get("spec") or {}).get("serverRef") or {}).get("name")


class MetalMachineController(InfrastructureController):
    """See the module docstring."""

    name = "metalmachines"
    workers = 4
    resource = METAL_MACHINES

    def watches(self) -> list[Watch]:
        def machine(event_type: str | None, body: Body) -> list[tuple[str, Key]]:
            return [(self.name, k) for k in infra_ref_key(body, "MetalMachine")]

        def cluster(event_type: str | None, body: Body) -> list[tuple[str, Key]]:
            meta = body.get("metadata") or {}
            return [
                (self.name, key_of(m))
                for m in self.cache.objects(METAL_MACHINES)
                if (m.get("metadata") or {}).get("namespace") == meta.get("namespace")
                and cluster_name(m) == meta.get("name")
            ]

        def binding(event_type: str | None, body: Body) -> list[tuple[str, Key]]:
            consumer = (body.get("spec") or {}).get("consumerRef") or {}
            if consumer.get("kind") != "MetalMachine":
                return []
            return [(self.name, f"{consumer.get('namespace')}/{consumer.get('name')}")]

        def waiting(event_type: str | None, body: Body) -> list[tuple[str, Key]]:
            return [
                (self.name, key_of(m)) for m in self.cache.objects(METAL_MACHINES) if _waiting(m)
            ]

        def server(event_type: str | None, body: Body) -> list[tuple[str, Key]]:
            held = self.cache.get(SERVER_BINDINGS, key_of(body))
            if held is not None:
                return binding(event_type, held)
            return waiting(event_type, body)

        return [
            Watch(METAL_MACHINES, self.own),
            Watch(MACHINES_WATCH, machine),
            Watch(CLUSTERS_WATCH, cluster),
            Watch(SERVER_BINDINGS, binding),
            Watch(SERVERS, server),
            Watch(SERVER_CLASSES, waiting),
        ]

    async def reconcile(self, key: Key) -> float | None:
        body = await self.fetch(key)
        if body is None:
            return None
        namespace = body["metadata"]["namespace"]
        ref = owner(body, "Machine")
        machine = await self.capi.machine(namespace, ref["name"]) if ref else None
        cluster_of = cluster_name(body) or (cluster_name(machine) if machine else "")
        cluster = await self.capi.cluster(namespace, cluster_of)
        now = dt.datetime.now(dt.UTC)
        if paused(cluster, body):
            await self.write_status(
                body, provisioned_status(body, ready=False, gate=None, paused=True, now=now)
            )
            return None
        if body["metadata"].get("deletionTimestamp"):
            return await self._finalize(body)
        if ref is not None:
            patch = with_finalizer(body, FINALIZER)
            if patch is not None:
                await patch_quietly(self.kube, METAL_MACHINES, body, patch)
                return None
        gate = machine_gate(body, machine, cluster)
        if gate is not None or machine is None or cluster is None:
            await self.write_status(
                body, provisioned_status(body, ready=False, gate=gate, paused=False, now=now)
            )
            return None
        held = await self._held(body)
        if held is None:
            held, why = await self._bind(body, machine, cluster_of)
            if held is None:
                extra: list[tuple[str, ConditionStatus, str, str]] = [
                    (SERVER_ALLOCATED, "False", why[0], why[1])
                ]
                status = provisioned_status(
                    body, ready=False, gate=None, paused=False, now=now, extra=extra
                )
                await self.write_status(body, status)
                return RETRY_ALLOCATION if why[0] == "NoServerAvailable" else None
        return await self._provisioned(body, held, now)

    # Binding

    async def _held(self, body: Body, *, released: bool = False) -> ServerBinding | None:
        """This MetalMachine's binding: the one its uid labels (a restart may have come
        between the allocation and ``spec.serverRef``), else one an import from Sidero left
        for it, which is adopted; one being deleted only with ``released``."""
        uid = body["metadata"]["uid"]
        found = await self.kube.list(SERVER_BINDINGS, label_selector=f"{CONSUMER_UID_LABEL}={uid}")
        for item in found:
            binding = ServerBinding.from_json(item)
            if binding.spec.consumer_ref.uid == uid and (released or not releasing(item)):
                return binding
        imported = imported_binding(self.cache.objects(SERVER_BINDINGS), body)
        return None if imported is None else await self._adopt(imported, body)

    async def _adopt(self, cached: Body, body: Body) -> ServerBinding | None:
        """Make an imported binding this MetalMachine's: its uid in the consumer reference and
        the label, written against the binding as it is now (a conflict is retried)."""
        name = cached["metadata"]["name"]
        try:
            current = await self.kube.get(SERVER_BINDINGS, name)
        except NotFound:
            return None
        if imported_binding([current], body) is None:
            return None
        uid = body["metadata"]["uid"]
        patch = {
            "metadata": {
                "labels": {CONSUMER_UID_LABEL: uid},
                "resourceVersion": current["metadata"]["resourceVersion"],
            },
            "spec": {"consumerRef": {"uid": uid}},
        }
        try:
            adopted = await self.kube.patch(SERVER_BINDINGS, name, patch)
        except Conflict as exc:
            raise RetryLater(f"binding {name} changed while being adopted") from exc
        meta = body["metadata"]
        log.info("%s/%s: adopted server %s (imported)", meta["namespace"], meta["name"], name)
        await self.kube.event(
            body, "ServerAdopted", f"adopted server {name}, bound to it in Sidero and imported"
        )
        return ServerBinding.from_json(adopted)

    async def _bind(
        self, body: Body, machine: Body, cluster: str
    ) -> tuple[ServerBinding | None, tuple[str, str]]:
        """Bind a server; returns the binding, or None and why not (reason, message)."""
        meta = body["metadata"]
        consumer = ObjectReference(
            api_version=body["apiVersion"],
            kind=body["kind"],
            name=meta["name"],
            namespace=meta["namespace"],
            uid=meta["uid"],
        )
        secret = SecretReference(name=data_secret_name(machine) or "", namespace=meta["namespace"])
        labels = {CLUSTER_NAME_LABEL: cluster, CONSUMER_UID_LABEL: meta["uid"]}
        spec = body.get("spec") or {}
        pinned = (spec.get("serverRef") or {}).get("name")
        if pinned:
            return await self._bind_pinned(str(pinned), consumer, role(machine), secret, labels)
        try:
            class_name = server_class_name(spec.get("serverClassRef"))
        except ValueError as exc:
            return None, ("InvalidServerClassRef", str(exc))
        if class_name is None:
            return None, (
                "NoServerClassRef",
                "set spec.serverClassRef (a ServerClass) or spec.serverRef (a Server)",
            )
        class_body = self.cache.get(SERVER_CLASSES, class_name)
        if class_body is None:
            return None, ("ServerClassNotFound", f"ServerClass {class_name} does not exist")
        servers = parsed(self.cache, SERVERS, Server).lazy()
        try:
            binding = await allocate(
                self.kube,
                ServerClass.from_json(class_body),
                servers,
                set(self.cache.names(SERVER_BINDINGS)),
                consumer=consumer,
                role=role(machine),
                config_secret=lambda _: secret,
                labels=labels,
            )
        except QualifierError as exc:
            return None, ("InvalidServerClass", f"ServerClass {class_name}: {exc}")
        if binding is None:
            return None, (
                "NoServerAvailable",
                f"ServerClass {class_name} has no clean, accepted, uncordoned server free",
            )
        log.info("%s/%s: bound server %s", meta["namespace"], meta["name"], binding.name)
        # The Event is lost by a kill after the binding: harmless, the binding is the record
        # (and the next reconcile finds it by this MetalMachine's uid).
        await self.kube.event(
            body, "ServerAllocated", f"bound server {binding.name} ({class_name})"
        )
        return binding, ("", "")

    async def _bind_pinned(
        self,
        server: str,
        consumer: ObjectReference,
        machine_role: Role,
        secret: SecretReference,
        labels: dict[str, str],
    ) -> tuple[ServerBinding | None, tuple[str, str]]:
        """Bind the server ``spec.serverRef`` names (as Sidero did, without the clean check:
        the user chose it)."""
        if self.cache.get(SERVERS, server) is None:
            return None, ("ServerNotFound", f"Server {server} does not exist")
        spec = ServerBindingSpec(
            server_ref=LocalObjectReference(name=server),
            consumer_ref=consumer,
            config_secret_ref=secret,
            role=machine_role,
        )
        try:
            created = await self.kube.create(
                SERVER_BINDINGS,
                {
                    "metadata": {
                        "name": server,
                        "labels": labels,
                        "finalizers": [RELEASE_FINALIZER],
                    },
                    "spec": spec.to_json(),
                },
            )
        except AlreadyExists:
            return None, ("ServerInUse", f"Server {server} is bound to something else")
        return ServerBinding.from_json(created), ("", "")

    # Status

    async def _provisioned(
        self, body: Body, binding: ServerBinding, now: dt.datetime
    ) -> float | None:
        server_name = binding.name
        spec = body.get("spec") or {}
        wanted = {
            "serverRef": {
                **(spec.get("serverRef") or {}),
                "apiVersion": "metal.arges.dev/v1alpha1",
                "kind": "Server",
                "name": server_name,
            },
            "providerID": spec.get("providerID") or provider_id(server_name),
        }
        if any(spec.get(k) != v for k, v in wanted.items()):
            # providerID and serverRef first, as the contract orders it; the status follows
            # from the next reconcile (this write is its event).
            await patch_quietly(
                self.kube,
                METAL_MACHINES,
                body,
                {
                    "metadata": {"resourceVersion": body["metadata"]["resourceVersion"]},
                    "spec": wanted,
                },
            )
            return None
        server_body = self.cache.get(SERVERS, server_name)
        server = Server.from_json(server_body) if server_body is not None else None
        extra: list[tuple[str, ConditionStatus, str, str]] = [
            (SERVER_ALLOCATED, "True", "Bound", f"server {server_name}")
        ]
        for kind in (CONFIG_DELIVERED, INSTALLED):
            found = find(binding.status.conditions, kind)
            if found is not None:
                extra.append((kind, found.status, found.reason, found.message))
        status = provisioned_status(body, ready=True, gate=None, paused=False, now=now, extra=extra)
        if server is not None:
            status["addresses"] = [a.to_json() for a in addresses(server)] or None
        await self.write_status(body, status)
        return None

    # Deletion

    async def _finalize(self, body: Body) -> float | None:
        """Release the server and wait until its binding is gone (the server recorded as
        released), then lift the finalizer (a kill between the two repeats the release,
        which finds nothing left to delete)."""
        held = await self._held(body, released=True)
        if held is not None:
            meta = body["metadata"]
            with contextlib.suppress(NotFound, Conflict):
                await self.kube.delete(SERVER_BINDINGS, held.name, uid=held.metadata.get("uid"))
                log.info("%s/%s: released %s", meta["namespace"], meta["name"], held.name)
                await self.kube.event(
                    body, "ServerReleased", f"released {held.name}; it is wiped before reuse"
                )
            return 1.0
        patch = without_finalizer(body, FINALIZER)
        if patch is not None:
            await patch_quietly(self.kube, METAL_MACHINES, body, patch)
        return None
