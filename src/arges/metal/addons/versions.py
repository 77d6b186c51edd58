"""Pinned upstream releases of the add-ons, and the URLs of their release manifests.

Each add-on's ``version`` in a Constellation overrides its default here. The nodes fetch the
manifests (Talos' ``cluster.extraManifests``), never Arges; the Helm charts are fetched by the
install Jobs inside the cluster.
"""

from __future__ import annotations

import re

CILIUM = "1.16.5"
CILIUM_CHART_REPO = "https://helm.cilium.io/"
METALLB = "v0.14.8"
INGRESS_NGINX = "v1.12.1"
CERT_MANAGER = "v1.16.2"
EXTERNAL_DNS = "1.15.0"
EXTERNAL_DNS_CHART_REPO = "https://kubernetes-sigs.github.io/external-dns/"
HELM_IMAGE = "docker.io/alpine/helm:3.16.3"
"""The image of the Helm install Jobs: Helm 3.16.3 on Alpine (the Helm project publishes no
image of its own)."""

_VERSION = re.compile(r"^v?[0-9]+\.[0-9]+\.[0-9]+([-.][0-9A-Za-z.]+)?$")


def check(version: str, what: str) -> str | None:
    """Why ``version`` is not a release version (``1.2.3``, ``v1.2.3``, ``v1.2.3-rc.1``), or
    None: it goes into URLs and Helm arguments, so nothing else is let through."""
    if _VERSION.match(version):
        return None
    return f"{what}: {version!r} is not a release version such as v1.2.3"


def metallb_manifest(version: str) -> str:
    """MetalLB's native (non-FRR) release manifest: the CRDs, the controller and speakers in
    ``metallb-system`` (https://metallb.io/installation/)."""
    return (
        f"https://raw.githubusercontent.com/metallb/metallb/{version}/config/manifests/"
        "metallb-native.yaml"
    )


def ingress_nginx_manifest(version: str) -> str:
    """ingress-nginx's bare-metal release manifest (a NodePort Service; Arges adds the
    LoadBalancer one), https://kubernetes.github.io/ingress-nginx/deploy/#bare-metal-clusters."""
    return (
        "https://raw.githubusercontent.com/kubernetes/ingress-nginx/"
        f"controller-{version}/deploy/static/provider/baremetal/deploy.yaml"
    )


def cert_manager_manifest(version: str) -> str:
    """cert-manager's release manifest (https://cert-manager.io/docs/installation/kubectl/)."""
    return f"https://github.com/cert-manager/cert-manager/releases/download/{version}/cert-manager.yaml"
