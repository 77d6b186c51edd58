"""The TalosCluster controller: from one declaration to provisioned, bootstrapped members.

Per cluster, level-triggered (every step reads the current state and is safe to repeat):

1. a finalizer, so deleting the cluster releases its servers first;
2. the secrets bundle, created once (Secret ``<cluster>-secrets``, key ``secrets.yaml``) and
   never regenerated, and the admin ``talosconfig`` (Secret ``<cluster>-talosconfig``), whose
   endpoints follow the control-plane members' addresses;
3. each pool's machine config rendered from the bundle with the cluster's then the pool's
   patches (the ServerClass's and the Server's are applied at delivery by the metadata
   service); a spec that cannot render marks ``ConfigValid=False`` and allocates nothing;
4. membership: a pool that shrank releases its surplus (a control plane that runs leaves
   etcd first, through the Talos API), a pool that grew binds servers from its ServerClass
   through ServerBindings (the binding is the lock: never two clusters on one server); too
   few servers is condition ``InsufficientServers`` naming the class and the shortfall, and a
   change to any unbound Server triggers another attempt (a member's changes go to its own
   cluster only);
5. each member's config Secret (``<cluster>-config-<server>``, key ``config``), written
   once per membership and owned by its ServerBinding, recording the binding, role and pool
   it was rendered for (:mod:`arges.metal.memberconfig`): a leftover of an earlier
   membership is rendered anew, and config Secrets of ended memberships are deleted; the
   power controller then boots the server into its target Environment;
6. etcd bootstrapped once, on the oldest control plane, when it is installed (Talos
   ``Bootstrap``, AlreadyExists meaning done), recorded as condition ``Bootstrapped``; then
   the admin kubeconfig fetched once (Talos ``Kubeconfig``) into ``<cluster>-kubeconfig``;
7. status: phase, members and their states, ready/desired counts, conditions.

The cluster and its members are read from the API (ServerBindings by the labels naming the
cluster and pool) rather than from the watch cache, so a reconcile right after an allocation
never counts short and allocates twice, nor misses that etcd was just bootstrapped. Deletion
releases every member, removes the cluster's Secrets, and only then lifts the finalizer. A
member is Ready once it is installed and its Talos API answers (checked at most every
``probe_interval`` seconds).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml

from arges.api.base import Condition, ConditionStatus, ObjectReference, SecretReference
from arges.api.binding import CONFIG_KEY, INSTALLED, ServerBinding, releasing
from arges.api.cluster import Member, TalosCluster
from arges.api.server import Server
from arges.api.serverclass import ServerClass
from arges.controllers import clustermemo
from arges.controllers.allocation import allocate
from arges.controllers.clustermemo import Memo
from arges.controllers.parsed import parsed
from arges.controllers.patchsecrets import secret_patch_sets, uses_secrets
from arges.controllers.relevance import Facts, member_facts
from arges.controllers.runtime import Body, Cache, Controller, Key, Watch, key_of
from arges.kube.client import KubeClient
from arges.kube.errors import AlreadyExists, Conflict, NotFound
from arges.kube.resources import (
    SECRETS,
    SERVER_BINDINGS,
    SERVER_CLASSES,
    SERVERS,
    TALOS_CLUSTERS,
)
from arges.metal.classes import QualifierError
from arges.metal.clusters import (
    MemberView,
    PoolRequest,
    bootstrap_member,
    member_state,
    phase,
    pools,
    readiness,
    surplus,
)
from arges.metal.conditions import is_true, set_condition
from arges.metal.memberconfig import (
    CLUSTER_LABEL,
    MEMBER_LABEL,
    POOL_LABEL,
    metadata_for,
    mismatch,
    orphans,
    record_of,
)
from arges.talos.api import TalosApi
from arges.talos.configgen import DEFAULT_INSTALL_DISK, ClusterInput
from arges.talos.errors import TalosApiError, TalosError
from arges.talos.patches import PatchSet, patch_set
from arges.talos.render import render
from arges.talos.secrets import SecretsBundle, generate
from arges.talos.talosconfig import ClientCredentials, talosconfig

log = logging.getLogger(__name__)

FINALIZER = "cluster.arges.dev/talos-cluster"
NAMESPACE_LABEL = "cluster.arges.dev/cluster-namespace"
BUNDLE_KEY = "secrets.yaml"
TALOSCONFIG_KEY = "talosconfig"
KUBECONFIG_KEY = "kubeconfig"

CONFIG_VALID = "ConfigValid"
INSUFFICIENT = "InsufficientServers"
BOOTSTRAPPED = "Bootstrapped"
KUBECONFIG = "KubeconfigAvailable"
SCALE_DOWN = "ScaleDown"

TalosApiFactory = Callable[[ClientCredentials], TalosApi]


def secrets_name(cluster: str) -> str:
    return f"{cluster}-secrets"


def talosconfig_name(cluster: str) -> str:
    return f"{cluster}-talosconfig"


def kubeconfig_name(cluster: str) -> str:
    return f"{cluster}-kubeconfig"


def config_name(cluster: str, server: str) -> str:
    return f"{cluster}-config-{server}"


def _short(cluster: Body) -> bool:
    """Whether a cluster (as cached) waits for servers (condition InsufficientServers)."""
    conditions = (cluster.get("status") or {}).get("conditions") or []
    return any(c.get("type") == INSUFFICIENT and c.get("status") == "True" for c in conditions)


def address_of(server: Server | None) -> str | None:
    """The server's first InternalIP (where its Talos API listens), if known."""
    for addr in (server.status.addresses or []) if server is not None else []:
        if addr.type == "InternalIP":
            return addr.address
    return None


@dataclass
class _Round:
    """What one reconcile learned and decided, folded into the status at the end."""

    conditions: list[Condition]
    now: dt.datetime
    generation: int | None
    requeue: bool = False

    def set(self, kind: str, status: ConditionStatus, reason: str, message: str) -> None:
        self.conditions = set_condition(
            self.conditions,
            kind,
            status,
            reason,
            message,
            now=self.now,
            observed_generation=self.generation,
        )

    def clear(self, kind: str) -> None:
        self.conditions = [c for c in self.conditions if c.type != kind]


class TalosClusterController(Controller):
    """See the module docstring."""

    name = "talosclusters"
    workers = 2

    def __init__(
        self,
        kube: KubeClient,
        cache: Cache,
        *,
        talos_api: TalosApiFactory = TalosApi,
        talos_port: int = 50000,
        recheck: float = 10.0,
        probe_interval: float = 10.0,
    ) -> None:
        super().__init__(kube, cache)
        self.talos_api = talos_api
        self.talos_port = talos_port
        self.recheck = recheck
        self.probe_interval = probe_interval
        self._probes: dict[str, tuple[float, bool]] = {}
        self._member_facts = Facts(member_facts)
        self._configs: Memo[dict[str, str]] = Memo()
        self._apis: Memo[TalosApi] = Memo(64)

    def watches(self) -> list[Watch]:
        def own(event_type: str | None, body: Body) -> list[tuple[str, Key]]:
            return [(self.name, key_of(body))]

        def owner(event_type: str | None, body: Body) -> list[tuple[str, Key]]:
            labels = (body.get("metadata") or {}).get("labels") or {}
            if CLUSTER_LABEL in labels and NAMESPACE_LABEL in labels:
                return [(self.name, f"{labels[NAMESPACE_LABEL]}/{labels[CLUSTER_LABEL]}")]
            return []

        def every_cluster(event_type: str | None, body: Body) -> list[tuple[str, Key]]:
            return [(self.name, k) for k in self.cache.names(TALOS_CLUSTERS)]

        def server(event_type: str | None, body: Body) -> list[tuple[str, Key]]:
            # A member's change concerns its cluster when it changes what the cluster reads
            # of it; any other server only the clusters waiting for servers, and only when
            # it could be allocated (a reconcile renders configs: not for every heartbeat).
            binding = self.cache.get(SERVER_BINDINGS, key_of(body))
            changed = self._member_facts.changed(event_type, body)
            if binding is not None:
                return owner(event_type, binding) if changed else []
            if not (body.get("status") or {}).get("isClean"):
                return []
            return [
                (self.name, key_of(c))
                for c in self.cache.objects(TALOS_CLUSTERS)
                if _short(c) or not (c.get("status") or {}).get("phase")
            ]

        return [
            Watch(TALOS_CLUSTERS, own),
            Watch(SERVER_BINDINGS, owner),
            Watch(SERVERS, server),
            Watch(SERVER_CLASSES, every_cluster),
        ]

    async def reconcile(self, key: Key) -> float | None:
        if self.cache.get(TALOS_CLUSTERS, key) is None:
            return None
        namespace, _, name = key.partition("/")
        try:
            # Fresh, not from the cache: the conditions recorded by the previous reconcile
            # (Bootstrapped above all) must be seen even if the watch has not caught up.
            body = await self.kube.get(TALOS_CLUSTERS, name, namespace)
        except NotFound:
            return None
        cluster = TalosCluster.from_json(body)
        meta = body["metadata"]
        bindings = await self._bindings(cluster)
        if meta.get("deletionTimestamp"):
            return await self._finalize(cluster, body, bindings)
        finalizers = list(meta.get("finalizers") or [])
        if FINALIZER not in finalizers:
            await self.kube.patch(
                TALOS_CLUSTERS,
                cluster.name,
                {
                    "metadata": {
                        "finalizers": [*finalizers, FINALIZER],
                        "resourceVersion": meta["resourceVersion"],
                    }
                },
                cluster.namespace,
            )
            return None
        state = _Round(
            list(cluster.status.conditions or []),
            dt.datetime.now(dt.UTC),
            meta.get("generation"),
        )
        bundle = await self._bundle(cluster)
        try:
            requests = pools(cluster.spec)
            from_secrets = await secret_patch_sets(self.kube, cluster)
            # Rendered configs are kept by what they are made of; patches from Secrets are
            # read each time (Secrets are not watched), so those clusters render each time.
            configs = (
                self._render(cluster, bundle, requests, from_secrets)
                if from_secrets
                else self._configs.get(
                    (meta.get("uid"), meta.get("generation"), bundle),
                    lambda: self._render(cluster, bundle, requests, {}),
                )
            )
        except (ValueError, TalosError) as exc:
            state.set(CONFIG_VALID, "False", "InvalidSpec", str(exc))
            await self._write_status(cluster, body, [], "Failed", state)
            # Secrets are not watched: one that patchesFrom names may appear or be fixed.
            return self.recheck if uses_secrets(cluster) else None
        state.set(CONFIG_VALID, "True", "Rendered", "every pool's machine config renders")
        servers = parsed(self.cache, SERVERS, Server).all()
        creds = await self._talosconfig(cluster, bundle, bindings, servers)
        api = self._apis.get((self.talos_api, creds), lambda: self.talos_api(creds))
        views = await self._views(api, bindings, servers)
        bootstrapped = is_true(state.conditions, BOOTSTRAPPED)
        released = await self._scale_down(
            cluster, api, requests, views, bindings, servers, bootstrapped, state
        )
        views = [v for v in views if v.server not in released]
        bindings = [b for b in bindings if b.name not in released]
        added = await self._scale_up(cluster, requests, views, servers, state)
        bindings += added
        views += [self._view(b, servers.get(b.name), False) for b in added]
        await self._sweep(cluster, bindings)
        for binding in bindings:
            pool = binding.labels.get(POOL_LABEL, "")
            if pool in configs:
                await self._member_config(cluster, binding, pool, configs[pool])
        await self._bootstrap(cluster, api, views, servers, state)
        was_running = cluster.status.phase in ("Running", "Scaling")
        current = phase(requests, views, deleting=False, was_running=was_running)
        if current != "Running":
            state.requeue = True
        await self._write_status(cluster, body, views, current, state, requests)
        return self.recheck if state.requeue else None

    # Members

    async def _bindings(
        self, cluster: TalosCluster, *, released: bool = False
    ) -> list[ServerBinding]:
        """The cluster's members' bindings; those being deleted (members already released)
        only with ``released``."""
        selector = f"{CLUSTER_LABEL}={cluster.name},{NAMESPACE_LABEL}={cluster.namespace}"
        uid = cluster.metadata.get("uid")
        out = []
        for item in await self.kube.list(SERVER_BINDINGS, label_selector=selector):
            binding = ServerBinding.from_json(item)
            consumer = binding.spec.consumer_ref
            if consumer.kind != "TalosCluster" or consumer.uid not in (None, uid):
                continue
            if released or not releasing(item):
                out.append(binding)
        return sorted(out, key=lambda b: b.name)

    def _view(self, binding: ServerBinding, server: Server | None, answers: bool) -> MemberView:
        created = binding.metadata.get("creationTimestamp")
        when = (
            dt.datetime.fromisoformat(created.replace("Z", "+00:00"))
            if isinstance(created, str)
            else dt.datetime.now(dt.UTC)
        )
        return MemberView(
            server=binding.name,
            pool=binding.labels.get(POOL_LABEL, ""),
            role=binding.spec.role or "worker",
            created=when,
            state=member_state(binding, server, talos_answers=answers),
        )

    async def _views(
        self, api: TalosApi, bindings: list[ServerBinding], servers: dict[str, Server]
    ) -> list[MemberView]:
        installed = [b for b in bindings if is_true(b.status.conditions, INSTALLED)]
        answers = await asyncio.gather(
            *(self._answers(api, b.name, address_of(servers.get(b.name))) for b in installed)
        )
        by_name = dict(zip((b.name for b in installed), answers, strict=True))
        return [self._view(b, servers.get(b.name), by_name.get(b.name, False)) for b in bindings]

    async def _answers(self, api: TalosApi, server: str, address: str | None) -> bool:
        """Whether the member's Talos API answers (cached for ``probe_interval`` seconds)."""
        if address is None:
            return False
        seen = self._probes.get(server)
        if seen is not None and time.monotonic() - seen[0] < self.probe_interval:
            return seen[1]
        try:
            await api.version(address, self.talos_port)
            ok = True
        except TalosApiError:
            ok = False
        self._probes[server] = (time.monotonic(), ok)
        return ok

    async def _scale_down(
        self,
        cluster: TalosCluster,
        api: TalosApi,
        requests: list[PoolRequest],
        views: list[MemberView],
        bindings: list[ServerBinding],
        servers: dict[str, Server],
        bootstrapped: bool,
        state: _Round,
    ) -> set[str]:
        names = {r.name for r in requests}
        going = [v for v in views if v.pool not in names]
        for request in requests:
            going += surplus([v for v in views if v.pool == request.name], request.replicas)
        uids = {b.name: b.metadata.get("uid") for b in bindings}
        released: set[str] = set()
        blocked: list[str] = []
        for view in going:
            if view.role == "controlplane" and view.installed and bootstrapped:
                address = address_of(servers.get(view.server))
                if address is None:
                    blocked.append(f"{view.server}: no address is known for its Talos API")
                    continue
                # Leaving etcd and the release are two steps: a kill between them leaves a
                # member that left etcd still bound, and the next reconcile picks it again
                # (the same surplus order) and asks it to leave once more before releasing.
                try:
                    await api.leave_etcd(address, self.talos_port)
                except TalosApiError as exc:
                    blocked.append(f"{view.server}: {exc}")
                    continue
            await self._release(cluster, view.server, uids.get(view.server))
            released.add(view.server)
        if blocked:
            state.set(
                SCALE_DOWN,
                "False",
                "EtcdLeaveFailed",
                "waiting for control planes to leave etcd before release: " + "; ".join(blocked),
            )
            state.requeue = True
        else:
            state.clear(SCALE_DOWN)
        return released

    async def _release(self, cluster: TalosCluster, server: str, uid: str | None) -> None:
        # The member's config goes before its binding: a kill between the two leaves a
        # binding without a config (the next reconcile releases it again; /configdata
        # answers 404 meanwhile), never a config that outlives its membership. The Event
        # after the binding's deletion is lost by a kill there, and nothing depends on it.
        with contextlib.suppress(NotFound):
            await self.kube.delete(SECRETS, config_name(cluster.name, server), cluster.namespace)
        with contextlib.suppress(NotFound, Conflict):
            await self.kube.delete(SERVER_BINDINGS, server, uid=uid)
            log.info("%s/%s: released %s", cluster.namespace, cluster.name, server)
            await self.kube.event(
                cluster.to_json(), "Released", f"released {server}; it is wiped before reuse"
            )
        self._probes.pop(server, None)

    async def _scale_up(
        self,
        cluster: TalosCluster,
        requests: list[PoolRequest],
        views: list[MemberView],
        servers: dict[str, Server],
        state: _Round,
    ) -> list[ServerBinding]:
        consumer = ObjectReference(
            api_version=cluster.api_version,
            kind=cluster.kind,
            name=cluster.name,
            namespace=cluster.namespace,
            uid=cluster.metadata.get("uid"),
        )
        bound = set(self.cache.names(SERVER_BINDINGS)) | {v.server for v in views}
        added: list[ServerBinding] = []
        shortfalls: list[str] = []
        for request in requests:
            need = request.replicas - sum(1 for v in views if v.pool == request.name)
            if need <= 0:
                continue
            class_body = self.cache.get(SERVER_CLASSES, request.server_class)
            if class_body is None:
                shortfalls.append(
                    f"pool {request.name}: ServerClass {request.server_class} does not exist"
                )
                continue
            server_class = ServerClass.from_json(class_body)
            got = 0
            try:
                while got < need:
                    binding = await allocate(
                        self.kube,
                        server_class,
                        list(servers.values()),
                        bound,
                        consumer=consumer,
                        role=request.role,
                        config_secret=lambda s: SecretReference(
                            name=config_name(cluster.name, s), namespace=cluster.namespace
                        ),
                        labels={
                            CLUSTER_LABEL: cluster.name,
                            NAMESPACE_LABEL: cluster.namespace,
                            POOL_LABEL: request.name,
                        },
                    )
                    if binding is None:
                        break
                    # The Event below is lost by a kill after the binding: harmless, the
                    # binding is the record of the allocation.
                    bound.add(binding.name)
                    added.append(binding)
                    got += 1
                    log.info(
                        "%s/%s: bound %s to pool %s",
                        cluster.namespace,
                        cluster.name,
                        binding.name,
                        request.name,
                    )
                    await self.kube.event(
                        cluster.to_json(),
                        "Allocated",
                        f"bound server {binding.name} to pool {request.name} ({request.role})",
                    )
            except QualifierError as exc:
                shortfalls.append(f"pool {request.name}: ServerClass {request.server_class}: {exc}")
                continue
            if got < need:
                shortfalls.append(
                    f"pool {request.name}: ServerClass {request.server_class} has "
                    f"{need - got} server(s) too few available"
                )
        if shortfalls:
            state.set(INSUFFICIENT, "True", "NotEnoughServers", "; ".join(shortfalls))
            state.requeue = True
        else:
            state.set(INSUFFICIENT, "False", "Enough", "every pool has its servers")
        return added

    # Secrets

    def _owned(self, cluster: TalosCluster, name: str, key: str, value: str) -> dict[str, Any]:
        return {
            "metadata": {
                "name": name,
                "labels": {CLUSTER_LABEL: cluster.name},
                "ownerReferences": [
                    {
                        "apiVersion": cluster.api_version,
                        "kind": cluster.kind,
                        "name": cluster.name,
                        "uid": cluster.metadata.get("uid"),
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "type": "Opaque",
            "stringData": {key: value},
        }

    async def _read(self, cluster: TalosCluster, name: str, key: str) -> str | None:
        try:
            secret = await self.kube.get(SECRETS, name, cluster.namespace)
        except NotFound:
            return None
        encoded = (secret.get("data") or {}).get(key)
        if not encoded:
            return None
        return base64.b64decode(encoded).decode()

    async def _create_once(
        self, cluster: TalosCluster, name: str, key: str, make: Callable[[], str]
    ) -> str:
        """The value of ``key`` in Secret ``name``, created from ``make()`` if absent (a
        racing creator's value wins, so the value never changes once written)."""
        existing = await self._read(cluster, name, key)
        if existing is not None:
            return existing
        value = make()
        try:
            await self.kube.create(
                SECRETS, self._owned(cluster, name, key, value), cluster.namespace
            )
        except AlreadyExists:
            again = await self._read(cluster, name, key)
            if again is None:
                raise
            return again
        return value

    async def _bundle(self, cluster: TalosCluster) -> SecretsBundle:
        text = await self._create_once(
            cluster, secrets_name(cluster.name), BUNDLE_KEY, lambda: generate().to_yaml()
        )
        return clustermemo.bundle(text)

    async def _talosconfig(
        self,
        cluster: TalosCluster,
        bundle: SecretsBundle,
        bindings: list[ServerBinding],
        servers: dict[str, Server],
    ) -> ClientCredentials:
        name = talosconfig_name(cluster.name)
        text = await self._create_once(
            cluster, name, TALOSCONFIG_KEY, lambda: talosconfig(bundle, cluster.name)
        )
        endpoints = sorted(
            a
            for b in bindings
            if b.spec.role == "controlplane"
            for a in [address_of(servers.get(b.name))]
            if a is not None
        )
        if clustermemo.endpoints(text) != tuple(endpoints):
            doc = yaml.safe_load(text)
            doc["contexts"][doc["context"]]["endpoints"] = endpoints
            text = yaml.safe_dump(doc, sort_keys=False, indent=4)
            await self.kube.patch(
                SECRETS, name, {"stringData": {TALOSCONFIG_KEY: text}}, cluster.namespace
            )
        return clustermemo.client_credentials(text)

    def _render(
        self,
        cluster: TalosCluster,
        bundle: SecretsBundle,
        requests: list[PoolRequest],
        from_secrets: dict[str, list[PatchSet]],
    ) -> dict[str, str]:
        """Each pool's machine config (cluster patches, then the pool's, then those of the
        pool's ``patchesFrom``).

        Raises:
            TalosError: an endpoint, version or patch that cannot be used.
        """
        spec = cluster.spec
        inputs = ClusterInput(
            cluster_name=cluster.name,
            endpoint=spec.endpoint,
            talos_version=spec.talos_version,
            kubernetes_version=spec.kubernetes_version,
            install_disk=spec.install_disk or DEFAULT_INSTALL_DISK,
        )
        cluster_set = patch_set(
            f"TalosCluster {cluster.name}",
            [p.to_json() for p in spec.config_patches or []],
            list(spec.strategic_patches or []),
        )
        specs = {"controlplane": spec.control_plane} | {w.name: w for w in spec.workers or []}
        out = {}
        for request in requests:
            pool = specs[request.name]
            pool_set: PatchSet = patch_set(
                f"pool {request.name}",
                [p.to_json() for p in pool.config_patches or []],
                list(pool.strategic_patches or []),
            )
            sets = [cluster_set, pool_set, *from_secrets.get(request.name, [])]
            out[request.name] = render(bundle, request.role, inputs, sets)
        return out

    async def _member_config(
        self, cluster: TalosCluster, binding: ServerBinding, pool: str, config: str
    ) -> None:
        """Write the member's config Secret once per membership: created when missing,
        rendered anew when it was rendered for another binding, role or pool (an earlier
        membership's leftover), kept otherwise (configs are not rolled out to members)."""
        name = config_name(cluster.name, binding.name)
        labels, annotations, owners = metadata_for(binding, cluster.name, pool, config)
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": name,
                "namespace": cluster.namespace,
                "labels": labels,
                "annotations": annotations,
                "ownerReferences": owners,
            },
            "type": "Opaque",
            "stringData": {CONFIG_KEY: config},
        }
        try:
            existing = await self.kube.get(SECRETS, name, cluster.namespace)
        except NotFound:
            # A racing writer's Secret is checked by the next reconcile.
            with contextlib.suppress(AlreadyExists):
                await self.kube.create(SECRETS, body, cluster.namespace)
            return
        why = mismatch(record_of(existing), binding)
        if why is None:
            return
        log.info("%s/%s: rendering %s anew: %s", cluster.namespace, cluster.name, name, why)
        body["metadata"]["resourceVersion"] = existing["metadata"]["resourceVersion"]
        with contextlib.suppress(Conflict, NotFound):
            await self.kube.replace(SECRETS, body)

    async def _sweep(self, cluster: TalosCluster, bindings: list[ServerBinding]) -> None:
        """Delete the member configs whose membership is over (a release cut short, a
        binding deleted by hand); their owner reference lets the garbage collector do the
        same, this does not wait for it."""
        selector = f"{CLUSTER_LABEL}={cluster.name},{MEMBER_LABEL}"
        secrets = await self.kube.list(SECRETS, cluster.namespace, label_selector=selector)
        uids = {s["metadata"]["name"]: s["metadata"].get("uid") for s in secrets}
        for name in orphans(secrets, bindings):
            log.info(
                "%s/%s: removing %s, left by an ended membership",
                cluster.namespace,
                cluster.name,
                name,
            )
            with contextlib.suppress(NotFound, Conflict):
                await self.kube.delete(SECRETS, name, cluster.namespace, uid=uids[name])

    # Bootstrap and kubeconfig

    async def _bootstrap(
        self,
        cluster: TalosCluster,
        api: TalosApi,
        views: list[MemberView],
        servers: dict[str, Server],
        state: _Round,
    ) -> None:
        first = bootstrap_member(views)
        if first is None:
            return
        address = address_of(servers.get(first.server))
        if not is_true(state.conditions, BOOTSTRAPPED):
            if not first.installed:
                state.set(
                    BOOTSTRAPPED,
                    "False",
                    "WaitingForInstall",
                    f"etcd is bootstrapped on {first.server} once it is installed",
                )
                return
            if address is None:
                state.set(
                    BOOTSTRAPPED,
                    "False",
                    "NoAddress",
                    f"no address is known for {first.server}'s Talos API",
                )
                state.requeue = True
                return
            try:
                fresh = await api.bootstrap(address, self.talos_port)
            except TalosApiError as exc:
                state.set(
                    BOOTSTRAPPED,
                    "False",
                    "TalosApiNotReady",
                    f"bootstrap on {first.server} ({address}) failed, retrying: {exc}",
                )
                state.requeue = True
                return
            what = "bootstrapped" if fresh else "found already bootstrapped"
            state.set(BOOTSTRAPPED, "True", "Bootstrapped", f"etcd {what} on {first.server}")
            await self.kube.event(
                cluster.to_json(), "Bootstrapped", f"etcd {what} on {first.server}"
            )
        if await self._read(cluster, kubeconfig_name(cluster.name), KUBECONFIG_KEY) is not None:
            state.set(KUBECONFIG, "True", "Fetched", "the admin kubeconfig is in its Secret")
            return
        if address is None:
            state.set(KUBECONFIG, "False", "NoAddress", f"no address is known for {first.server}")
            state.requeue = True
            return
        try:
            kubeconfig = await api.kubeconfig(address, self.talos_port)
        except TalosApiError as exc:
            state.set(KUBECONFIG, "False", "TalosApiNotReady", f"fetching it failed: {exc}")
            state.requeue = True
            return
        await self._create_once(
            cluster, kubeconfig_name(cluster.name), KUBECONFIG_KEY, lambda: kubeconfig
        )
        state.set(KUBECONFIG, "True", "Fetched", "the admin kubeconfig is in its Secret")

    # Deletion and status

    async def _finalize(
        self, cluster: TalosCluster, body: Body, bindings: list[ServerBinding]
    ) -> float | None:
        finalizers = list(body["metadata"].get("finalizers") or [])
        if FINALIZER not in finalizers:
            return None
        # Release every member, then the cluster's Secrets, then the finalizer: a kill at any
        # point leaves the finalizer, so the next reconcile repeats what is left.
        for binding in bindings:
            await self._release(cluster, binding.name, binding.metadata.get("uid"))
        if await self._bindings(cluster, released=True):
            return 1.0
        await self._sweep(cluster, [])
        for name in (
            secrets_name(cluster.name),
            talosconfig_name(cluster.name),
            kubeconfig_name(cluster.name),
        ):
            with contextlib.suppress(NotFound):
                await self.kube.delete(SECRETS, name, cluster.namespace)
        rest = [f for f in finalizers if f != FINALIZER]
        with contextlib.suppress(NotFound):
            await self.kube.patch(
                TALOS_CLUSTERS,
                cluster.name,
                {
                    "metadata": {
                        "finalizers": rest or None,
                        "resourceVersion": body["metadata"]["resourceVersion"],
                    }
                },
                cluster.namespace,
            )
        log.info("%s/%s: deleted; every member released", cluster.namespace, cluster.name)
        return None

    async def _write_status(
        self,
        cluster: TalosCluster,
        body: Body,
        views: list[MemberView],
        current: str,
        state: _Round,
        requests: list[PoolRequest] | None = None,
    ) -> None:
        def desired(role: str) -> int:
            return sum(r.replicas for r in requests or [] if r.role == role)

        has_kubeconfig = is_true(state.conditions, KUBECONFIG)
        status: dict[str, Any] = {
            "phase": current,
            "controlPlanes": readiness(views, "controlplane", desired("controlplane")),
            "workerCount": readiness(views, "worker", desired("worker")),
            "members": [
                Member(server=v.server, role=v.role, pool=v.pool, state=v.state).to_json()
                for v in sorted(views, key=lambda v: (v.pool, v.server))
            ],
            "talosconfigSecret": talosconfig_name(cluster.name),
            "kubeconfigSecret": kubeconfig_name(cluster.name) if has_kubeconfig else None,
            "observedGeneration": state.generation,
            "conditions": [c.to_json() for c in state.conditions],
        }
        previous = body.get("status") or {}
        if all(previous.get(k) == v for k, v in status.items()):
            return
        with contextlib.suppress(NotFound):
            await self.kube.patch(
                TALOS_CLUSTERS,
                cluster.name,
                {"status": status},
                cluster.namespace,
                subresource="status",
            )
        # A kill between the status and its Event loses the Event only; the phase is in the
        # status, and an Event is a courtesy.
        if current != cluster.status.phase:
            await self.kube.event(
                cluster.to_json(), "Phase", f"{cluster.status.phase or '-'} -> {current}"
            )
