"""The MetalCluster controller: the Cluster API InfraCluster contract on Arges.

A MetalCluster has nothing to build (no load balancer: the control-plane endpoint is the
user's VIP, DNS name or balancer, as with Sidero). Following the contract's workflow:

1. an object marked ``cluster.x-k8s.io/managed-by`` is left alone;
2. nothing happens until a Cluster owns it (Cluster API adds the reference from
   ``Cluster.spec.infrastructureRef``); while the Cluster or the object is paused only the
   ``Paused`` condition is written;
3. a finalizer (``metalcluster.infrastructure.cluster.x-k8s.io``, Sidero's) is added;
4. the control-plane endpoint is the MetalCluster's own, else copied from the Cluster's;
   once known, the MetalCluster is provisioned (``status.ready``,
   ``status.initialization.provisioned``, condition ``Ready``);
5. on deletion there is nothing to release: the finalizer is removed.
"""

from __future__ import annotations

import datetime as dt

from arges.controllers.capi import (
    CLUSTERS_WATCH,
    InfrastructureController,
    changed,
    infra_ref_key,
    patch_quietly,
    provisioned_status,
    with_finalizer,
    without_finalizer,
)
from arges.controllers.runtime import Body, Key, Watch
from arges.kube.resources import METAL_CLUSTERS
from arges.metal.capi import cluster_gate, endpoint, owner, paused

FINALIZER = "metalcluster.infrastructure.cluster.x-k8s.io"


class MetalClusterController(InfrastructureController):
    """See the module docstring."""

    name = "metalclusters"
    workers = 2
    resource = METAL_CLUSTERS

    def watches(self) -> list[Watch]:
        def cluster(event_type: str | None, body: Body) -> list[tuple[str, Key]]:
            return [(self.name, k) for k in infra_ref_key(body, "MetalCluster")]

        return [Watch(METAL_CLUSTERS, self.own), Watch(CLUSTERS_WATCH, cluster)]

    async def reconcile(self, key: Key) -> float | None:
        body = await self.fetch(key)
        if body is None:
            return None
        namespace = body["metadata"]["namespace"]
        ref = owner(body, "Cluster")
        cluster = await self.capi.cluster(namespace, ref["name"]) if ref else None
        now = dt.datetime.now(dt.UTC)
        if paused(cluster, body):
            await self.write_status(
                body, provisioned_status(body, ready=False, gate=None, paused=True, now=now)
            )
            return None
        if body["metadata"].get("deletionTimestamp"):
            patch = without_finalizer(body, FINALIZER)
            if patch is not None:
                await patch_quietly(self.kube, METAL_CLUSTERS, body, patch)
            return None
        if ref is not None:
            patch = with_finalizer(body, FINALIZER)
            if patch is not None:
                # The next event (this write) carries on from the new resourceVersion.
                await patch_quietly(self.kube, METAL_CLUSTERS, body, patch)
                return None
        gate = cluster_gate(body, cluster)
        if gate is None and cluster is not None:
            wanted = endpoint(body, cluster)
            if (body.get("spec") or {}).get("controlPlaneEndpoint") != wanted:
                await patch_quietly(
                    self.kube,
                    METAL_CLUSTERS,
                    body,
                    {
                        "metadata": {"resourceVersion": body["metadata"]["resourceVersion"]},
                        "spec": {"controlPlaneEndpoint": wanted},
                    },
                )
                return None
        status = provisioned_status(body, ready=gate is None, gate=gate, paused=False, now=now)
        if changed(body, status):
            await patch_quietly(
                self.kube, METAL_CLUSTERS, body, {"status": status}, subresource="status"
            )
        return None
