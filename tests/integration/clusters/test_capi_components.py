"""``arges capi components``: the clusterctl repository of the infrastructure provider."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner

from arges.api.crds import all_crds
from arges.api.manifests import COMPONENT_VARIABLES, TEMPLATE_VARIABLES
from arges.cli.main import main
from tests.integration.clusters.capi import install, kubectl
from tests.integration.conftest import Cluster

VARIABLE = re.compile(r"\$\{([A-Z_]+)(?::?[=-]([^}]*))?\}")


def substitute(text: str, values: dict[str, str]) -> str:
    """clusterctl's substitution (drone/envsubst): a value, else the default, else an error."""

    def one(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in values:
            return values[name]
        assert default is not None, f"{name} has no value and no default"
        return default

    return VARIABLE.sub(one, text)


def written(tmp: Path) -> Path:
    result = CliRunner().invoke(main, ["capi", "components", "--output-dir", str(tmp)])
    assert result.exit_code == 0, result.output
    assert "clusterctl init --infrastructure arges --config" in result.output
    return tmp / "infrastructure-arges" / "v0.1.0"


def test_the_repository_is_laid_out_as_clusterctl_reads_it(tmp_path: Path) -> None:
    release = written(tmp_path)
    config = yaml.safe_load((tmp_path / "clusterctl.yaml").read_text())
    (provider,) = config["providers"]
    assert provider["name"] == "arges" and provider["type"] == "InfrastructureProvider"
    assert Path(provider["url"]) == (release / "infrastructure-components.yaml").resolve()
    metadata = yaml.safe_load((release / "metadata.yaml").read_text())
    assert metadata["apiVersion"] == "clusterctl.cluster.x-k8s.io/v1alpha3"
    assert metadata["kind"] == "Metadata"
    assert metadata["releaseSeries"] == [{"major": 0, "minor": 1, "contract": "v1beta1"}]


def test_the_components_hold_one_namespace_the_generated_crds_rbac_and_the_manager(
    tmp_path: Path,
) -> None:
    text = (written(tmp_path) / "infrastructure-components.yaml").read_text()
    assert {m.group(1) for m in VARIABLE.finditer(text)} == set(COMPONENT_VARIABLES)
    docs: list[dict[str, Any]] = [d for d in yaml.safe_load_all(text) if d]
    kinds = [d["kind"] for d in docs]
    assert kinds.count("Namespace") == 1
    for doc in docs:
        assert doc["metadata"]["labels"]["cluster.x-k8s.io/provider"] == "infrastructure-arges"
    crds = [d for d in docs if d["kind"] == "CustomResourceDefinition"]
    for crd, generated in zip(crds, all_crds(), strict=True):
        labels = {**generated["metadata"].get("labels", {})}
        labels["cluster.x-k8s.io/provider"] = "infrastructure-arges"
        assert crd == {**generated, "metadata": {**generated["metadata"], "labels": labels}}
    metal = next(c for c in crds if c["metadata"]["name"].startswith("metalmachines."))
    assert metal["metadata"]["labels"]["cluster.x-k8s.io/v1beta2"] == "v1alpha3"
    assert "clusterctl.cluster.x-k8s.io" in metal["metadata"]["labels"]
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["name"] == "manager"
    assert container["args"][:2] == ["up", "--in-cluster"]
    assert "--boot-address=${ARGES_BOOT_ADDRESS:=$(NODE_IP)}" in container["args"]


async def test_the_cluster_template_renders_and_applies_against_the_upstream_crds(
    cluster: Cluster, tmp_path: Path
) -> None:
    text = (written(tmp_path) / "cluster-template.yaml").read_text()
    assert {m.group(1) for m in VARIABLE.finditer(text)} == set(TEMPLATE_VARIABLES)
    manifest = substitute(
        text,
        {
            "CLUSTER_NAME": "demo",
            "NAMESPACE": "default",
            "KUBERNETES_VERSION": "v1.34.1",
            "CONTROL_PLANE_MACHINE_COUNT": "3",
            "WORKER_MACHINE_COUNT": "2",
            "CONTROL_PLANE_ENDPOINT": "10.5.0.10",
        },
    )
    docs = [d for d in yaml.safe_load_all(manifest) if d]
    assert sorted(d["kind"] for d in docs) == sorted(
        [
            "Cluster",
            "MetalCluster",
            "MetalMachineTemplate",
            "MetalMachineTemplate",
            "TalosControlPlane",
            "TalosConfigTemplate",
            "MachineDeployment",
        ]
    )
    kubeconfig = cluster.server.kubeconfig_path
    await install(kubeconfig, "cluster-api", "cabpt", "cacppt")
    await kubectl(kubeconfig, "apply", "-f", str(Path(__file__).parents[3] / "deploy" / "crds"))
    out = await kubectl(kubeconfig, "apply", "-f", "-", stdin=manifest)
    assert out.count(" created") == len(docs), out
