"""external-dns from its Helm chart (kubernetes-sigs/external-dns), and its credentials.

The chart's values (v1.15): ``provider.name``, ``domainFilters`` (the zone), ``txtOwnerId``,
``sources`` (Services and Ingresses), ``policy: sync``, and the provider's credentials from a
Secret ``external-dns-credentials`` that Arges writes into the cluster from the Secret the
Constellation names (so the credentials live in Secrets only: the management cluster's, the
member configs', the workload cluster's):

- google: the service-account key ``credentials.json`` mounted as a file,
  ``GOOGLE_APPLICATION_CREDENTIALS`` pointing at it, and ``--google-project``;
- cloudflare: ``CF_API_TOKEN`` in the environment;
- aws: ``AWS_ACCESS_KEY_ID`` and ``AWS_SECRET_ACCESS_KEY`` in the environment.

Every satellite serves the same names on the same anycast address, so all members share one
``txtOwnerId`` (the Constellation's name): they agree on the records instead of each refusing
the others' as foreign.
"""

from __future__ import annotations

from typing import Any

from arges.api.constellation import DNSProvider, ExternalDNSAddon
from arges.metal.addons import versions
from arges.metal.addons.helmjob import helm_install

NAMESPACE = "external-dns"
SECRET = "external-dns-credentials"
MOUNT = "/etc/external-dns"
KEYS: dict[DNSProvider, tuple[str, ...]] = {
    "google": ("credentials.json",),
    "cloudflare": ("CF_API_TOKEN",),
    "aws": ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"),
}
"""The keys each provider's credentials Secret must hold."""


def values(addon: ExternalDNSAddon, owner: str) -> dict[str, Any]:
    """The chart values (``owner``: the TXT owner id shared by the constellation)."""
    out: dict[str, Any] = {
        "provider": {"name": addon.provider},
        "domainFilters": [addon.zone],
        "txtOwnerId": owner,
        "policy": "sync",
        "sources": ["service", "ingress"],
    }
    if addon.provider == "google":
        out["extraVolumes"] = [{"name": "credentials", "secret": {"secretName": SECRET}}]
        out["extraVolumeMounts"] = [{"name": "credentials", "mountPath": MOUNT, "readOnly": True}]
        out["env"] = [
            {"name": "GOOGLE_APPLICATION_CREDENTIALS", "value": f"{MOUNT}/credentials.json"}
        ]
        if addon.project:
            out["extraArgs"] = [f"--google-project={addon.project}"]
    else:
        out["env"] = [
            {"name": key, "valueFrom": {"secretKeyRef": {"name": SECRET, "key": key}}}
            for key in KEYS[addon.provider]
        ]
    return out


def install(addon: ExternalDNSAddon, owner: str, image: str) -> list[dict[str, Any]]:
    """Its namespace and the Job installing the chart (after the CNI: not a bootstrap Job)."""
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        *helm_install(
            release="external-dns",
            chart="external-dns",
            repo=versions.EXTERNAL_DNS_CHART_REPO,
            version=addon.version or versions.EXTERNAL_DNS,
            namespace=NAMESPACE,
            values=values(addon, owner),
            image=image,
            bootstrap=False,
        ),
    ]


def credentials(namespace: str, data: dict[str, str]) -> dict[str, Any]:
    """The credentials Secret in ``namespace`` (``data``: base64 values, as a Secret's)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": SECRET, "namespace": namespace},
        "type": "Opaque",
        "data": dict(data),
    }
