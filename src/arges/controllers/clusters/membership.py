"""A TalosCluster's members: reading them, binding more, and releasing those that leave.

Members are read from the API (ServerBindings by the labels naming the cluster), never from
the watch cache, so a reconcile right after an allocation never counts short and allocates
twice. A pool short of servers binds them from its ServerClass through ServerBindings (the
binding is the lock: never two clusters on one server); too few servers is condition
``InsufficientServers`` naming the class and the shortfall.

A member leaves (:func:`arges.metal.clusters.leaving`) this way: when its Talos API answers,
condition ``TalosReset`` is recorded on its Server (so nothing power-cycles it meanwhile)
and its Talos is asked to reset itself (Reset wiping STATE and EPHEMERAL, then rebooting);
its config Secret is deleted, then its binding. A control plane of a bootstrapped cluster
that goes on is reset gracefully (Talos leaves etcd first) before its release, and stays if
Talos cannot do that (condition ``ScaleDown``: it would stay an etcd member); any other
member is released first, so the reset's reboot finds the server unbound. The released
server network-boots into the agent, which wipes it as every released server is wiped; if
Talos did not answer, or does not come back into the agent in time, the power controller
boots it into the agent itself (the network-booted wipe).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any

from arges.api.base import Condition, ConditionStatus, ObjectReference, SecretReference
from arges.api.binding import ServerBinding, releasing
from arges.api.cluster import TalosCluster
from arges.api.server import Server
from arges.api.serverclass import ServerClass
from arges.controllers.allocation import allocate_many
from arges.controllers.clusters.observe import Talos
from arges.controllers.clusters.owned import config_name
from arges.controllers.clusters.state import INSUFFICIENT, SCALE_DOWN, Round
from arges.controllers.runtime import Cache
from arges.kube.client import KubeClient
from arges.kube.errors import Conflict, NotFound
from arges.kube.resources import SECRETS, SERVER_BINDINGS, SERVER_CLASSES, SERVERS
from arges.metal.classes import QualifierError
from arges.metal.clusters import MemberView, PoolRequest, member_state, shortfall
from arges.metal.memberconfig import CLUSTER_LABEL, POOL_LABEL
from arges.metal.power import TALOS_RESET
from arges.talos.errors import TalosApiError

log = logging.getLogger(__name__)

NAMESPACE_LABEL = "cluster.arges.dev/cluster-namespace"


async def bindings(
    kube: KubeClient, cluster: TalosCluster, *, released: bool = False
) -> list[ServerBinding]:
    """The cluster's members' bindings, by name; those being deleted (members already
    released) only with ``released``."""
    selector = f"{CLUSTER_LABEL}={cluster.name},{NAMESPACE_LABEL}={cluster.namespace}"
    uid = cluster.metadata.get("uid")
    out = []
    for item in await kube.list(SERVER_BINDINGS, label_selector=selector):
        binding = ServerBinding.from_json(item)
        consumer = binding.spec.consumer_ref
        if consumer.kind != "TalosCluster" or consumer.uid not in (None, uid):
            continue
        if released or not releasing(item):
            out.append(binding)
    return sorted(out, key=lambda b: b.name)


def view(binding: ServerBinding, server: Server | None, answers: bool) -> MemberView:
    """The member as the decisions see it (``answers``: its Talos API answered)."""
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


async def scale_up(
    state: Round,
    cache: Cache,
    requests: list[PoolRequest],
    views: list[MemberView],
    servers: Mapping[str, Server],
) -> list[ServerBinding]:
    """Bind servers to every pool short of its replicas; the bindings made."""
    cluster = state.cluster
    consumer = ObjectReference(
        api_version=cluster.api_version,
        kind=cluster.kind,
        name=cluster.name,
        namespace=cluster.namespace,
        uid=cluster.metadata.get("uid"),
    )
    bound = set(cache.names(SERVER_BINDINGS)) | {v.server for v in views}
    added: list[ServerBinding] = []
    shortfalls: list[str] = []
    needs = shortfall(requests, views)
    for request in requests:
        need = needs.get(request.name, 0)
        if need <= 0:
            continue
        class_body = cache.get(SERVER_CLASSES, request.server_class)
        if class_body is None:
            shortfalls.append(
                f"pool {request.name}: ServerClass {request.server_class} does not exist"
            )
            continue
        server_class = ServerClass.from_json(class_body)
        try:
            made = await allocate_many(
                state.kube,
                server_class,
                servers,
                bound,
                need,
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
            added += made
            for binding in made:
                log.info(
                    "%s/%s: bound %s to pool %s",
                    cluster.namespace,
                    cluster.name,
                    binding.name,
                    request.name,
                )
            # One Event per pool and round, naming the servers: an Event per server was
            # twenty round trips per cluster, one after another. It is lost by a kill after
            # the bindings: harmless, the bindings are the record of the allocation.
            if made:
                names = ", ".join(b.name for b in made)
                await state.event(
                    "Allocated",
                    f"bound {len(made)} server(s) to pool {request.name} ({request.role}): {names}",
                )
        except QualifierError as exc:
            shortfalls.append(f"pool {request.name}: ServerClass {request.server_class}: {exc}")
            continue
        if len(made) < need:
            shortfalls.append(
                f"pool {request.name}: ServerClass {request.server_class} has "
                f"{need - len(made)} server(s) too few available"
            )
    if shortfalls:
        state.set(INSUFFICIENT, "True", "NotEnoughServers", "; ".join(shortfalls))
        state.requeue = True
    else:
        state.set(INSUFFICIENT, "False", "Enough", "every pool has its servers")
    return added


async def scale_down(
    state: Round,
    talos: Talos,
    leaving: list[tuple[MemberView, ServerBinding, str | None, bool]],
    *,
    bootstrapped: bool,
    deleting: bool = False,
) -> set[str]:
    """Release each leaving member (view, binding, its Talos API address, whether it
    answers); the names released. Members that must stay for now are named in condition
    ``ScaleDown``."""
    released: set[str] = set()
    blocked: list[str] = []
    for member, binding, address, answers in leaving:
        why = await release(
            state,
            talos,
            member,
            binding,
            address if answers else None,
            in_etcd=member.role == "controlplane"
            and member.installed
            and bootstrapped
            and not deleting,
        )
        if why is None:
            released.add(member.server)
        else:
            blocked.append(why)
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


async def release(
    state: Round,
    talos: Talos,
    member: MemberView,
    binding: ServerBinding,
    address: str | None,
    *,
    in_etcd: bool,
) -> str | None:
    """Release one member (see the module docstring); None when released, else why it
    stays (a control plane in etcd whose Talos API cannot reset it: ``address`` None means
    it does not answer)."""
    kube = state.kube
    if not (member.installed and address is not None):
        if in_etcd:
            return f"{member.server}: its Talos API does not answer, so it cannot leave etcd"
        # A reset asked for by a release cut short (a kill between the request and the
        # binding's deletion) would hold the power controller back for reset_timeout:
        # say it is not coming.
        await _mark_reset(
            kube,
            member.server,
            "False",
            "NotRequested",
            "released to be wiped over the network",
            withdraw=True,
        )
        await _drop(state, member, binding, "it is wiped over the network")
        return None
    await _mark_reset(kube, member.server, "True", "Requested", "Talos was asked to reset")
    if in_etcd:
        # It must leave etcd before it goes: reset first (Talos takes a while before it
        # reboots), then release.
        if not await _reset(state, talos, member, address, graceful=True):
            return f"{member.server}: Reset failed, so it cannot leave etcd"
        await _drop(state, member, binding, "Talos leaves etcd and resets itself")
        return None
    # Released first, so the reset's reboot finds the server unbound and boots the agent.
    await _drop(state, member, binding, "Talos resets itself, then the agent wipes it")
    await _reset(state, talos, member, address, graceful=False)
    return None


async def _reset(
    state: Round, talos: Talos, member: MemberView, address: str, *, graceful: bool
) -> bool:
    """Ask the member's Talos to reset (wiping STATE and EPHEMERAL) and reboot; when it
    does not, record that it is wiped over the network instead."""
    try:
        await talos.api.reset(address, talos.port, graceful=graceful, reboot=True)
    except TalosApiError as exc:
        await _mark_reset(
            state.kube,
            member.server,
            "False",
            "NoAnswer",
            f"Reset failed, so it is wiped over the network: {exc}",
        )
        return False
    return True


async def _drop(state: Round, member: MemberView, binding: ServerBinding, how: str) -> None:
    """Delete the member's config Secret, then its binding (the release)."""
    kube, cluster = state.kube, state.cluster
    # The member's config goes before its binding: a kill between the two leaves a binding
    # without a config (the next reconcile releases it again; /configdata answers 404
    # meanwhile), never a config that outlives its membership. The Event after the
    # binding's deletion is lost by a kill there, and nothing depends on it.
    with contextlib.suppress(NotFound):
        await kube.delete(SECRETS, config_name(cluster.name, member.server), cluster.namespace)
    with contextlib.suppress(NotFound, Conflict):
        await kube.delete(SERVER_BINDINGS, member.server, uid=binding.metadata.get("uid"))
        log.info("%s/%s: released %s (%s)", cluster.namespace, cluster.name, member.server, how)
        await state.event("Released", f"released {member.server}: {how}")


async def _mark_reset(
    kube: KubeClient,
    server: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    *,
    withdraw: bool = False,
) -> None:
    """Record condition ``TalosReset`` on the Server, dated now whatever it said before (the
    power controller waits from that time); with ``withdraw``, only where it says True (a
    reset requested and now not coming)."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)

    def change(obj: dict[str, Any]) -> dict[str, Any] | None:
        conditions = (obj.get("status") or {}).get("conditions") or []
        if withdraw and not any(
            c["type"] == TALOS_RESET and c.get("status") == "True" for c in conditions
        ):
            return None
        kept = [c for c in conditions if c["type"] != TALOS_RESET]
        fresh = Condition(
            type=TALOS_RESET,
            status=status,
            reason=reason,
            message=message,
            last_transition_time=now,
        )
        return {"conditions": [*kept, fresh.to_json()]}

    with contextlib.suppress(NotFound):
        await kube.update_status(SERVERS, server, change)
