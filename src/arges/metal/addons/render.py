"""One member's add-ons as Talos strategic merge patches.

Three patches, by where they go and what they hold:

- for every node (``cluster_patch``): Talos' CNI ``none`` and kube-proxy disabled where Cilium
  replaces them, KubeSpan (``machine.network.kubespan.enabled`` with ``cluster.discovery``,
  which KubeSpan needs);
- for the control planes (``control_plane_patch``; Talos applies manifests from control
  planes only, and its Cilium guide puts the inline manifest there alone): the release
  manifests' URLs in ``cluster.extraManifests`` and the objects Arges renders in
  ``cluster.inlineManifests``;
- for the control planes, holding credentials (``secret_patch``): the shared Cilium CA and the
  DNS provider's credentials as inline Secrets. It is only ever stored in Secrets (the one the
  TalosCluster's ``patchesFrom`` names, and the member configs), never in the TalosCluster.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from arges.api.constellation import AnycastPool, ConstellationMember, DNSProvider, MemberRole
from arges.metal.addons import certmanager, cilium, externaldns, ingress, metallb, versions
from arges.metal.addons.cilium import MeshPeer

INLINE_PREFIX = "arges-"


@dataclass(frozen=True)
class Context:
    """What members share: the constellation's name (external-dns' owner id), the anycast
    pool, the mesh, the install Jobs' image, the Cilium CA (PEM certificate and key) and the
    credentials Secrets' data (by Secret name; base64 values)."""

    constellation: str
    anycast: AnycastPool | None = None
    mesh: tuple[MeshPeer, ...] = ()
    helm_image: str = versions.HELM_IMAGE
    cilium_ca: tuple[str, str] | None = None
    credentials: Mapping[str, Mapping[str, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class MemberAddons:
    """A member's patches (None where it needs none) and the add-ons it declares."""

    cluster_patch: dict[str, Any] | None
    control_plane_patch: dict[str, Any] | None
    secret_patch: dict[str, Any] | None
    declared: tuple[str, ...]


def declared(member: ConstellationMember) -> tuple[str, ...]:
    """The add-ons a member declares, in a fixed order."""
    addons = member.addons
    present = {
        "cilium": addons.cilium is not None,
        "metallb": addons.metallb is not None,
        "ingress-nginx": addons.ingress_nginx is not None,
        "cert-manager": addons.cert_manager is not None,
        "external-dns": addons.external_dns is not None,
        "kubespan": addons.kubespan,
    }
    return tuple(name for name, on in present.items() if on)


def ingress_address(
    member: ConstellationMember, role: MemberRole, anycast: AnycastPool | None
) -> str | None:
    """Where the member's ingress controller serves: its declared address, else on a
    satellite the anycast one."""
    if member.addons.ingress_nginx is None:
        return None
    if member.addons.ingress_nginx.address:
        return member.addons.ingress_nginx.address
    if role == "satellite" and anycast is not None:
        return anycast_ingress(anycast)
    return None


def anycast_ingress(anycast: AnycastPool) -> str:
    """The anycast pool's ingress address (its first address unless one is named)."""
    return anycast.ingress_address or anycast.addresses[0].split("/")[0].split("-")[0]


def _inline(name: str, objects: list[dict[str, Any]]) -> dict[str, str]:
    return {
        "name": INLINE_PREFIX + name,
        "contents": yaml.safe_dump_all(objects, sort_keys=False),
    }


def render_member(member: ConstellationMember, role: MemberRole, context: Context) -> MemberAddons:
    """The patches of ``member`` (see the module docstring).

    Raises:
        ValueError: credentials missing from their Secret, or a ClusterIssuer that cannot be
            rendered (the message names the member).
    """
    addons = member.addons
    anycast = context.anycast if role == "satellite" else None
    everywhere: dict[str, Any] = {}
    urls: list[str] = []
    inline: list[dict[str, str]] = []
    secret_inline: list[dict[str, str]] = []
    if addons.cilium is not None:
        everywhere.setdefault("cluster", {})["network"] = {"cni": {"name": "none"}}
        if addons.cilium.kube_proxy_replacement:
            everywhere["cluster"]["proxy"] = {"disabled": True}
        mesh = list(context.mesh)
        inline.append(
            _inline(
                "cilium-install",
                cilium.install(member.name, addons.cilium, mesh, context.helm_image),
            )
        )
        if addons.cilium.mesh_endpoint is not None and context.cilium_ca is not None:
            crt, key = context.cilium_ca
            secret_inline.append(_inline("cilium-ca", [cilium.ca_secret(crt, key)]))
    if addons.kubespan:
        everywhere.setdefault("machine", {})["network"] = {"kubespan": {"enabled": True}}
        everywhere.setdefault("cluster", {})["discovery"] = {"enabled": True}
    if addons.metallb is not None:
        urls.append(versions.metallb_manifest(addons.metallb.version or versions.METALLB))
        inline.append(_inline("metallb-config", metallb.config(addons.metallb, anycast)))
    if addons.ingress_nginx is not None:
        urls.append(
            versions.ingress_nginx_manifest(addons.ingress_nginx.version or versions.INGRESS_NGINX)
        )
        address = ingress_address(member, role, context.anycast)
        if address is not None:
            on_anycast = anycast is not None and address == anycast_ingress(anycast)
            pool = metallb.ANYCAST_POOL if on_anycast else None
            inline.append(_inline("ingress-vip", [ingress.vip_service(address, pool)]))
    dns = addons.external_dns
    if addons.cert_manager is not None:
        urls.append(
            versions.cert_manager_manifest(addons.cert_manager.version or versions.CERT_MANAGER)
        )
        try:
            issuer = certmanager.cluster_issuer(addons.cert_manager.issuer, dns)
        except ValueError as exc:
            raise ValueError(f"member {member.name}: {exc}") from exc
        inline.append(_inline("cert-manager-issuer", [issuer]))
    if dns is not None:
        data = _credentials(member.name, dns.credentials_secret_ref.name, dns.provider, context)
        inline.append(
            _inline(
                "external-dns-install",
                externaldns.install(dns, context.constellation, context.helm_image),
            )
        )
        namespaces = [externaldns.NAMESPACE]
        certs = addons.cert_manager
        if certs is not None and certs.issuer.solver == "dns01":
            namespaces.append(certmanager.NAMESPACE)
        secret_inline.append(
            _inline(
                "external-dns-credentials",
                [externaldns.credentials(ns, data) for ns in namespaces],
            )
        )
    cp: dict[str, Any] = {}
    if urls:
        cp["extraManifests"] = urls
    if inline:
        cp["inlineManifests"] = inline
    return MemberAddons(
        cluster_patch=everywhere or None,
        control_plane_patch={"cluster": cp} if cp else None,
        secret_patch={"cluster": {"inlineManifests": secret_inline}} if secret_inline else None,
        declared=declared(member),
    )


def _credentials(
    member: str, secret: str, provider: DNSProvider, context: Context
) -> dict[str, str]:
    data = context.credentials.get(secret)
    if data is None:
        raise ValueError(f"member {member}: external-dns credentials Secret {secret} not found")
    keys = externaldns.KEYS[provider]
    missing = [k for k in keys if not data.get(k)]
    if missing:
        raise ValueError(
            f"member {member}: Secret {secret} lacks {', '.join(missing)} ({provider} credentials)"
        )
    return {k: data[k] for k in keys}
