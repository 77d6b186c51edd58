"""A Helm chart installed by a Job from an inline manifest: Talos' way for Helm-only add-ons.

Talos' "Deploying Cilium CNI" guide (v1.11, method 5, "Using a job") installs Cilium at
bootstrap with a Job in ``cluster.inlineManifests``: a ServiceAccount bound to
``cluster-admin``, and a Job on a control plane, on the host network (there is no CNI yet, so
it reaches the API server at its pod's own address, port 6443), tolerating every taint. The
same pattern installs any chart: here the Job runs ``helm upgrade --install`` of a pinned chart
version with its values from a ConfigMap. Talos applies inline manifests once (it creates
missing objects and never updates them), so the Job runs at bootstrap; a later change reaches
the cluster through ``talosctl upgrade-k8s`` or a roll-out.
"""

from __future__ import annotations

from typing import Any

import yaml

VALUES_KEY = "values.yaml"
VALUES_DIR = "/arges"
BACKOFF_LIMIT = 10
"""Retries of the Job's pod: a chart installed before the cluster can run it (its CNI, its
API) fails and is tried again, with Kubernetes' growing back-off."""


def _name(release: str) -> str:
    return f"arges-install-{release}"


def helm_install(
    *,
    release: str,
    chart: str,
    repo: str,
    version: str,
    namespace: str,
    values: dict[str, Any],
    image: str,
    bootstrap: bool,
) -> list[dict[str, Any]]:
    """The objects that install ``chart`` (from ``repo``, at ``version``) as ``release`` in
    ``namespace`` with ``values``: ServiceAccount, ClusterRoleBinding, ConfigMap and Job, all
    named ``arges-install-<release>``.

    ``bootstrap`` runs the Job as Talos' guide runs Cilium's, before any CNI: on the host
    network of a control plane, tolerating every taint, talking to the API server at the pod's
    address (``KUBERNETES_SERVICE_HOST`` from ``status.podIP``, port 6443).
    """
    name = _name(release)
    helm = [
        *("upgrade", "--install", release, chart),
        *("--repo", repo, "--version", version, "--namespace", namespace),
        *("--values", f"{VALUES_DIR}/{VALUES_KEY}"),
    ]
    env: list[dict[str, Any]] = [
        # Helm writes its caches; keep them in the pod's scratch space.
        {"name": "HELM_CACHE_HOME", "value": "/tmp/helm/cache"},
        {"name": "HELM_CONFIG_HOME", "value": "/tmp/helm/config"},
        {"name": "HELM_DATA_HOME", "value": "/tmp/helm/data"},
    ]
    pod: dict[str, Any] = {
        "serviceAccountName": name,
        "restartPolicy": "OnFailure",
        "containers": [
            {
                "name": "helm",
                "image": image,
                "command": ["helm"],
                "args": helm,
                "env": env,
                "volumeMounts": [{"name": "values", "mountPath": VALUES_DIR, "readOnly": True}],
            }
        ],
        "volumes": [{"name": "values", "configMap": {"name": name}}],
    }
    if bootstrap:
        env += [
            {
                "name": "KUBERNETES_SERVICE_HOST",
                "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "status.podIP"}},
            },
            {"name": "KUBERNETES_SERVICE_PORT", "value": "6443"},
        ]
        pod["hostNetwork"] = True
        pod["tolerations"] = [{"operator": "Exists"}]
        pod["affinity"] = {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {
                                    "key": "node-role.kubernetes.io/control-plane",
                                    "operator": "Exists",
                                }
                            ]
                        }
                    ]
                }
            }
        }
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": name, "namespace": namespace},
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": name},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "cluster-admin",
            },
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace},
            "data": {VALUES_KEY: yaml.safe_dump(values, sort_keys=False)},
        },
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "backoffLimit": BACKOFF_LIMIT,
                "template": {"metadata": {"labels": {"app": name}}, "spec": pod},
            },
        },
    ]
