"""ingress-nginx's LoadBalancer Service on the member's ingress address.

The bare-metal release manifest exposes the controller through a NodePort Service; Arges adds
``ingress-nginx-vip``, a LoadBalancer Service for the same pods asking MetalLB for the address
(``metallb.universe.tf/loadBalancerIPs``, and the pool ``metallb.universe.tf/address-pool``
where the address is the anycast one). ``externalTrafficPolicy: Local`` keeps clients' source
addresses and makes MetalLB announce the address only from nodes running a controller pod,
which is what anycast between satellites needs (a satellite without a ready controller stops
announcing it).
"""

from __future__ import annotations

from typing import Any

from arges.metal.addons.cilium import LB_IPS_ANNOTATION

NAMESPACE = "ingress-nginx"
SERVICE = "ingress-nginx-vip"
POOL_ANNOTATION = "metallb.universe.tf/address-pool"
SELECTOR = {
    "app.kubernetes.io/component": "controller",
    "app.kubernetes.io/instance": "ingress-nginx",
    "app.kubernetes.io/name": "ingress-nginx",
}
"""The controller pods' labels in ingress-nginx's release manifests."""


def vip_service(address: str, pool: str | None) -> dict[str, Any]:
    """The Service on ``address`` (from MetalLB pool ``pool`` when given)."""
    annotations = {LB_IPS_ANNOTATION: address}
    if pool is not None:
        annotations[POOL_ANNOTATION] = pool
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": SERVICE, "namespace": NAMESPACE, "annotations": annotations},
        "spec": {
            "type": "LoadBalancer",
            "externalTrafficPolicy": "Local",
            "selector": dict(SELECTOR),
            "ports": [
                {"name": "http", "port": 80, "protocol": "TCP", "targetPort": "http"},
                {"name": "https", "port": 443, "protocol": "TCP", "targetPort": "https"},
            ],
        },
    }
