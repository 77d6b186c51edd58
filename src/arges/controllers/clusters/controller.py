"""The TalosCluster controller: one reconcile, in order (each step reads the current state and
is safe to repeat; a kill anywhere leaves what the next reconcile finishes):

1. a finalizer, so deleting the cluster releases its servers first;
2. the secrets bundle and the admin talosconfig (:mod:`.owned`);
3. each pool's machine config rendered from the bundle with the cluster's then the pool's
   patches, for the installer image and Kubernetes version wanted; a spec that cannot render
   marks ``ConfigValid=False`` and changes nothing;
4. a look at each installed member's Talos API (:mod:`.observe`); a member that stopped
   answering for ``unhealthyAfterSeconds`` is condition ``MemberUnhealthy``;
5. membership (:mod:`.membership`): members that leave (pools that shrank or went, unhealthy
   workers of ``autoReplace`` pools) are reset and released, pools that grew bind servers;
6. each member's config Secret written or given the pool's new rendering, config Secrets of
   ended memberships deleted; the power controller boots bound servers into their target;
7. etcd bootstrapped once and the kubeconfig fetched once (:mod:`.bootstrap`);
8. the roll-out of versions and configs to running members (:mod:`.rollout`), condition
   ``UpToDate``;
9. the status (:mod:`.status`).

Deletion releases every member (reset without leaving etcd, since the whole cluster goes),
removes the cluster's Secrets, and only then lifts the finalizer. A settled cluster is looked
at again now and then, so a member that goes silent is noticed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Callable, Mapping
from typing import Any

from arges.api.binding import INSTALLED, Role, ServerBinding
from arges.api.cluster import CONTROL_PLANE_POOL, Member, TalosCluster
from arges.api.server import Server
from arges.api.serverclass import ServerClass
from arges.controllers.clustermemo import Memo
from arges.controllers.clusters import bootstrap, membership, owned, status
from arges.controllers.clusters.membership import NAMESPACE_LABEL
from arges.controllers.clusters.observe import Observation, Observer, Talos
from arges.controllers.clusters.owned import address_of
from arges.controllers.clusters.rollout import (
    Member as RolloutMember,
)
from arges.controllers.clusters.rollout import (
    Rollouts,
    Wanted,
    member_config,
    up_to_date_condition,
)
from arges.controllers.clusters.state import (
    BOOTSTRAPPED,
    CONFIG_VALID,
    INSUFFICIENT,
    MEMBER_UNHEALTHY,
    Round,
)
from arges.controllers.parsed import parsed
from arges.controllers.patchsecrets import secret_patch_sets, uses_secrets
from arges.controllers.relevance import Facts, member_facts
from arges.controllers.runtime import Body, Cache, Controller, Key, Watch, key_of
from arges.kube.client import KubeClient
from arges.kube.errors import NotFound
from arges.kube.resources import SERVER_BINDINGS, SERVER_CLASSES, SERVERS, TALOS_CLUSTERS
from arges.metal.clusters import Liveness, MemberView, leaving, phase, pools, unhealthy
from arges.metal.conditions import is_true
from arges.metal.memberconfig import CLUSTER_LABEL
from arges.talos.api import TalosApi
from arges.talos.components import image, tag
from arges.talos.configgen import DEFAULT_INSTALL_DISK, ClusterInput
from arges.talos.errors import InvalidInput, TalosError
from arges.talos.patches import PatchSet, patch_set
from arges.talos.render import render
from arges.talos.secrets import SecretsBundle
from arges.talos.talosconfig import ClientCredentials
from arges.talos.versions import contract, installer_image

log = logging.getLogger(__name__)

FINALIZER = "cluster.arges.dev/talos-cluster"

TalosApiFactory = Callable[[ClientCredentials], TalosApi]


def _short(cluster: Body) -> bool:
    """Whether a cluster (as cached) waits for servers (condition InsufficientServers)."""
    conditions = (cluster.get("status") or {}).get("conditions") or []
    return any(c.get("type") == INSUFFICIENT and c.get("status") == "True" for c in conditions)


def wanted(cluster: TalosCluster) -> Wanted:
    """The installer image, Talos and Kubernetes versions the spec wants.

    Raises:
        UnsupportedVersion: an unknown Talos line; InvalidInput: an installer image without
            a version tag.
    """
    spec = cluster.spec
    installer = installer_image(spec.talos_version, spec.installer_image)
    version = tag(installer)
    if version is None:
        raise InvalidInput(
            f"installerImage {installer!r} must be tagged with its Talos version, "
            "e.g. ghcr.io/siderolabs/installer:v1.11.6"
        )
    kubernetes = (spec.kubernetes_version or contract(spec.talos_version).kubernetes).removeprefix(
        "v"
    )
    return Wanted(installer, version, kubernetes)


def render_pools(
    cluster: TalosCluster,
    secrets: SecretsBundle,
    want: Wanted,
    requests: list[str],
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
        kubernetes_version=want.kubernetes_version,
        install_disk=spec.install_disk or DEFAULT_INSTALL_DISK,
        install_image=want.installer,
    )
    cluster_set = patch_set(
        f"TalosCluster {cluster.name}",
        [p.to_json() for p in spec.config_patches or []],
        list(spec.strategic_patches or []),
    )
    specs = {CONTROL_PLANE_POOL: spec.control_plane} | {w.name: w for w in spec.workers or []}
    out = {}
    for name in requests:
        pool = specs[name]
        pool_set: PatchSet = patch_set(
            f"pool {name}",
            [p.to_json() for p in pool.config_patches or []],
            list(pool.strategic_patches or []),
        )
        role: Role = "controlplane" if name == CONTROL_PLANE_POOL else "worker"
        sets = [cluster_set, pool_set, *from_secrets.get(name, [])]
        out[name] = render(secrets, role, inputs, sets)
    return out


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
        self.observer = Observer(probe_interval)
        self.rollouts = Rollouts(self.observer)
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
        bindings = await membership.bindings(self.kube, cluster)
        state = Round(
            self.kube,
            cluster,
            list(cluster.status.conditions or []),
            dt.datetime.now(dt.UTC),
            meta.get("generation"),
        )
        if meta.get("deletionTimestamp"):
            return await self._finalize(state, body, bindings)
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
        secrets = await owned.bundle(self.kube, cluster)
        try:
            requests = pools(cluster.spec)
            want = wanted(cluster)
            from_secrets = await secret_patch_sets(self.kube, cluster)
            names = [r.name for r in requests]
            # Rendered configs are kept by what they are made of; patches from Secrets are
            # read each time (Secrets are not watched), so those clusters render each time.
            configs = (
                render_pools(cluster, secrets, want, names, from_secrets)
                if from_secrets
                else self._configs.get(
                    (meta.get("uid"), meta.get("generation"), secrets, tuple(names)),
                    lambda: render_pools(cluster, secrets, want, names, {}),
                )
            )
        except (ValueError, TalosError) as exc:
            state.set(CONFIG_VALID, "False", "InvalidSpec", str(exc))
            await status.write(state, body, "Failed", [], [], [])
            # Secrets are not watched: one that patchesFrom names may appear or be fixed.
            return self.recheck if uses_secrets(cluster) else None
        state.set(CONFIG_VALID, "True", "Rendered", "every pool's machine config renders")
        servers = parsed(self.cache, SERVERS, Server).lazy()
        talos = await self._talos(cluster, secrets, bindings, servers)
        seen = await self._observe(talos, bindings, servers, state.now)
        previous = {m.server: m for m in cluster.status.members or []}
        views = [membership.view(b, servers.get(b.name), seen[b.name].answers) for b in bindings]
        by_name = {b.name: b for b in bindings}
        listed = await owned.listed_members(self.kube, cluster)
        secrets_of = owned.by_server(listed)
        shown_seen = {
            v.server: status.last_seen(
                previous[v.server].last_seen if v.server in previous else None,
                seen[v.server].at if seen[v.server].answers else None,
            )
            for v in views
        }
        sick = unhealthy(
            [
                Liveness(v.server, shown_seen[v.server], owned.rebooting(secrets_of.get(v.server)))
                for v in views
                if not seen[v.server].answers
            ],
            now=state.now,
            after=dt.timedelta(seconds=cluster.spec.unhealthy_after_seconds),
        )
        await self._health(state, sick)
        auto = {w.name for w in cluster.spec.workers or [] if w.auto_replace}
        replace = {v.server for v in views if v.server in sick and v.pool in auto}
        going = leaving(requests, views, replace)
        bootstrapped = is_true(state.conditions, BOOTSTRAPPED)
        released = await membership.scale_down(
            state,
            talos,
            [
                (v, by_name[v.server], address_of(servers.get(v.server)), seen[v.server].answers)
                for v in going
            ],
            bootstrapped=bootstrapped,
        )
        views = [v for v in views if v.server not in released]
        bindings = [b for b in bindings if b.name not in released]
        added = await membership.scale_up(state, self.cache, requests, views, servers)
        for binding in added:
            seen[binding.name] = Observation(state.now, False)
        bindings += added
        views += [membership.view(b, servers.get(b.name), False) for b in added]
        await owned.sweep(self.kube, cluster, bindings, listed)
        secrets_of = await owned.member_configs(state, bindings, configs, secrets_of)
        addresses = {b.name: address_of(servers.get(b.name)) for b in bindings}
        await bootstrap.bootstrap(state, talos, views, addresses)
        bootstrapped = is_true(state.conditions, BOOTSTRAPPED)
        members = [
            self._member(b, v, servers, configs, seen, secrets_of, addresses, previous, shown_seen)
            for b, v in zip(bindings, views, strict=True)
        ]
        summary = await self.rollouts.roll(state, talos, members, want, bootstrapped=bootstrapped)
        if bootstrapped:
            up_to_date_condition(state, summary, want)
        shown = []
        for m in members:
            rollout, message = summary.states.get(m.view.server, ("Pending", None))
            kubelet = tag(image(m.applied, "kubelet")) if m.applied else None
            shown.append(
                Member(
                    server=m.view.server,
                    role=m.view.role,
                    pool=m.view.pool,
                    state=m.view.state,
                    talos_version=m.version,
                    kubernetes_version=kubelet.removeprefix("v") if kubelet else None,
                    rollout=rollout,
                    message=message,
                    last_seen=shown_seen.get(m.view.server),
                )
            )
        was_running = cluster.status.phase in ("Running", "Scaling", "Updating")
        current = phase(
            requests, views, deleting=False, was_running=was_running, up_to_date=summary.up_to_date
        )
        if current != "Running":
            state.requeue = True
        await status.write(
            state,
            body,
            current,
            shown,
            views,
            requests,
            versions=(want.talos_version, want.kubernetes_version),
        )
        if state.requeue:
            return self.recheck
        return max(self.recheck, min(60.0, cluster.spec.unhealthy_after_seconds / 4))

    async def _observe(
        self,
        talos: Talos,
        bindings: list[ServerBinding],
        servers: Mapping[str, Server],
        now: dt.datetime,
    ) -> dict[str, Observation]:
        """An observation of every member (by name); members not installed do not answer."""
        installed = [b for b in bindings if is_true(b.status.conditions, INSTALLED)]
        keys = {str(b.metadata.get("uid") or b.name): b.name for b in installed}
        found = await self.observer.observe(
            talos, {k: address_of(servers.get(name)) for k, name in keys.items()}
        )
        self.observer.drop_except(set(keys))
        out = {b.name: Observation(now, False) for b in bindings}
        out.update({keys[k]: o for k, o in found.items()})
        return out

    def _member(
        self,
        binding: ServerBinding,
        view: MemberView,
        servers: Mapping[str, Server],
        configs: dict[str, str],
        seen: dict[str, Observation],
        secrets_of: dict[str, dict[str, Any]],
        addresses: dict[str, str | None],
        previous: dict[str, Member],
        shown_seen: dict[str, dt.datetime | None],
    ) -> RolloutMember:
        server = servers.get(binding.name)
        config: str | None = None
        problem: str | None = None
        pool_config = configs.get(view.pool)
        if server is not None and pool_config is not None:
            class_ref = binding.spec.server_class_ref
            class_body = self.cache.get(SERVER_CLASSES, class_ref.name) if class_ref else None
            server_class = ServerClass.from_json(class_body) if class_body else None
            try:
                config = member_config(pool_config, server_class, server)
            except TalosError as exc:
                problem = str(exc)
        observation = seen[binding.name]
        earlier = previous.get(binding.name)
        version = observation.version if observation.answers else None
        if version is None and earlier is not None:
            version = earlier.talos_version
        return RolloutMember(
            view=view,
            binding=binding,
            address=addresses.get(binding.name),
            observation=observation,
            secret=secrets_of.get(binding.name),
            config=config,
            problem=problem,
            version=version,
        )

    async def _talos(
        self,
        cluster: TalosCluster,
        secrets: SecretsBundle,
        bindings: list[ServerBinding],
        servers: Mapping[str, Server],
    ) -> Talos:
        """The cluster's Talos API as its admin (the talosconfig's endpoints brought up to
        date with the control planes' addresses first)."""
        creds = await owned.admin_credentials(self.kube, cluster, secrets, bindings, servers)
        return Talos(self._api(creds), self.talos_port)

    def _api(self, creds: ClientCredentials) -> TalosApi:
        """A Talos API client for these credentials, reused while they are unchanged (a
        client holds its TLS context and connections)."""
        return self._apis.get((self.talos_api, creds), lambda: self.talos_api(creds))

    async def _health(self, state: Round, sick: list[str]) -> None:
        """Condition ``MemberUnhealthy``, and a Warning Event when the silent members change
        (the condition is short-lived where a pool replaces them; the Event stays)."""
        if sick:
            after = state.cluster.spec.unhealthy_after_seconds
            message = f"the Talos API of {', '.join(sick)} has not answered for over {after} s"
            before = next((c for c in state.conditions if c.type == MEMBER_UNHEALTHY), None)
            state.set(MEMBER_UNHEALTHY, "True", "TalosApiSilent", message)
            state.requeue = True
            if before is None or before.status != "True" or before.message != message:
                await state.event(MEMBER_UNHEALTHY, message, warning=True)
        else:
            state.set(MEMBER_UNHEALTHY, "False", "Answering", "every seen member answers")

    async def _finalize(
        self, state: Round, body: Body, bindings: list[ServerBinding]
    ) -> float | None:
        cluster = state.cluster
        finalizers = list(body["metadata"].get("finalizers") or [])
        if FINALIZER not in finalizers:
            return None
        # Release every member, then the cluster's Secrets, then the finalizer: a kill at any
        # point leaves the finalizer, so the next reconcile repeats what is left.
        if bindings:
            secrets = await owned.bundle(self.kube, cluster)
            servers = parsed(self.cache, SERVERS, Server).lazy()
            talos = await self._talos(cluster, secrets, bindings, servers)
            seen = await self._observe(talos, bindings, servers, state.now)
            await membership.scale_down(
                state,
                talos,
                [
                    (
                        membership.view(b, servers.get(b.name), seen[b.name].answers),
                        b,
                        address_of(servers.get(b.name)),
                        seen[b.name].answers,
                    )
                    for b in bindings
                ],
                bootstrapped=is_true(state.conditions, BOOTSTRAPPED),
                deleting=True,
            )
        if await membership.bindings(self.kube, cluster, released=True):
            return 1.0
        await owned.sweep(self.kube, cluster, [])
        await owned.remove_all(self.kube, cluster)
        self.rollouts.forget(cluster)
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
