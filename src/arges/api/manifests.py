"""What runs Arges in a Kubernetes cluster: namespace, RBAC and Deployment, as plain objects.

One source for two renderings: ``deploy/`` (``kubectl apply -k deploy``; regenerate with
``python -m arges.api.manifests deploy``, a test fails when it is stale) and the Cluster API
provider's ``infrastructure-components.yaml`` (``arges capi components``), where clusterctl
substitutes ``${VARIABLES}``.
"""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from arges.api.crds import all_crds, render
from arges.api.infrastructure import INFRASTRUCTURE_GROUP

NAMESPACE = "arges-system"
NAME = "arges"
IMAGE = "ghcr.io/arges-dev/arges:0.1.0"
PROVIDER_LABEL = {"cluster.x-k8s.io/provider": "infrastructure-arges"}

RULES: list[dict[str, Any]] = [
    # What Arges' controllers, boot services and metadata service read and write, and no more.
    {
        "apiGroups": ["metal.arges.dev"],
        "resources": ["servers", "serverclasses", "environments", "serverbindings"],
        "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"],
    },
    {
        "apiGroups": ["metal.arges.dev"],
        "resources": [
            "servers/status",
            "serverclasses/status",
            "environments/status",
            "serverbindings/status",
        ],
        "verbs": ["get", "update", "patch"],
    },
    # TalosClusters are created and removed by the Constellation controller (its members).
    {
        "apiGroups": ["cluster.arges.dev"],
        "resources": ["talosclusters"],
        "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"],
    },
    {
        "apiGroups": ["cluster.arges.dev"],
        "resources": ["talosclusters/status"],
        "verbs": ["get", "update", "patch"],
    },
    {
        "apiGroups": ["cluster.arges.dev"],
        "resources": ["constellations"],
        "verbs": ["get", "list", "watch"],
    },
    {
        "apiGroups": ["cluster.arges.dev"],
        "resources": ["constellations/status"],
        "verbs": ["get", "update", "patch"],
    },
    # The plane-wide pause every instance follows (read; created when missing) and
    # acknowledges in its status.
    {
        "apiGroups": ["metal.arges.dev"],
        "resources": ["managementplanes"],
        # list: the start's check that every CRD is installed.
        "verbs": ["get", "list", "create"],
    },
    {
        "apiGroups": ["metal.arges.dev"],
        "resources": ["managementplanes/status"],
        "verbs": ["get", "update", "patch"],
    },
    # The Cluster API infrastructure provider: its own kinds, and Cluster API's Clusters and
    # Machines, read and watched once they are served (discovery, which every authenticated
    # user may read, says when).
    {
        "apiGroups": [INFRASTRUCTURE_GROUP],
        "resources": ["metalclusters", "metalmachines", "metalmachinetemplates"],
        "verbs": ["get", "list", "watch", "update", "patch"],
    },
    {
        "apiGroups": [INFRASTRUCTURE_GROUP],
        "resources": ["metalclusters/status", "metalmachines/status"],
        "verbs": ["get", "update", "patch"],
    },
    {
        "apiGroups": ["cluster.x-k8s.io"],
        "resources": ["clusters", "machines"],
        "verbs": ["get", "list", "watch"],
    },
    # BMC credentials (read, labelled and watched: only the labelled ones), cluster secrets
    # bundles, machine configs, talosconfigs, kubeconfigs (written and removed with their
    # clusters) and Cluster API bootstrap data (read).
    {
        "apiGroups": [""],
        "resources": ["secrets"],
        "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"],
    },
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
    # The replicas' leader election (Lease "arges" in Arges' namespace).
    {
        "apiGroups": ["coordination.k8s.io"],
        "resources": ["leases"],
        "verbs": ["get", "create", "update"],
    },
]


def namespace(name: str = NAMESPACE) -> dict[str, Any]:
    """The namespace Arges runs in."""
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def rbac(namespace: str = NAMESPACE) -> list[dict[str, Any]]:
    """The service account, the ClusterRole of :data:`RULES`, and their binding."""
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": NAME}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": NAME},
            "rules": RULES,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": NAME},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": NAME,
            },
            "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": namespace}],
        },
    ]


def deployment(
    *, image: str = "arges", boot_address: str = "$(NODE_IP)", dhcp_mode: str = "proxy"
) -> dict[str, Any]:
    """Two replicas of ``arges up --in-cluster --leader-elect`` on the host network.

    The replicas elect a leader on the Lease ``arges`` (:mod:`arges.kube.leaderelection`):
    the leader runs the controllers and DHCP (two DHCP servers on one provisioning network
    would both answer), the other serves boot HTTP and TFTP, which are read-only, and takes
    over within about 12 s of the leader's death. ProxyDHCP and TFTP answer broadcasts on the
    provisioning network, so the pods use their nodes' network, on two different nodes (the
    ports are the host's); schedule them on nodes attached to that network (a nodeSelector).
    Updates replace one replica at a time (no surge: a third pod would need a third node).
    The state volume holds the asset cache, the agent image and DHCP leases, all rebuilt or
    fetched again if lost.
    """
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": NAME},
        "spec": {
            "replicas": 2,
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0},
            },
            "selector": {"matchLabels": {"app.kubernetes.io/name": NAME}},
            "template": {
                "metadata": {"labels": {"app.kubernetes.io/name": NAME}},
                "spec": {
                    "serviceAccountName": NAME,
                    "affinity": {
                        "podAntiAffinity": {
                            "requiredDuringSchedulingIgnoredDuringExecution": [
                                {
                                    "labelSelector": {
                                        "matchLabels": {"app.kubernetes.io/name": NAME}
                                    },
                                    "topologyKey": "kubernetes.io/hostname",
                                }
                            ]
                        }
                    },
                    "hostNetwork": True,
                    "dnsPolicy": "ClusterFirstWithHostNet",
                    "containers": [
                        {
                            # "manager": the name clusterctl's provider contract expects.
                            "name": "manager",
                            "image": image,
                            "args": [
                                "up",
                                "--in-cluster",
                                "--leader-elect",
                                "--data-dir=/var/lib/arges",
                                f"--boot-address={boot_address}",
                                f"--dhcp-mode={dhcp_mode}",
                            ],
                            "env": [
                                {
                                    "name": "NODE_IP",
                                    "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}},
                                }
                            ],
                            "ports": [
                                {"name": "http", "containerPort": 8081, "protocol": "TCP"},
                                {"name": "tftp", "containerPort": 69, "protocol": "UDP"},
                                {"name": "dhcp", "containerPort": 67, "protocol": "UDP"},
                                {"name": "proxydhcp", "containerPort": 4011, "protocol": "UDP"},
                            ],
                            "securityContext": {
                                "capabilities": {"add": ["NET_BIND_SERVICE", "NET_RAW"]}
                            },
                            "volumeMounts": [{"name": "state", "mountPath": "/var/lib/arges"}],
                        }
                    ],
                    "volumes": [{"name": "state", "emptyDir": {}}],
                },
            },
        },
    }


COMPONENT_VARIABLES = {
    "ARGES_BOOT_ADDRESS": "the address servers reach Arges at (default: the node's, $(NODE_IP))",
    "ARGES_DHCP_MODE": "proxy (beside the site's DHCP server, the default), full, or off",
}
"""The ``${VARIABLES}`` of ``infrastructure-components.yaml``, all with defaults."""


def components() -> list[dict[str, Any]]:
    """``infrastructure-components.yaml`` of the Cluster API provider: exactly one Namespace,
    the CRDs, RBAC and the Deployment, each labelled ``cluster.x-k8s.io/provider``
    (clusterctl's provider contract)."""
    docs = [
        namespace(),
        *all_crds(),
        *rbac(),
        deployment(
            image=IMAGE,
            boot_address="${ARGES_BOOT_ADDRESS:=$(NODE_IP)}",
            dhcp_mode="${ARGES_DHCP_MODE:=proxy}",
        ),
    ]
    for doc in docs:
        meta = doc.setdefault("metadata", {})
        meta["labels"] = {**(meta.get("labels") or {}), **PROVIDER_LABEL}
        if doc["kind"] in ("ServiceAccount", "Deployment"):
            meta["namespace"] = NAMESPACE
    return docs


PROVIDER_VERSION = "v0.1.0"
CONTRACT = "v1beta1"
"""The contract clusterctl checks: v1beta1, which Cluster API v1.5 to v1.15 accept (the CRDs
are labelled for v1beta2 too, whose status fields Arges also writes)."""


def provider_metadata() -> dict[str, Any]:
    """clusterctl's ``metadata.yaml``: the release series of this provider and the Cluster
    API contract each implements."""
    return {
        "apiVersion": "clusterctl.cluster.x-k8s.io/v1alpha3",
        "kind": "Metadata",
        "releaseSeries": [{"major": 0, "minor": 1, "contract": CONTRACT}],
    }


def cluster_template() -> str:
    """The provider's ``cluster-template.yaml`` (text: clusterctl substitutes variables in
    it before it is YAML)."""
    return (resources.files("arges.api") / "templates" / "cluster-template.yaml").read_text()


TEMPLATE_VARIABLES = (
    "CLUSTER_NAME",
    "NAMESPACE",
    "KUBERNETES_VERSION",
    "CONTROL_PLANE_MACHINE_COUNT",
    "WORKER_MACHINE_COUNT",
    "CONTROL_PLANE_ENDPOINT",
    "CONTROL_PLANE_PORT",
    "CONTROL_PLANE_SERVERCLASS",
    "WORKER_SERVERCLASS",
    "TALOS_VERSION",
    "POD_CIDR",
    "SERVICE_CIDR",
)
"""The variables of :func:`cluster_template`."""


def repository(directory: Path) -> Path:
    """Write a clusterctl local repository for this provider under ``directory``
    (``infrastructure-arges/<version>/`` with the components, metadata and cluster template)
    and a clusterctl configuration naming it; returns the configuration's path
    (``clusterctl init --infrastructure arges --config <it>``)."""
    release = directory / "infrastructure-arges" / PROVIDER_VERSION
    release.mkdir(parents=True, exist_ok=True)
    components_path = release / "infrastructure-components.yaml"
    components_path.write_text(yaml.safe_dump_all(components(), sort_keys=False, width=100))
    (release / "metadata.yaml").write_text(yaml.safe_dump(provider_metadata(), sort_keys=False))
    (release / "cluster-template.yaml").write_text(cluster_template())
    config = directory / "clusterctl.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "providers": [
                    {
                        "name": "arges",
                        "type": "InfrastructureProvider",
                        "url": str(components_path.resolve()),
                    }
                ]
            },
            sort_keys=False,
        )
    )
    return config


GENERATED = (
    "# Generated from src/arges/api/manifests.py by `python -m arges.api.manifests deploy`.\n"
)


def deploy_files() -> dict[str, str]:
    """The generated files of ``deploy/`` (relative path -> text)."""
    files = {f"crds/{c['metadata']['name']}.yaml": render(c) for c in all_crds()}
    files["namespace.yaml"] = GENERATED + render(namespace())
    files["rbac.yaml"] = GENERATED + yaml.safe_dump_all(rbac(), sort_keys=False, width=100)
    files["deployment.yaml"] = GENERATED + render(deployment())
    return files


def write(directory: Path) -> list[Path]:
    """Write :func:`deploy_files` under ``directory``; returns the paths."""
    paths = []
    for name, text in deploy_files().items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        paths.append(path)
    return paths


if __name__ == "__main__":
    for written in write(Path(sys.argv[1] if len(sys.argv) > 1 else "deploy")):
        print(written)
