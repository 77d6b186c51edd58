"""The Cluster API world's CRDs install and validate as on kube-apiserver (real kubectl).

The 15 CRDs are read from ../shared/capi beside the repository (Cluster API core, CABPT,
CACPPT, Sidero); they are third-party files and never copied into the project.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.integration.conftest import Cluster

CAPI = Path(__file__).resolve().parents[2].parent / "shared" / "capi"


def crd_files() -> list[Path]:
    if not CAPI.is_dir():
        pytest.skip(f"the upstream CRDs are not at {CAPI} (../shared/capi beside the repo)")
    return [
        path
        for path in sorted(CAPI.glob("*/*.yaml"))
        if any(
            (doc or {}).get("kind") == "CustomResourceDefinition"
            for doc in yaml.safe_load_all(path.read_text())
        )
    ]


def unhealthy_cluster(condition: str) -> str:
    """A v1beta2 Cluster whose control plane health check names ``condition``."""
    return yaml.safe_dump(
        {
            "apiVersion": "cluster.x-k8s.io/v1beta2",
            "kind": "Cluster",
            "metadata": {"name": f"c-{condition.lower()}", "namespace": "default"},
            "spec": {
                "topology": {
                    "classRef": {"name": "talos"},
                    "version": "v1.33.0",
                    "controlPlane": {
                        "healthCheck": {
                            "checks": {
                                "unhealthyMachineConditions": [
                                    {"type": condition, "status": "False", "timeoutSeconds": 300}
                                ]
                            }
                        }
                    },
                }
            },
        }
    )


RULE_MESSAGE = (
    "type must not be one of: Ready, Available, HealthCheckSucceeded, OwnerRemediated, "
    "ExternallyRemediated"
)


async def test_upstream_crds_install_and_enforce_their_rules(cluster: Cluster) -> None:
    files = crd_files()
    assert len(files) == 15, [f.name for f in files]
    await cluster.kubectl("apply", *(arg for path in files for arg in ("-f", str(path))))
    # Established comes just after creation, as with kube-apiserver's controllers.
    await cluster.kubectl("wait", "--for", "condition=Established", "crd", "--all", "--timeout=20s")
    out = await cluster.kubectl("get", "crd", "-o", "json")
    crds = json.loads(out.out)["items"]
    assert len(crds) == 15
    for crd in crds:
        conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
        assert conditions.get("Established") == "True", crd["metadata"]["name"]

    # A rule on each item of a nested list, as kube-apiserver words its refusal.
    refused = await cluster.kubectl(
        "apply", "-f", "-", stdin=unhealthy_cluster("Ready"), check=False
    )
    assert refused.code != 0
    assert (
        'The Cluster "c-ready" is invalid: '
        "spec.topology.controlPlane.healthCheck.checks.unhealthyMachineConditions[0].type: "
        f'Invalid value: "string": {RULE_MESSAGE}'
    ) in refused.err, refused.err
    await cluster.kubectl("apply", "-f", "-", stdin=unhealthy_cluster("DiskPressure"))

    # The same rule in another CRD and version (MachineHealthCheck v1beta1).
    mhc = {
        "apiVersion": "cluster.x-k8s.io/v1beta1",
        "kind": "MachineHealthCheck",
        "metadata": {"name": "mhc", "namespace": "default"},
        "spec": {
            "clusterName": "c-diskpressure",
            "selector": {},
            "unhealthyConditions": [{"type": "Ready", "status": "Unknown", "timeout": "300s"}],
            "unhealthyMachineConditions": [
                {"type": "Available", "status": "False", "timeout": "300s"}
            ],
        },
    }
    refused = await cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(mhc), check=False)
    assert "spec.unhealthyMachineConditions[0].type: Invalid value" in refused.err, refused.err
    assert RULE_MESSAGE in refused.err

    # list-type map: two availability gates for one condition type are refused.
    gates = {
        "apiVersion": "cluster.x-k8s.io/v1beta2",
        "kind": "Cluster",
        "metadata": {"name": "gated", "namespace": "default"},
        "spec": {"availabilityGates": [{"conditionType": "A"}, {"conditionType": "A"}]},
    }
    refused = await cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(gates), check=False)
    assert (
        'spec.availabilityGates[1]: Duplicate value: map[string]interface {}{"conditionType":"A"}'
    ) in refused.err, refused.err


async def test_sidero_printer_columns_with_escaped_dots(cluster: Cluster) -> None:
    sidero = [path for path in crd_files() if path.parent.name == "sidero"]
    await cluster.kubectl("apply", *(arg for path in sidero for arg in ("-f", str(path))))
    metal = {
        "apiVersion": "infrastructure.cluster.x-k8s.io/v1alpha3",
        "kind": "MetalCluster",
        "metadata": {
            "name": "m1",
            "namespace": "default",
            "labels": {"cluster.x-k8s.io/cluster-name": "prod"},
        },
        "spec": {"controlPlaneEndpoint": {"host": "10.5.0.10", "port": 6443}},
    }
    await cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(metal))
    out = (await cluster.kubectl("get", "metalclusters")).out.splitlines()
    assert out[0].split()[:3] == ["NAME", "CLUSTER", "READY"], out
    assert out[1].split()[:2] == ["m1", "prod"], out
