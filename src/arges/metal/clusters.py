"""A TalosCluster's membership: pure decisions on plain data, for the cluster controller.

- :func:`pools` turns the spec into pool requests (the control plane, then each worker pool);
- :func:`member_state` says where one member is, from its ServerBinding and Server;
- :func:`surplus` picks the members a pool gives back when it shrinks: those furthest from
  running first (not yet installed), then the newest, like Cluster API's ``Newest`` deletion
  policy, so the oldest, most settled machines stay;
- :func:`leaving` is every member that leaves now: those of pools no longer in the spec, a
  pool's surplus, and unhealthy workers of pools with ``autoReplace``;
- :func:`shortfall` is how many servers each pool still needs bound;
- :func:`unhealthy` names the members whose Talos API stopped answering for too long;
- :func:`bootstrap_member` is the one control-plane member etcd is bootstrapped on: the
  oldest, a deterministic choice, so a controller restarted between the ``Bootstrap`` call and
  recording it asks the same node again (and gets AlreadyExists, which means done);
- :func:`phase` summarises the cluster (Pending, Provisioning, Running, Scaling, Updating,
  Deleting).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from arges.api.binding import CONFIG_DELIVERED, INSTALLED, Role, ServerBinding
from arges.api.cluster import CONTROL_PLANE_POOL, MemberState, Phase, TalosClusterSpec
from arges.api.server import Server
from arges.metal.conditions import is_true
from arges.metal.stage import BootReason, last_boot

STATE_ORDER: tuple[MemberState, ...] = (
    "Allocated",
    "Booting",
    "ConfigDelivered",
    "Installed",
    "Ready",
)


@dataclass(frozen=True)
class PoolRequest:
    """One pool of the spec: ``replicas`` servers of ``role`` from ``server_class``."""

    name: str
    role: Role
    replicas: int
    server_class: str


@dataclass(frozen=True)
class MemberView:
    """One member as the controller sees it (``server`` is also the binding's name)."""

    server: str
    pool: str
    role: Role
    created: dt.datetime
    state: MemberState

    @property
    def installed(self) -> bool:
        return STATE_ORDER.index(self.state) >= STATE_ORDER.index("Installed")


def pools(spec: TalosClusterSpec) -> list[PoolRequest]:
    """The pools of ``spec``: ``controlplane`` first, then the worker pools in order.

    Raises:
        ValueError: two worker pools share a name, or one is named ``controlplane``.
    """
    out = [
        PoolRequest(
            CONTROL_PLANE_POOL,
            "controlplane",
            spec.control_plane.replicas,
            spec.control_plane.server_class_ref.name,
        )
    ]
    for pool in spec.workers or []:
        if any(p.name == pool.name for p in out):
            raise ValueError(f"worker pool name {pool.name!r} is used twice or is reserved")
        out.append(PoolRequest(pool.name, "worker", pool.replicas, pool.server_class_ref.name))
    return out


def member_state(
    binding: ServerBinding, server: Server | None, *, talos_answers: bool
) -> MemberState:
    """Where a member is: Ready once its Talos API answers after installation; Installed once
    its machine config is on disk; ConfigDelivered once the metadata service served it;
    Booting once the server network-booted the target Environment; else Allocated."""
    conditions = binding.status.conditions
    if is_true(conditions, INSTALLED):
        return "Ready" if talos_answers else "Installed"
    if is_true(conditions, CONFIG_DELIVERED):
        return "ConfigDelivered"
    if last_boot(server) is BootReason.TARGET:
        return "Booting"
    return "Allocated"


def surplus(members: Sequence[MemberView], replicas: int) -> list[MemberView]:
    """The members to release so that ``replicas`` remain (see the module docstring)."""
    excess = len(members) - max(replicas, 0)
    if excess <= 0:
        return []
    order = sorted(
        members,
        key=lambda m: (STATE_ORDER.index(m.state), -m.created.timestamp(), m.server),
    )
    return order[:excess]


def leaving(
    requests: Sequence[PoolRequest], members: Sequence[MemberView], replace: Collection[str]
) -> list[MemberView]:
    """The members to release now: every member of a pool the spec no longer has, each
    pool's :func:`surplus`, and the members named in ``replace`` (unhealthy workers of pools
    with ``autoReplace``; the pool binds a server in their place)."""
    names = {r.name for r in requests}
    out = [m for m in members if m.pool not in names or m.server in replace]
    for request in requests:
        kept = [m for m in members if m.pool == request.name and m not in out]
        out += surplus(kept, request.replicas)
    return out


def shortfall(requests: Sequence[PoolRequest], members: Sequence[MemberView]) -> dict[str, int]:
    """How many servers each pool still needs bound (pools that have enough are left out)."""
    out = {}
    for request in requests:
        need = request.replicas - sum(1 for m in members if m.pool == request.name)
        if need > 0:
            out[request.name] = need
    return out


@dataclass(frozen=True)
class Liveness:
    """When a member's Talos API last answered (None: never), and whether a roll-out step
    that reboots it is in flight (the roll-out's own timeout covers that)."""

    server: str
    last_seen: dt.datetime | None
    rebooting: bool = False


def unhealthy(members: Sequence[Liveness], *, now: dt.datetime, after: dt.timedelta) -> list[str]:
    """The members whose Talos API answered once and not for ``after`` since, by name
    (a member never seen is still being provisioned, not unhealthy)."""
    return sorted(
        m.server
        for m in members
        if m.last_seen is not None and not m.rebooting and now - m.last_seen > after
    )


def bootstrap_member(members: Sequence[MemberView]) -> MemberView | None:
    """The control-plane member to bootstrap etcd on (see the module docstring)."""
    control_planes = [m for m in members if m.role == "controlplane"]
    if not control_planes:
        return None
    return min(control_planes, key=lambda m: (m.created, m.server))


def phase(
    requests: Sequence[PoolRequest],
    members: Sequence[MemberView],
    *,
    deleting: bool,
    was_running: bool,
    up_to_date: bool = True,
) -> Phase:
    """The cluster's phase: Deleting while it is deleted; Pending before it has any member;
    Running when every pool holds exactly its replicas, all Ready and up to date; Updating
    when a cluster that ran holds its replicas and a roll-out is not done (``up_to_date``
    False); otherwise Scaling if it ran before, else Provisioning."""
    if deleting:
        return "Deleting"
    if not members:
        return "Pending" if any(r.replicas for r in requests) else "Running"
    names = {r.name for r in requests}
    counted = all(
        sum(1 for m in members if m.pool == r.name) == r.replicas for r in requests
    ) and all(m.pool in names for m in members)
    if counted and up_to_date and all(m.state == "Ready" for m in members):
        return "Running"
    if counted and was_running and not up_to_date:
        return "Updating"
    return "Scaling" if was_running else "Provisioning"


def readiness(members: Sequence[MemberView], role: Role, desired: int) -> str:
    """``ready/desired`` for one role, as the printer columns show it (e.g. ``1/3``)."""
    ready = sum(1 for m in members if m.role == role and m.state == "Ready")
    return f"{ready}/{desired}"
