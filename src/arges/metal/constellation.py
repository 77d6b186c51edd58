"""Constellation decisions: pure functions on the spec and the member TalosClusters.

- :func:`problems` says what makes a spec unusable (names, Cilium ids, addresses outside
  their pools, anycast without BGP, versions that are not versions), each naming the member
  and field;
- :func:`talos_cluster_spec` is a member's TalosCluster spec: the member's own, with the
  add-on patches (:mod:`arges.metal.addons.render`) placed before its own patches (so the
  member's patches have the last word) and the Secret holding the credentials-bearing patch
  named in the control-plane pool's ``patchesFrom``;
- :func:`status` folds the member TalosClusters into the Constellation's status.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

import yaml

from arges.api.cluster import SecretKeyReference
from arges.api.constellation import (
    AnycastPool,
    ClusterMeshStatus,
    ConstellationMember,
    ConstellationSpec,
    MemberRole,
    MemberStatus,
    MeshCluster,
)
from arges.metal.addons import versions
from arges.metal.addons.cilium import MeshPeer
from arges.metal.addons.render import MemberAddons, anycast_ingress, declared, ingress_address
from arges.names import dns1123_label_errors

ADDON_SECRET_KEY = "patch"
CONSTELLATION_LABEL = "cluster.arges.dev/constellation"
"""On a member TalosCluster and the Secrets of a Constellation: the Constellation's name."""
ROLE_LABEL = "cluster.arges.dev/constellation-role"


def members(spec: ConstellationSpec) -> list[tuple[MemberRole, ConstellationMember]]:
    """The barycenter, then the satellites, with their roles."""
    out: list[tuple[MemberRole, ConstellationMember]] = [("barycenter", spec.barycenter)]
    return out + [("satellite", s) for s in spec.satellites or []]


def addon_secret_name(member: str) -> str:
    """The Secret holding a member's credentials-bearing patch (key ``patch``)."""
    return f"{member}-addons"


def ca_secret_name(constellation: str) -> str:
    """The Secret holding the constellation's shared Cilium CA (``ca.crt``, ``ca.key``)."""
    return f"{constellation}-cilium-ca"


def mesh(spec: ConstellationSpec) -> list[MeshPeer]:
    """The clusters of the ClusterMesh: members with Cilium and a mesh endpoint."""
    return [
        MeshPeer(m.name, m.addons.cilium.cluster_id, m.addons.cilium.mesh_endpoint)
        for _, m in members(spec)
        if m.addons.cilium is not None and m.addons.cilium.mesh_endpoint is not None
    ]


def _network(entry: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """The networks of a MetalLB pool entry: a CIDR, or a range ``first-last``.

    Raises:
        ValueError: neither.
    """
    if "-" in entry:
        first, last = (ipaddress.ip_address(p.strip()) for p in entry.split("-", 1))
        return list(ipaddress.summarize_address_range(first, last))
    return [ipaddress.ip_network(entry.strip(), strict=False)]


def _within(address: str, entries: list[str]) -> bool:
    ip = ipaddress.ip_address(address)
    return any(ip in net for entry in entries for net in _network(entry))


def _pool_entries(member: ConstellationMember) -> list[str]:
    metal = member.addons.metallb
    return [a for p in (metal.address_pools or [] if metal else []) for a in p.addresses]


def problems(spec: ConstellationSpec) -> list[str]:
    """Why ``spec`` cannot be rendered (empty: it can)."""
    out: list[str] = []
    names: set[str] = set()
    ids: dict[int, str] = {}
    anycast = spec.anycast
    if anycast is not None:
        out += _anycast_problems(anycast)
    for role, member in members(spec):
        where = f"{role} {member.name}"
        out += [f"{where}: name: {e}" for e in dns1123_label_errors(member.name)]
        if member.name in names:
            out.append(f"{where}: two members are named {member.name}")
        names.add(member.name)
        out += _version_problems(where, member)
        addons = member.addons
        if addons.cilium is not None:
            other = ids.get(addons.cilium.cluster_id)
            if other is not None:
                out.append(f"{where}: cilium.clusterId {addons.cilium.cluster_id} is {other}'s too")
            ids[addons.cilium.cluster_id] = member.name
        out += _address_problems(where, role, member, anycast)
    return out


def _anycast_problems(anycast: AnycastPool) -> list[str]:
    try:
        if anycast.ingress_address and not _within(anycast.ingress_address, anycast.addresses):
            return [f"anycast.ingressAddress {anycast.ingress_address} is not in the pool"]
    except ValueError as exc:
        return [f"anycast: {exc}"]
    return []


def _version_problems(where: str, member: ConstellationMember) -> list[str]:
    addons = member.addons
    pinned = {
        "cilium.version": addons.cilium.version if addons.cilium else None,
        "metallb.version": addons.metallb.version if addons.metallb else None,
        "ingressNginx.version": addons.ingress_nginx.version if addons.ingress_nginx else None,
        "certManager.version": addons.cert_manager.version if addons.cert_manager else None,
        "externalDNS.version": addons.external_dns.version if addons.external_dns else None,
    }
    found = (versions.check(v, f"{where}: {k}") for k, v in pinned.items() if v is not None)
    return [p for p in found if p is not None]


def _address_problems(
    where: str, role: MemberRole, member: ConstellationMember, anycast: AnycastPool | None
) -> list[str]:
    addons = member.addons
    metal = addons.metallb
    out: list[str] = []
    if metal is not None and metal.peers and metal.asn is None:
        out.append(f"{where}: metallb.asn is needed to peer over BGP")
    try:
        entries = _pool_entries(member)
        mesh_endpoint = addons.cilium.mesh_endpoint if addons.cilium else None
        if mesh_endpoint is not None and not _within(mesh_endpoint, entries):
            out.append(
                f"{where}: cilium.meshEndpoint {mesh_endpoint} is in none of its MetalLB "
                "address pools (MetalLB announces it)"
            )
        if role == "satellite" and anycast is not None and not (metal and metal.peers):
            out.append(f"{where}: the anycast pool is announced over BGP: give metallb peers")
        # An address the member does not declare is the anycast one, checked on its own.
        address = addons.ingress_nginx.address if addons.ingress_nginx else None
        on_anycast = (
            role == "satellite"
            and anycast is not None
            and _within(address or "0.0.0.0", anycast.addresses)
        )
        if address is not None and not on_anycast and not _within(address, entries):
            out.append(f"{where}: ingressNginx.address {address} is in none of its MetalLB pools")
    except ValueError as exc:
        out.append(f"{where}: {exc}")
    return out


def talos_cluster_spec(member: ConstellationMember, rendered: MemberAddons) -> dict[str, Any]:
    """The member's TalosCluster spec (JSON) with its add-ons (see the module docstring)."""
    spec = member.cluster.to_json()
    if rendered.cluster_patch is not None:
        spec["strategicPatches"] = [
            _text(rendered.cluster_patch),
            *spec.get("strategicPatches", []),
        ]
    control_plane = spec.setdefault("controlPlane", {})
    if rendered.control_plane_patch is not None:
        control_plane["strategicPatches"] = [
            _text(rendered.control_plane_patch),
            *control_plane.get("strategicPatches", []),
        ]
    if rendered.secret_patch is not None:
        ref = SecretKeyReference(name=addon_secret_name(member.name), key=ADDON_SECRET_KEY)
        control_plane["patchesFrom"] = [*control_plane.get("patchesFrom", []), ref.to_json()]
    return spec


def _text(patch: dict[str, Any]) -> str:
    return yaml.safe_dump(patch, sort_keys=False)


def status(
    spec: ConstellationSpec,
    clusters: Mapping[str, dict[str, Any]],
    *,
    ca_secret: str | None,
    ca_fingerprint: str | None,
) -> dict[str, Any]:
    """The status fields phase, members, clusterMesh and anycastAddress, from the member
    TalosClusters as read (``clusters``, by name; a missing one is not created yet)."""
    rows: list[MemberStatus] = []
    for role, member in members(spec):
        body = clusters.get(member.name) or {}
        observed = body.get("status") or {}
        rows.append(
            MemberStatus(
                name=member.name,
                role=role,
                cluster=member.name,
                phase=observed.get("phase"),
                endpoint=member.cluster.endpoint,
                ingress_address=ingress_address(member, role, spec.anycast),
                control_planes=observed.get("controlPlanes"),
                workers=observed.get("workerCount"),
                addons=list(declared(member)),
            )
        )
    phases = [r.phase for r in rows]
    if all(p == "Running" for p in phases):
        phase = "Running"
    elif any(p is None for p in phases):
        phase = "Pending"
    else:
        phase = "Provisioning"
    out: dict[str, Any] = {
        "phase": phase,
        "members": [r.to_json() for r in rows],
        "clusterMesh": None,
        "anycastAddress": None,
    }
    peers = mesh(spec)
    if peers and ca_secret is not None and ca_fingerprint is not None:
        running = {r.name for r in rows if r.phase == "Running"}
        wired = all(p.name in running for p in peers)
        out["clusterMesh"] = ClusterMeshStatus(
            state="Wired" if wired else "Declared",
            ca_secret=ca_secret,
            ca_fingerprint=ca_fingerprint,
            clusters=[MeshCluster(name=p.name, id=p.id, endpoint=p.endpoint) for p in peers],
        ).to_json()
    if spec.anycast is not None:
        out["anycastAddress"] = anycast_ingress(spec.anycast)
    return out
