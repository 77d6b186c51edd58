"""Talos machine configs for the v1.11 contract, as ``talosctl gen config`` renders them.

The structure, field order and values follow the stability fixtures of Talos v1.11
(``pkg/machinery/config/types/v1alpha1/testdata/stability/v1.11/base-*.yaml``) plus what
talosctl adds (install disk and image), as recorded in ``reference/talos-capi.md`` §1.3 and §1.4:
a single ``v1alpha1`` document per machine, certificates base64-encoded PEM, workers without
CA keys nor control-plane components. Configs are built as data and encoded once; for a given
secrets bundle and inputs the YAML is byte-stable.
"""

from __future__ import annotations

import base64
import ipaddress
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlparse

from arges.talos.errors import InvalidInput
from arges.talos.secrets import CertAndKey, SecretsBundle
from arges.talos.versions import Contract, contract

MachineType = Literal["controlplane", "worker"]
DEFAULT_INSTALL_DISK = "/dev/sda"


@dataclass(frozen=True)
class ClusterInput:
    """What ``talosctl gen config CLUSTER ENDPOINT`` and its flags decide."""

    cluster_name: str
    endpoint: str
    talos_version: str = "v1.11"
    kubernetes_version: str | None = None
    install_disk: str | None = DEFAULT_INSTALL_DISK
    install_image: str | None = None
    additional_sans: tuple[str, ...] = field(default=())
    dns_domain: str = "cluster.local"

    @property
    def contract(self) -> Contract:
        return contract(self.talos_version)

    def endpoint_host(self) -> str:
        """The endpoint's host.

        Raises:
            InvalidInput: when the endpoint is not an https URL, as talosctl refuses it.
        """
        parsed = urlparse(self.endpoint)
        if parsed.scheme != "https" or not parsed.hostname:
            raw = self.endpoint.split("://")[-1].rstrip("/") or "10.5.0.10"
            hint = f"https://{raw}" if ":" in raw.split("]")[-1] else f"https://{raw}:6443"
            raise InvalidInput(f"endpoint {self.endpoint!r} should be an https URL, e.g. {hint}")
        return parsed.hostname

    def kubernetes(self) -> str:
        """The Kubernetes version, without its ``v`` (the given one, else the Talos contract's)."""
        version = self.kubernetes_version or self.contract.kubernetes
        return version.removeprefix("v")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _pair(ck: CertAndKey, with_key: bool) -> dict[str, str]:
    return {"crt": _b64(ck.crt), "key": _b64(ck.key) if with_key else ""}


def _networks(host: str) -> tuple[list[str], list[str]]:
    try:
        if ipaddress.ip_address(host).version == 6:
            return ["fc00:db8:10::/56"], ["fc00:db8:20::/112"]
    except ValueError:
        pass
    return ["10.244.0.0/16"], ["10.96.0.0/12"]


def machine_config(
    bundle: SecretsBundle, machine_type: MachineType, spec: ClusterInput
) -> dict[str, Any]:
    """The ``v1alpha1`` document for ``machine_type`` (see the module docstring).

    Raises:
        InvalidInput: a bad endpoint. UnsupportedVersion: an unknown Talos version.
    """
    host = spec.endpoint_host()
    k8s = spec.kubernetes()
    controlplane = machine_type == "controlplane"
    install: dict[str, Any] = {}
    if spec.install_disk:
        install["disk"] = spec.install_disk
    install["image"] = spec.install_image or spec.contract.installer
    install["wipe"] = False
    machine: dict[str, Any] = {
        "type": machine_type,
        "token": bundle.trustd_token,
        "ca": _pair(bundle.os, controlplane),
        "certSANs": list(spec.additional_sans),
        "kubelet": {
            "image": f"ghcr.io/siderolabs/kubelet:v{k8s}",
            "defaultRuntimeSeccompProfileEnabled": True,
            "disableManifestsDirectory": True,
        },
        "network": {},
        "install": install,
        "features": {
            "rbac": True,
            "stableHostname": True,
            "apidCheckExtKeyUsage": True,
            "diskQuotaSupport": True,
            "kubePrism": {"enabled": True, "port": 7445},
            "hostDNS": {"enabled": True, "forwardKubeDNSToHost": True},
        },
    }
    if controlplane:
        machine["nodeLabels"] = {"node.kubernetes.io/exclude-from-external-load-balancers": ""}
    pods, services = _networks(host)
    cluster: dict[str, Any] = {
        "id": bundle.cluster_id,
        "secret": bundle.cluster_secret,
        "controlPlane": {"endpoint": spec.endpoint},
        "clusterName": spec.cluster_name,
        "network": {"dnsDomain": spec.dns_domain, "podSubnets": pods, "serviceSubnets": services},
        "token": bundle.bootstrap_token,
    }
    if controlplane:
        cluster["secretboxEncryptionSecret"] = bundle.secretbox_secret
    cluster["ca"] = _pair(bundle.k8s, controlplane)
    if controlplane:
        cluster["aggregatorCA"] = _pair(bundle.k8s_aggregator, True)
        cluster["serviceAccount"] = {"key": _b64(bundle.k8s_service_account.key)}
        cluster["apiServer"] = {
            "image": f"registry.k8s.io/kube-apiserver:v{k8s}",
            "certSANs": [host, *spec.additional_sans],
            "disablePodSecurityPolicy": True,
            "admissionControl": [
                {
                    "name": "PodSecurity",
                    "configuration": {
                        "apiVersion": "pod-security.admission.config.k8s.io/v1alpha1",
                        "defaults": {
                            "audit": "restricted",
                            "audit-version": "latest",
                            "enforce": "baseline",
                            "enforce-version": "latest",
                            "warn": "restricted",
                            "warn-version": "latest",
                        },
                        "exemptions": {
                            "namespaces": ["kube-system"],
                            "runtimeClasses": [],
                            "usernames": [],
                        },
                        "kind": "PodSecurityConfiguration",
                    },
                }
            ],
            "auditPolicy": {
                "apiVersion": "audit.k8s.io/v1",
                "kind": "Policy",
                "rules": [{"level": "Metadata"}],
            },
        }
        cluster["controllerManager"] = {"image": f"registry.k8s.io/kube-controller-manager:v{k8s}"}
        cluster["proxy"] = {"image": f"registry.k8s.io/kube-proxy:v{k8s}"}
        cluster["scheduler"] = {"image": f"registry.k8s.io/kube-scheduler:v{k8s}"}
    cluster["discovery"] = {
        "enabled": True,
        "registries": {"kubernetes": {"disabled": True}, "service": {}},
    }
    if controlplane:
        cluster["etcd"] = {"ca": _pair(bundle.etcd, True)}
    return {
        "version": "v1alpha1",
        "debug": False,
        "persist": True,
        "machine": machine,
        "cluster": cluster,
    }
