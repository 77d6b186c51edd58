"""MetalLB's configuration objects: address pools, BGP peers, advertisements.

Following MetalLB's configuration guide (https://metallb.io/configuration/, v0.14): every
object lives in ``metallb-system``; an ``IPAddressPool`` (``metallb.io/v1beta1``) per pool; a
``BGPPeer`` (``metallb.io/v1beta2``) per peer, speaking this cluster's ASN; and a
``BGPAdvertisement`` naming the pools it announces, or, without peers, an
``L2Advertisement``. A satellite also gets the constellation's anycast pool (``anycast``),
assigned only on request (``autoAssign: false``: the ingress Service asks for it) and
announced over BGP from every satellite at once.
"""

from __future__ import annotations

from typing import Any

from arges.api.constellation import AnycastPool, MetalLBAddon

NAMESPACE = "metallb-system"
API = "metallb.io/v1beta1"
PEER_API = "metallb.io/v1beta2"
ANYCAST_POOL = "anycast"


def _meta(name: str) -> dict[str, Any]:
    return {"name": name, "namespace": NAMESPACE}


def config(addon: MetalLBAddon, anycast: AnycastPool | None) -> list[dict[str, Any]]:
    """The objects configuring MetalLB for one member (``anycast``: the satellites' shared
    pool, None on the barycenter)."""
    objects: list[dict[str, Any]] = []
    pools = [p.name for p in addon.address_pools or []]
    for pool in addon.address_pools or []:
        objects.append(
            {
                "apiVersion": API,
                "kind": "IPAddressPool",
                "metadata": _meta(pool.name),
                "spec": {"addresses": list(pool.addresses), "autoAssign": pool.auto_assign},
            }
        )
    if anycast is not None:
        objects.append(
            {
                "apiVersion": API,
                "kind": "IPAddressPool",
                "metadata": _meta(ANYCAST_POOL),
                "spec": {"addresses": list(anycast.addresses), "autoAssign": False},
            }
        )
    for index, peer in enumerate(addon.peers or []):
        spec: dict[str, Any] = {
            "myASN": addon.asn,
            "peerASN": peer.asn,
            "peerAddress": peer.address,
        }
        if peer.port is not None:
            spec["peerPort"] = peer.port
        if peer.ebgp_multi_hop is not None:
            spec["ebgpMultiHop"] = peer.ebgp_multi_hop
        objects.append(
            {
                "apiVersion": PEER_API,
                "kind": "BGPPeer",
                "metadata": _meta(f"peer-{index}"),
                "spec": spec,
            }
        )
    if addon.peers:
        if pools:
            objects.append(_advertisement("BGPAdvertisement", "pools", pools))
        if anycast is not None:
            objects.append(_advertisement("BGPAdvertisement", ANYCAST_POOL, [ANYCAST_POOL]))
    elif pools:
        objects.append(_advertisement("L2Advertisement", "pools", pools))
    return objects


def _advertisement(kind: str, name: str, pools: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": kind,
        "metadata": _meta(name),
        "spec": {"ipAddressPools": pools},
    }
