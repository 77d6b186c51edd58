"""What the Cluster API provider's controllers share: watching Cluster API's objects, and
writing an infrastructure object's status."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Sequence
from typing import Any

from arges.api.base import Condition, ConditionStatus
from arges.controllers.runtime import Body, Cache, Controller, Key, key_of
from arges.kube.capi import CLUSTERS_WATCH, MACHINES_WATCH, ClusterApi
from arges.kube.client import KubeClient
from arges.kube.errors import NotFound
from arges.kube.resources import Resource
from arges.metal.capi import Gate, externally_managed
from arges.metal.conditions import set_condition

__all__ = ["CLUSTERS_WATCH", "MACHINES_WATCH", "ClusterApi"]
READY = "Ready"
PAUSED = "Paused"


def infra_ref_key(body: Body, kind: str) -> list[str]:
    """The key of the ``kind`` object a Cluster or Machine names as its infrastructure
    (``spec.infrastructureRef``, the same name and namespace in v1beta1 and v1beta2)."""
    ref = (body.get("spec") or {}).get("infrastructureRef") or {}
    namespace = (body.get("metadata") or {}).get("namespace")
    if ref.get("kind") != kind or not ref.get("name") or not namespace:
        return []
    return [f"{namespace}/{ref['name']}"]


def provisioned_status(
    body: Body,
    *,
    ready: bool,
    gate: Gate | None,
    paused: bool,
    now: dt.datetime,
    extra: Sequence[tuple[str, ConditionStatus, str, str]] = (),
) -> dict[str, Any]:
    """The status fields of an infrastructure object: ``ready`` and
    ``initialization.provisioned`` (both contract versions), ``Ready`` and ``Paused``
    conditions (v1beta2), plus ``extra`` conditions (type, status, reason, message)."""
    status = body.get("status") or {}
    generation = (body.get("metadata") or {}).get("generation")
    conditions = [Condition.model_validate(c) for c in status.get("conditions") or []]

    def put(kind: str, value: ConditionStatus, reason: str, message: str) -> None:
        nonlocal conditions
        conditions = set_condition(
            conditions, kind, value, reason, message, now=now, observed_generation=generation
        )

    if gate is not None:
        put(READY, "False", gate.reason, gate.message)
    elif ready:
        put(READY, "True", "Provisioned", "the infrastructure is provisioned")
    if paused:
        put(PAUSED, "True", "Paused", "reconciliation is paused (Cluster or annotation)")
    else:
        put(PAUSED, "False", "NotPaused", "")
    for kind, value, reason, message in extra:
        put(kind, value, reason, message)
    out: dict[str, Any] = {
        "conditions": [c.to_json() for c in conditions],
        "observedGeneration": generation,
    }
    if not paused:
        out["ready"] = ready
        out["initialization"] = {"provisioned": ready}
    return out


def changed(body: Body, status: dict[str, Any]) -> bool:
    """Whether writing ``status`` would change the object's status."""
    current = body.get("status") or {}
    return any(current.get(k) != v for k, v in status.items())


def without_finalizer(body: Body, finalizer: str) -> dict[str, Any] | None:
    """The metadata patch removing ``finalizer`` (guarded by resourceVersion), or None."""
    meta = body["metadata"]
    finalizers = list(meta.get("finalizers") or [])
    if finalizer not in finalizers:
        return None
    rest = [f for f in finalizers if f != finalizer]
    return {"metadata": {"finalizers": rest or None, "resourceVersion": meta["resourceVersion"]}}


def with_finalizer(body: Body, finalizer: str) -> dict[str, Any] | None:
    """The metadata patch adding ``finalizer`` (guarded by resourceVersion), or None."""
    meta = body["metadata"]
    finalizers = list(meta.get("finalizers") or [])
    if finalizer in finalizers:
        return None
    return {
        "metadata": {
            "finalizers": [*finalizers, finalizer],
            "resourceVersion": meta["resourceVersion"],
        }
    }


async def patch_quietly(
    kube: KubeClient, res: Resource, body: Body, patch: dict[str, Any], **kw: Any
) -> None:
    """A patch of an object that may have just gone (deleted meanwhile: nothing to do)."""
    meta = body["metadata"]
    with contextlib.suppress(NotFound):
        await kube.patch(res, meta["name"], patch, meta.get("namespace"), **kw)


class InfrastructureController(Controller):
    """What the MetalCluster and MetalMachine controllers share: their resource, Cluster API
    reads, and the object as it is now (not the cache's)."""

    resource: Resource

    def __init__(self, kube: KubeClient, cache: Cache) -> None:
        super().__init__(kube, cache)
        self.capi = ClusterApi(kube)

    def own(self, event_type: str | None, body: Body) -> list[tuple[str, Key]]:
        """The object's own events reconcile it."""
        return [(self.name, key_of(body))]

    async def fetch(self, key: Key) -> Body | None:
        """The object, read now; None when it is gone or someone else manages it
        (``cluster.x-k8s.io/managed-by``)."""
        namespace, _, name = key.partition("/")
        try:
            body: Body = await self.kube.get(self.resource, name, namespace)
        except NotFound:
            return None
        return None if externally_managed(body) else body

    async def write_status(self, body: Body, status: dict[str, Any]) -> None:
        """Merge ``status`` into the object's status, when it changes anything."""
        if changed(body, status):
            await patch_quietly(
                self.kube, self.resource, body, {"status": status}, subresource="status"
            )
