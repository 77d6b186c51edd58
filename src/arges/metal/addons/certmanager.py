"""cert-manager's ACME ClusterIssuer (https://cert-manager.io/docs/configuration/acme/).

``http01`` solves challenges through ingress-nginx (``ingressClassName: nginx``); ``dns01``
through the DNS provider external-dns uses, with the same credentials (Cloud DNS: the
service-account key ``credentials.json``; Cloudflare: ``CF_API_TOKEN``), read from the Secret
``external-dns-credentials`` in cert-manager's own namespace, where a ClusterIssuer's Secrets
live (its "cluster resource namespace").
"""

from __future__ import annotations

from typing import Any

from arges.api.constellation import ClusterIssuer, ExternalDNSAddon
from arges.metal.addons.externaldns import SECRET

NAMESPACE = "cert-manager"


def cluster_issuer(issuer: ClusterIssuer, dns: ExternalDNSAddon | None) -> dict[str, Any]:
    """The ClusterIssuer (``dns``: external-dns' settings, needed by ``dns01``).

    Raises:
        ValueError: dns01 without external-dns, or with a provider it does not cover here.
    """
    solver: dict[str, Any]
    if issuer.solver == "http01":
        solver = {"http01": {"ingress": {"ingressClassName": "nginx"}}}
    elif dns is None:
        raise ValueError("the dns01 solver uses external-dns' provider: declare externalDNS")
    elif dns.provider == "google":
        cloud_dns: dict[str, Any] = {
            "serviceAccountSecretRef": {"name": SECRET, "key": "credentials.json"}
        }
        if dns.project:
            cloud_dns["project"] = dns.project
        solver = {"dns01": {"cloudDNS": cloud_dns}, "selector": {"dnsZones": [dns.zone]}}
    elif dns.provider == "cloudflare":
        solver = {
            "dns01": {"cloudflare": {"apiTokenSecretRef": {"name": SECRET, "key": "CF_API_TOKEN"}}},
            "selector": {"dnsZones": [dns.zone]},
        }
    else:
        raise ValueError(f"the dns01 solver is not rendered for provider {dns.provider}")
    return {
        "apiVersion": "cert-manager.io/v1",
        "kind": "ClusterIssuer",
        "metadata": {"name": issuer.name},
        "spec": {
            "acme": {
                "email": issuer.email,
                "server": issuer.server,
                "privateKeySecretRef": {"name": f"{issuer.name}-account-key"},
                "solvers": [solver],
            }
        },
    }
