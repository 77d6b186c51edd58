"""Cilium: Helm values for a member, its ClusterMesh wiring, and the shared CA.

Values follow Talos' "Deploying Cilium CNI" guide (v1.11): IPAM mode ``kubernetes``, the
agent's capabilities without ``SYS_MODULE`` (Talos loads no modules for workloads), Talos'
cgroup v2 mount (``cgroup.autoMount.enabled=false``, ``cgroup.hostRoot=/sys/fs/cgroup``), and
with kube-proxy replacement the API server through KubePrism (``k8sServiceHost=localhost``,
``k8sServicePort=7445``).

ClusterMesh follows Cilium's "Setting up Cluster Mesh" guide: each cluster has a unique name
and id (1 to 255, ``cluster.name``/``cluster.id``), runs the clustermesh-apiserver behind a
LoadBalancer Service (here on the address the member declares, announced by MetalLB), and all
share one certificate authority: Cilium's chart reuses a ``cilium-ca`` Secret it finds in its
namespace (keys ``ca.crt``, ``ca.key``), so Arges generates one CA per Constellation and
delivers the same Secret to every member (``clustermesh.apiserver.tls.auto.method=helm`` then
issues each cluster's certificates from it). Every member lists the others in
``clustermesh.config.clusters`` (name, address, port 2379).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import os
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from arges import certs
from arges.api.constellation import CiliumAddon
from arges.metal.addons import versions
from arges.metal.addons.helmjob import helm_install

NAMESPACE = "kube-system"
CA_SECRET = "cilium-ca"
MESH_PORT = 2379
LB_IPS_ANNOTATION = "metallb.universe.tf/loadBalancerIPs"
"""MetalLB's annotation asking a Service for given addresses (MetalLB v0.13 and later)."""
AGENT_CAPABILITIES = [
    "CHOWN",
    "KILL",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "SYS_ADMIN",
    "SYS_RESOURCE",
    "DAC_OVERRIDE",
    "FOWNER",
    "SETGID",
    "SETUID",
]
CLEAN_STATE_CAPABILITIES = ["NET_ADMIN", "SYS_ADMIN", "SYS_RESOURCE"]
KUBEPRISM_PORT = 7445
CA_VALIDITY = dt.timedelta(days=3650)


@dataclass(frozen=True)
class MeshPeer:
    """A cluster of the mesh as the others reach it."""

    name: str
    id: int
    address: str

    @property
    def endpoint(self) -> str:
        return f"{self.address}:{MESH_PORT}"


def values(name: str, addon: CiliumAddon, mesh: list[MeshPeer]) -> dict[str, Any]:
    """The chart values of member ``name`` (``mesh``: every cluster of the mesh, this one
    included when it takes part)."""
    out: dict[str, Any] = {
        "ipam": {"mode": "kubernetes"},
        "kubeProxyReplacement": addon.kube_proxy_replacement,
        "securityContext": {
            "capabilities": {
                "ciliumAgent": AGENT_CAPABILITIES,
                "cleanCiliumState": CLEAN_STATE_CAPABILITIES,
            }
        },
        "cgroup": {"autoMount": {"enabled": False}, "hostRoot": "/sys/fs/cgroup"},
        "cluster": {"name": name, "id": addon.cluster_id},
    }
    if addon.kube_proxy_replacement:
        out["k8sServiceHost"] = "localhost"
        out["k8sServicePort"] = KUBEPRISM_PORT
    if addon.mesh_endpoint is not None:
        out["clustermesh"] = {
            "useAPIServer": True,
            "apiserver": {
                "service": {
                    "type": "LoadBalancer",
                    "annotations": {LB_IPS_ANNOTATION: addon.mesh_endpoint},
                },
                "tls": {"auto": {"enabled": True, "method": "helm"}},
            },
            "config": {
                "enabled": True,
                "clusters": [
                    {"name": p.name, "port": MESH_PORT, "ips": [p.address]}
                    for p in mesh
                    if p.name != name
                ],
            },
        }
    return out


def install(
    name: str, addon: CiliumAddon, mesh: list[MeshPeer], image: str
) -> list[dict[str, Any]]:
    """The bootstrap Job installing Cilium's chart (see :mod:`.helmjob`)."""
    return helm_install(
        release="cilium",
        chart="cilium",
        repo=versions.CILIUM_CHART_REPO,
        version=addon.version or versions.CILIUM,
        namespace=NAMESPACE,
        values=values(name, addon, mesh),
        image=image,
        bootstrap=True,
    )


def ca_secret(crt_pem: str, key_pem: str) -> dict[str, Any]:
    """The ``kube-system/cilium-ca`` Secret that Cilium's chart reuses as its CA."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": CA_SECRET, "namespace": NAMESPACE},
        "type": "Opaque",
        "data": {
            "ca.crt": base64.b64encode(crt_pem.encode()).decode(),
            "ca.key": base64.b64encode(key_pem.encode()).decode(),
        },
    }


def new_ca(name: str, now: dt.datetime) -> tuple[str, str]:
    """A new ECDSA P-256 CA for constellation ``name``: (certificate PEM, key PEM), valid ten
    years from ``now``."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "arges"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"Cilium CA ({name})"),
        ]
    )
    cert = certs.issue(
        subject,
        key.public_key(),
        key,
        serial=int.from_bytes(os.urandom(16), "big") or 1,
        not_before=now,
        not_after=now + CA_VALIDITY,
        ca=True,
        usages=("digitalSignature", "keyCertSign", "cRLSign"),
    )
    return certs.certificate_pem(cert).decode(), certs.traditional_pem(key).decode()


def fingerprint(crt_pem: str) -> str:
    """``sha256:<hex>`` of a certificate's DER form (what ``openssl x509 -fingerprint
    -sha256`` shows, without colons)."""
    der = x509.load_pem_x509_certificate(crt_pem.encode()).public_bytes(serialization.Encoding.DER)
    return "sha256:" + hashlib.sha256(der).hexdigest()
