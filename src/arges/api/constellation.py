"""Constellation: a management cluster and its workload clusters in one object
(``cluster.arges.dev/v1alpha1``, namespaced).

The barycenter (the management cluster) and the satellites (workload clusters) are each a
TalosCluster spec plus the add-ons Arges renders into their machine configs: Cilium (its
ClusterMesh identity, kube-proxy replacement), MetalLB (ASN, BGP peers, address pools),
ingress-nginx, cert-manager (a ClusterIssuer), external-dns (provider, zone, credentials by
Secret reference) and KubeSpan. One anycast address pool is shared by every satellite, and
their ingress controllers serve on its address. The Constellation controller creates one
TalosCluster per member, named after it, owned by the Constellation (see
:mod:`arges.metal.constellation` and :mod:`arges.metal.addons`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from arges.api.base import Condition, Model, Object
from arges.api.cluster import CLUSTER_GROUP, Phase, TalosClusterSpec

MemberRole = Literal["barycenter", "satellite"]
ConstellationPhase = Literal["Pending", "Provisioning", "Running", "Failed"]
MeshState = Literal["Declared", "Wired"]
DNSProvider = Literal["google", "cloudflare", "aws"]
Solver = Literal["http01", "dns01"]


class CiliumAddon(Model):
    """Cilium as the CNI, installed at bootstrap by a Job (Talos' "Deploying Cilium CNI",
    method 5); Talos' own CNI is then ``none``."""

    version: str | None = Field(default=None, description="Cilium chart version (pinned).")
    cluster_id: int = Field(
        ge=1, le=255, description="ClusterMesh cluster id (cluster.id), unique in the mesh."
    )
    kube_proxy_replacement: bool = Field(
        default=True,
        description="Cilium replaces kube-proxy (Talos' kube-proxy is disabled, Cilium reaches "
        "the API through KubePrism on localhost:7445).",
    )
    mesh_endpoint: str | None = Field(
        default=None,
        description="Address of this cluster's clustermesh-apiserver (a LoadBalancer Service "
        "MetalLB announces; in one of its address pools). Set, the cluster joins the mesh of "
        "every member that sets one.",
    )


class BGPPeer(Model):
    """A router MetalLB's speakers peer with."""

    address: str = Field(description="The router's address.")
    asn: int = Field(ge=1, le=4294967295, description="The router's AS number.")
    port: int | None = Field(default=None, ge=1, le=65535, description="BGP port (179).")
    ebgp_multi_hop: bool | None = Field(
        default=None, description="The peer is more than one hop away (eBGP multihop)."
    )


class AddressPool(Model):
    """Addresses MetalLB assigns to LoadBalancer Services."""

    name: str = Field(description="Pool name (a DNS-1123 label).")
    addresses: list[str] = Field(description="CIDRs or ranges (a.b.c.d-a.b.c.e).")
    auto_assign: bool = Field(default=True, description="Assign to Services that ask no pool.")


class MetalLBAddon(Model):
    """MetalLB from its release manifest, configured by Arges: address pools, BGP peers and
    advertisements (L2 advertisements when there is no peer)."""

    version: str | None = Field(default=None, description="MetalLB release (pinned).")
    asn: int | None = Field(
        default=None, ge=1, le=4294967295, description="This cluster's AS number (with peers)."
    )
    peers: list[BGPPeer] | None = Field(default=None, description="BGP peers.")
    address_pools: list[AddressPool] | None = Field(default=None, description="Address pools.")


class IngressNginxAddon(Model):
    """ingress-nginx from its bare-metal release manifest, plus a LoadBalancer Service on its
    address (the anycast address on satellites)."""

    version: str | None = Field(default=None, description="Controller release (pinned).")
    address: str | None = Field(
        default=None,
        description="Address of the ingress Service (satellites: the anycast address, which "
        "is the default there).",
    )


class ClusterIssuer(Model):
    """cert-manager's ACME ClusterIssuer."""

    name: str = Field(default="letsencrypt", description="The ClusterIssuer's name.")
    email: str = Field(description="ACME account e-mail.")
    server: str = Field(
        default="https://acme-v02.api.letsencrypt.org/directory",
        description="ACME directory URL.",
    )
    solver: Solver = Field(
        default="http01",
        description="http01 through ingress-nginx, or dns01 with external-dns' provider and "
        "credentials (google or cloudflare).",
    )


class CertManagerAddon(Model):
    """cert-manager from its release manifest, with a ClusterIssuer."""

    version: str | None = Field(default=None, description="cert-manager release (pinned).")
    issuer: ClusterIssuer


class CredentialsReference(Model):
    """A Secret in the Constellation's namespace holding a DNS provider's credentials."""

    name: str = Field(description="The Secret's name.")


class ExternalDNSAddon(Model):
    """external-dns from its Helm chart, installed by a Job (Talos' job pattern)."""

    version: str | None = Field(default=None, description="external-dns chart version (pinned).")
    provider: DNSProvider = Field(description="google, cloudflare or aws.")
    zone: str = Field(description="The DNS zone it manages (its domain filter).")
    project: str | None = Field(default=None, description="google: the GCP project.")
    credentials_secret_ref: CredentialsReference = Field(
        description="Secret with the provider's credentials: google `credentials.json`; "
        "cloudflare `CF_API_TOKEN`; aws `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`."
    )


class Addons(Model):
    """What a member runs besides Kubernetes."""

    cilium: CiliumAddon | None = None
    metallb: MetalLBAddon | None = None
    ingress_nginx: IngressNginxAddon | None = None
    cert_manager: CertManagerAddon | None = None
    external_dns: ExternalDNSAddon | None = Field(default=None, alias="externalDNS")
    kubespan: bool = Field(
        default=False, description="KubeSpan: WireGuard between the nodes (and discovery)."
    )


class ConstellationMember(Model):
    """One cluster of the constellation."""

    name: str = Field(description="The member's name, also its TalosCluster's (DNS-1123).")
    cluster: TalosClusterSpec = Field(description="The TalosCluster spec.")
    addons: Addons = Field(default_factory=Addons, description="Its add-ons.")


class AnycastPool(Model):
    """Addresses every satellite announces over BGP (anycast)."""

    addresses: list[str] = Field(
        min_length=1, description="CIDRs (usually /32) of the anycast pool."
    )
    ingress_address: str | None = Field(
        default=None,
        description="The satellites' ingress address (default: the pool's first address).",
    )


class ConstellationSpec(Model):
    """The management cluster, the workload clusters, and what they share."""

    barycenter: ConstellationMember = Field(description="The management cluster.")
    satellites: list[ConstellationMember] | None = Field(
        default=None, description="The workload clusters."
    )
    anycast: AnycastPool | None = Field(
        default=None, description="The anycast pool shared by all satellites."
    )
    helm_image: str | None = Field(
        default=None,
        description="Image of the Jobs that install Helm-only add-ons (pinned default).",
    )


class MemberStatus(Model):
    """A member cluster as last observed."""

    name: str
    role: MemberRole
    cluster: str = Field(description="Its TalosCluster (same namespace).")
    phase: Phase | None = None
    endpoint: str = Field(description="Its Kubernetes API endpoint.")
    ingress_address: str | None = None
    control_planes: str | None = None
    workers: str | None = None
    addons: list[str] = Field(default_factory=list, description="The add-ons it declares.")


class MeshCluster(Model):
    """One cluster of the ClusterMesh."""

    name: str
    id: int
    endpoint: str = Field(description="Its clustermesh-apiserver, address:port.")


class ClusterMeshStatus(Model):
    """How the Cilium ClusterMesh is wired."""

    state: MeshState = Field(
        description="Declared (rendered into the configs), Wired (every cluster runs)."
    )
    ca_secret: str = Field(description="Secret holding the shared Cilium CA.")
    ca_fingerprint: str = Field(description="SHA-256 of the shared CA certificate (DER).")
    clusters: list[MeshCluster]


class ConstellationStatus(Model):
    """Where the constellation is."""

    phase: ConstellationPhase | None = None
    members: list[MemberStatus] | None = None
    cluster_mesh: ClusterMeshStatus | None = None
    anycast_address: str | None = Field(
        default=None, description="The satellites' shared ingress address."
    )
    observed_generation: int | None = None
    conditions: list[Condition] | None = None


class Constellation(Object):
    """Constellation declares a management cluster (the barycenter) and workload clusters
    (satellites), each a TalosCluster spec plus add-ons (Cilium with ClusterMesh, MetalLB,
    ingress-nginx, cert-manager, external-dns, KubeSpan) that Arges renders into their
    machine configs."""

    api_version: str = f"{CLUSTER_GROUP}/v1alpha1"
    kind: str = "Constellation"
    spec: ConstellationSpec
    status: ConstellationStatus = Field(default_factory=ConstellationStatus)
