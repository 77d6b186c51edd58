"""A TalosCluster's status: phase, counts, each member (state, versions, roll-out, when its
Talos API last answered), the versions rolled out to, and the conditions.

Written only when something in it changed; ``lastSeen`` moves in steps of
:data:`SEEN_GRANULARITY` at most, so a settled cluster's status is not rewritten at every
look at its members. A change of phase is also an Event.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from typing import Any

from arges.api.cluster import Member
from arges.controllers.clusters.owned import kubeconfig_name, talosconfig_name
from arges.controllers.clusters.state import KUBECONFIG, Round
from arges.kube.errors import NotFound
from arges.kube.resources import TALOS_CLUSTERS
from arges.metal.clusters import MemberView, PoolRequest, readiness
from arges.metal.conditions import is_true

SEEN_GRANULARITY = dt.timedelta(seconds=60)


def last_seen(previous: dt.datetime | None, answered_at: dt.datetime | None) -> dt.datetime | None:
    """The ``lastSeen`` to show: the new time the API answered, unless the shown one is
    less than :data:`SEEN_GRANULARITY` older."""
    if answered_at is None:
        return previous
    if previous is not None and answered_at - previous < SEEN_GRANULARITY:
        return previous
    return answered_at.replace(microsecond=0)


async def write(
    state: Round,
    body: dict[str, Any],
    current: str,
    members: list[Member],
    views: list[MemberView],
    requests: list[PoolRequest],
    *,
    versions: tuple[str, str] | None = None,
) -> None:
    """Write the status (when it changed), then an Event if the phase changed; ``versions``
    are the Talos and Kubernetes versions rolled out to."""
    cluster = state.cluster

    def desired(role: str) -> int:
        return sum(r.replicas for r in requests if r.role == role)

    has_kubeconfig = is_true(state.conditions, KUBECONFIG)
    updated = sum(1 for m in members if m.rollout == "UpToDate")
    status: dict[str, Any] = {
        "phase": current,
        "controlPlanes": readiness(views, "controlplane", desired("controlplane")),
        "workerCount": readiness(views, "worker", desired("worker")),
        "members": [m.to_json() for m in sorted(members, key=lambda m: (m.pool, m.server))],
        "talosVersion": versions[0] if versions else None,
        "kubernetesVersion": versions[1] if versions else None,
        "updated": f"{updated}/{len(members)}" if versions else None,
        "talosconfigSecret": talosconfig_name(cluster.name),
        "kubeconfigSecret": kubeconfig_name(cluster.name) if has_kubeconfig else None,
        "observedGeneration": state.generation,
        "conditions": [c.to_json() for c in state.conditions],
    }
    previous = body.get("status") or {}
    if all(previous.get(k) == v for k, v in status.items()):
        return
    with contextlib.suppress(NotFound):
        await state.kube.patch(
            TALOS_CLUSTERS,
            cluster.name,
            {"status": status},
            cluster.namespace,
            subresource="status",
        )
    # A kill between the status and its Event loses the Event only; the phase is in the
    # status, and an Event is a courtesy.
    if current != cluster.status.phase:
        await state.event("Phase", f"{cluster.status.phase or '-'} -> {current}")
