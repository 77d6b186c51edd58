"""Arges against an API server it does not embed, as in a real cluster (``deploy/``).

The stand-in for "a real cluster" is an embedded API server started without Arges' CRDs;
they are installed the way a user installs them, ``kubectl apply`` of ``deploy/crds``.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
import yaml

from arges.apiserver.http.routing import parse_route
from arges.apiserver.server import ApiServer
from arges.boot.services import BootConfig
from arges.kube import resources
from arges.kube.client import KubeClient
from arges.kube.connection import from_kubeconfig
from arges.kube.resources import SECRETS, SERVER_CLASSES, SERVERS, TALOS_CLUSTERS
from arges.plane import ManagementPlane, NotInstalled, PlaneConfig
from arges.power import fake
from tests.integration.clusters.conftest import Rack, all_in, create_cluster
from tests.integration.conftest import (
    eventually,
    kubectl_binary,
    local_environment,
    register,
    start_server,
)
from tests.integration.proxy import HoldingProxy

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
    assert "--leader-elect" in args and deployment["spec"]["replicas"] == 2
    (spread,) = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert spread["topologyKey"] == "kubernetes.io/hostname", "the replicas share no host ports"
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
        assert (res.group, res.plural, "watch") in granted, f"the controllers watch {res.plural}"
        assert (res.group, f"{res.plural}/status", "patch") in granted
    assert ("", "events", "create") in granted
    for verb in ("get", "create", "update"):
        assert ("coordination.k8s.io", "leases", verb) in granted, f"leader election: {verb}"
    for plural in ("clusters", "machines"):
        assert ("cluster.x-k8s.io", plural, "watch") in granted, f"Cluster API's {plural}"
    # Kinds installed later are found through discovery: no access to CRDs is asked for.
    assert not any(group == "apiextensions.k8s.io" for group, _, _ in granted)


def request_attributes(method: str, path_qs: str) -> tuple[str, str, str, str | None] | None:
    """What kube-apiserver's RBAC authorizer judges of a request: verb, API group, resource
    (with ``/subresource``), namespace; None for a non-resource URL (discovery, OpenAPI,
    ``/version``, which the ``system:discovery`` role grants to every authenticated user)."""
    split = urlsplit(path_qs)
    parts = [p for p in split.path.split("/") if p]
    if parts[:1] == ["api"] and len(parts) >= 3:
        route = parse_route(["", *parts[1:]])
    elif parts[:1] == ["apis"] and len(parts) >= 4:
        route = parse_route(parts[1:])
    else:
        return None
    if route is None:
        return None
    watch = parse_qs(split.query).get("watch", [""])[0] in ("true", "1")
    verb = {
        "GET": "get" if route.name else "watch" if watch else "list",
        "POST": "create",
        "PUT": "update",
        "PATCH": "patch",
        "DELETE": "delete" if route.name else "deletecollection",
    }[method]
    resource = route.plural + (f"/{route.subresource}" if route.subresource else "")
    return verb, route.group, resource, route.namespace


def granted(rules: list[dict[str, Any]], verb: str, group: str, resource: str) -> bool:
    """RBAC's ``RuleAllows`` (k8s.io/component-helpers/auth/rbac/validation) for a
    ClusterRole bound cluster-wide, without resourceNames (the deploy's rules use none)."""
    return any(
        (verb in rule["verbs"] or "*" in rule["verbs"])
        and (group in rule["apiGroups"] or "*" in rule["apiGroups"])
        and (resource in rule["resources"] or "*" in rule["resources"])
        and not rule.get("resourceNames")
        for rule in rules
    )


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_every_request_arges_makes_in_a_cluster_lifecycle_is_granted_by_deploy_rbac(
    bare: ApiServer, tmp_path: Path
) -> None:
    """The embedded API server has one admin token and no RBAC, and no real kube-apiserver
    runs here, so the deploy's ClusterRole is judged as kube's authorizer would judge it
    against every request Arges actually sent (through a recording proxy) while servers were
    discovered, wiped, made a TalosCluster, and released."""
    role = next(d for d in rendered() if d["kind"] == "ClusterRole")
    await kubectl_apply(bare, DEPLOY / "crds")
    proxy = HoldingProxy(bare)
    await proxy.start()
    token = (bare.config.data_dir / "pki" / "admin.token").read_text().strip()
    fake.MACHINES.clear()
    talos_port = free_port()
    plane = ManagementPlane(
        PlaneConfig(
            data_dir=tmp_path / "arges",
            external_api=from_kubeconfig(proxy.kubeconfig(tmp_path / "proxy.kubeconfig", token)),
            default_environment=local_environment(tmp_path / "talos", []),
            agent_environment=local_environment(tmp_path / "agent-image", []),
            boot=BootConfig(
                address="127.0.0.1", http_port=free_port(), tftp_port=0, dhcp_mode=None
            ),
            power_refresh=0.3,
            reboot_timeout=60,
            talos_port=talos_port,
        )
    )
    await plane.start()
    assert plane.boot is not None
    async with (
        KubeClient(from_kubeconfig(bare.kubeconfig_path)) as kube,
        aiohttp.ClientSession() as session,
    ):
        rack = Rack(plane, kube, session, talos_port, tmp_path, [], [])
        try:
            await kube.create(
                SECRETS,
                {
                    "metadata": {"name": "sim-bmc"},
                    "stringData": {"username": "admin", "password": "secret"},
                },
                "default",
            )
            for _ in range(2):
                await rack.add()
            await create_cluster(kube)
            await eventually(lambda: all_in(rack, "Ready", 2), timeout=60, what="members Ready")
            await kube.delete(TALOS_CLUSTERS, "demo", "default")
            for sim in rack.servers:
                await eventually(lambda s=sim: rack.available(s), timeout=60, what="released")
        finally:
            for task in rack.tasks:
                task.cancel()
            await asyncio.gather(*rack.tasks, return_exceptions=True)
            for sim in rack.servers:
                await sim.close()
            await plane.stop()
            await proxy.stop()
    judged = {a for m, p in proxy.seen if (a := request_attributes(m, p)) is not None}
    refused = sorted(a for a in judged if not granted(role["rules"], a[0], a[1], a[2]))
    assert refused == [], f"requests the deploy's ClusterRole would refuse: {refused}"
    used = {(verb, group, resource) for verb, group, resource, _ in judged}
    for needed in (
        ("watch", "metal.arges.dev", "servers"),
        ("patch", "metal.arges.dev", "servers/status"),
        ("create", "", "secrets"),
        ("create", "", "events"),
    ):
        assert needed in used, f"the lifecycle exercised {needed}"


async def kubectl_apply(server: ApiServer, path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        kubectl_binary(),
        "--kubeconfig",
        str(server.kubeconfig_path),
        "apply",
        "-f",
        str(path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
