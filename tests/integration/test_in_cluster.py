"""Arges against an API server it does not embed, as in a real cluster (``deploy/``).

The stand-in for "a real cluster" is an embedded API server started without Arges' CRDs;
they are installed the way a user installs them, ``kubectl apply`` of ``deploy/crds``.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from arges.apiserver.server import ApiServer
from arges.kube import resources
from arges.kube.client import KubeClient
from arges.kube.connection import from_kubeconfig
from arges.kube.resources import SERVER_CLASSES, SERVERS
from arges.plane import ManagementPlane, NotInstalled, PlaneConfig
from tests.integration.conftest import eventually, kubectl_binary, register, start_server

DEPLOY = Path(__file__).parents[2] / "deploy"


@pytest.fixture
async def bare(tmp_path: Path) -> AsyncIterator[ApiServer]:
    """A Kubernetes API server without Arges' CRDs."""
    server = await start_server(tmp_path / "cluster", crds=())
    yield server
    await server.stop()


def external(server: ApiServer, data_dir: Path) -> PlaneConfig:
    return PlaneConfig(data_dir=data_dir, external_api=from_kubeconfig(server.kubeconfig_path))


async def test_a_cluster_without_the_crds_is_refused_with_the_fix(
    bare: ApiServer, tmp_path: Path
) -> None:
    plane = ManagementPlane(external(bare, tmp_path / "arges"))
    with pytest.raises(
        NotInstalled, match=r"install Arges' CRDs first \(kubectl apply -k deploy\)"
    ):
        await plane.start()
    await plane.stop()


async def test_the_controllers_run_against_an_external_api_server(
    bare: ApiServer, tmp_path: Path
) -> None:
    kubectl = kubectl_binary()
    proc = await asyncio.create_subprocess_exec(
        kubectl,
        "--kubeconfig",
        str(bare.kubeconfig_path),
        "apply",
        "-f",
        str(DEPLOY / "crds"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    plane = ManagementPlane(external(bare, tmp_path / "arges"))
    await plane.start()
    try:
        assert plane.api is None, "no embedded API server"
        assert not (tmp_path / "arges" / "kubeconfig").exists()
        async with KubeClient(from_kubeconfig(bare.kubeconfig_path)) as kube:
            await eventually(lambda: _exists(kube, SERVER_CLASSES, "any"))
            name = "4c4c4544-0035-4b10-8036-00000000e0e0"
            await register(kube, name)
            server = await eventually(lambda: _finalized(kube, name))
            assert server["status"]["inUse"] is False
    finally:
        await plane.stop()


async def _exists(kube: KubeClient, res: resources.Resource, name: str) -> bool:
    return any(o["metadata"]["name"] == name for o in await kube.list(res))


async def _finalized(kube: KubeClient, name: str) -> dict[str, Any] | None:
    server = await kube.get(SERVERS, name)
    protected = "metal.arges.dev/server-protection" in (server["metadata"].get("finalizers") or [])
    return server if protected and "inUse" in (server.get("status") or {}) else None


def rendered() -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed (it renders the kustomization)")
    out = subprocess.run(
        [kubectl, "kustomize", str(DEPLOY)], check=True, capture_output=True, text=True
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def test_the_kustomization_runs_arges_in_cluster_with_the_access_it_needs() -> None:
    docs = rendered()
    kinds = sorted(d["kind"] for d in docs)
    assert kinds.count("CustomResourceDefinition") == 10
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    assert deployment["metadata"]["namespace"] == "arges-system"
    pod = deployment["spec"]["template"]["spec"]
    args = pod["containers"][0]["args"]
    assert args[:2] == ["up", "--in-cluster"] and pod["hostNetwork"] is True
    assert pod["serviceAccountName"] == "arges"
    role = next(d for d in docs if d["kind"] == "ClusterRole")
    granted = {
        (group, res, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for res in rule["resources"]
        for verb in rule["verbs"]
    }
    for res in (
        resources.SERVERS,
        resources.SERVER_CLASSES,
        resources.ENVIRONMENTS,
        resources.SERVER_BINDINGS,
        resources.TALOS_CLUSTERS,
        resources.METAL_CLUSTERS,
        resources.METAL_MACHINES,
        resources.SECRETS,
    ):
        for verb in ("get", "list", "patch"):
            assert (res.group, res.plural, verb) in granted, f"{verb} {res.plural}"
    for res in (
        resources.SERVERS,
        resources.SERVER_CLASSES,
        resources.TALOS_CLUSTERS,
        resources.METAL_CLUSTERS,
        resources.METAL_MACHINES,
    ):
        assert (res.group, res.plural, "watch") in granted, f"kopf watches {res.plural}"
        assert (res.group, f"{res.plural}/status", "patch") in granted
    assert ("", "events", "create") in granted
    for plural in ("clusters", "machines"):
        assert ("cluster.x-k8s.io", plural, "watch") in granted, f"Cluster API's {plural}"
    assert ("apiextensions.k8s.io", "customresourcedefinitions", "watch") in granted
