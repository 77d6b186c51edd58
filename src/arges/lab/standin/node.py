"""What the lab's stand-in makes of the machine config its agent installed: the Talos API a
node with that config serves, answered by the fake apid.

- the node: machine type, hostname (``talos-`` and its address, dashed), its addresses,
  the Talos version of ``machine.install.image``;
- its apid certificate: a control plane issues it itself from the OS CA in its config
  (``machine.ca``), for its addresses, its VIPs and the endpoint's host; a worker, whose
  config has no CA key, asks a control plane's trustd (:mod:`arges.talos.faketrustd`) with
  the machine token, at the endpoint's host;
- a control plane also serves trustd, holds the VIPs of ``machine.network.interfaces``
  (Talos gives a shared VIP to one control plane; the stand-in takes it at once), and answers
  Kubeconfig with an admin kubeconfig as ``talosctl kubeconfig`` gets it: signed by the
  Kubernetes CA of its config, for the cluster endpoint, user ``admin`` in
  ``system:masters``.
"""

from __future__ import annotations

import base64
import datetime as dt
import secrets
from dataclasses import dataclass, field
from urllib.parse import urlparse

import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from arges import certs
from arges.talos.applymode import v1alpha1
from arges.talos.components import tag
from arges.talos.errors import InvalidInput
from arges.talos.fakeapi import Identity, issue_identity
from arges.talos.faketrustd import request_identity
from arges.talos.secrets import CertAndKey

ADMIN_VALIDITY = dt.timedelta(days=365)
DEFAULT_VERSION = "v1.11.6"


@dataclass(frozen=True)
class Facts:
    """What the stand-in reads from its machine config (see the module docstring)."""

    machine_type: str
    hostname: str
    addresses: tuple[str, ...]
    os_ca: CertAndKey
    token: str
    cluster_name: str
    endpoint: str
    talos_version: str
    vips: tuple[str, ...] = ()
    kubernetes_ca: CertAndKey | None = field(default=None, repr=False)

    @property
    def control_plane(self) -> bool:
        """Whether the config is a control plane's."""
        return self.machine_type == "controlplane"

    @property
    def endpoint_host(self) -> str:
        """The host of the cluster endpoint (where a worker finds trustd)."""
        return urlparse(self.endpoint).hostname or ""


def _pem(value: object) -> bytes:
    return base64.b64decode(str(value)) if value else b""


def facts(config: str, addresses: list[str]) -> Facts:
    """The facts of ``config`` for a node at ``addresses`` (the first one names it).

    Raises:
        InvalidInput: not a v1alpha1 machine config with a machine type and an OS CA.
    """
    doc = v1alpha1(config)
    if doc is None:
        raise InvalidInput("the machine config has no v1alpha1 document")
    machine = doc.get("machine") or {}
    cluster = doc.get("cluster") or {}
    ca = machine.get("ca") or {}
    if machine.get("type") not in ("controlplane", "worker") or not ca.get("crt"):
        raise InvalidInput("the machine config has no machine type or no OS CA")
    vips = tuple(
        str(i["vip"]["ip"])
        for i in (machine.get("network") or {}).get("interfaces") or []
        if isinstance(i, dict) and isinstance(i.get("vip"), dict) and i["vip"].get("ip")
    )
    k8s = cluster.get("ca") or {}
    first = addresses[0] if addresses else "127.0.0.1"
    return Facts(
        machine_type=str(machine["type"]),
        hostname="talos-" + first.replace(".", "-").replace(":", "-"),
        addresses=tuple(addresses),
        os_ca=CertAndKey(_pem(ca.get("crt")), _pem(ca.get("key"))),
        token=str(machine.get("token") or ""),
        cluster_name=str(cluster.get("clusterName") or ""),
        endpoint=str((cluster.get("controlPlane") or {}).get("endpoint") or ""),
        talos_version=tag((machine.get("install") or {}).get("image")) or DEFAULT_VERSION,
        vips=vips if machine["type"] == "controlplane" else (),
        kubernetes_ca=CertAndKey(_pem(k8s.get("crt")), _pem(k8s.get("key")))
        if k8s.get("key")
        else None,
    )


async def identity(node: Facts, *, trustd_port: int) -> Identity:
    """The node's apid certificate (see the module docstring).

    Raises:
        InvalidSecrets: a control plane's OS CA key does not load; OSError, ssl.SSLError,
            grpclib.exceptions.GRPCError: a worker's trustd cannot be reached or refuses.
    """
    if node.control_plane:
        names = [*node.addresses, *node.vips]
        if node.endpoint_host and node.endpoint_host not in names:
            names.append(node.endpoint_host)
        return issue_identity(node.os_ca, names, node.hostname)
    return await request_identity(
        node.endpoint_host,
        node.os_ca.crt,
        node.token,
        list(node.addresses),
        node.hostname,
        port=trustd_port,
    )


def admin_kubeconfig(node: Facts, now: dt.datetime | None = None) -> str:
    """The admin kubeconfig a control plane answers Kubeconfig with (see the module
    docstring); a placeholder without the Kubernetes CA key (a worker: never asked)."""
    ca = node.kubernetes_ca
    if ca is None:
        return ""
    issued = (now or dt.datetime.now(dt.UTC)).replace(microsecond=0) - dt.timedelta(minutes=1)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters"),
            x509.NameAttribute(NameOID.COMMON_NAME, "admin"),
        ]
    )
    cert = certs.issue(
        subject,
        key.public_key(),
        ca.private_key(),
        issuer=ca.certificate().subject,
        serial=secrets.randbits(128) or 1,
        not_before=issued,
        not_after=issued + ADMIN_VALIDITY,
        usages=("digitalSignature",),
        extended_usages=(ExtendedKeyUsageOID.CLIENT_AUTH,),
    )
    name = node.cluster_name
    user = f"admin@{name}"
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": name,
                "cluster": {
                    "server": node.endpoint,
                    "certificate-authority-data": base64.b64encode(ca.crt).decode(),
                },
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": base64.b64encode(
                        certs.certificate_pem(cert)
                    ).decode(),
                    "client-key-data": base64.b64encode(certs.traditional_pem(key)).decode(),
                },
            }
        ],
        "contexts": [
            {"name": user, "context": {"cluster": name, "namespace": "default", "user": user}}
        ],
        "current-context": user,
    }
    return yaml.safe_dump(doc, sort_keys=False)
