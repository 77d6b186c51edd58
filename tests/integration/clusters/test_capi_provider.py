"""Arges as Cluster API's infrastructure provider, on simulated servers that boot through
/ipxe and fetch their configs; Cluster API core and the bootstrap provider are played by the
test as their contracts describe them (see tests/integration/clusters/capi.py), against the
upstream CRDs."""

from __future__ import annotations

import asyncio
import string
from typing import Any

import pytest
import yaml

from arges.kube.client import KubeClient
from arges.kube.errors import NotFound
from arges.kube.resources import (
    METAL_CLUSTERS,
    METAL_MACHINES,
    SERVER_BINDINGS,
    SERVER_CLASSES,
    SERVERS,
    TALOS_CLUSTERS,
    Resource,
)
from tests.integration.clusters.capi import SHARED, CapiPlayer, condition, install, kubectl
from tests.integration.clusters.conftest import NS, Rack, create_cluster
from tests.integration.conftest import eventually

pytestmark = pytest.mark.slow


@pytest.fixture
async def capi(rack: Rack) -> CapiPlayer:
    await install(rack.plane.api.kubeconfig_path, "cluster-api", "cabpt", "cacppt")
    return CapiPlayer(rack.kube)


async def provisioned(player: CapiPlayer, name: str) -> dict[str, Any] | None:
    metal = await player.metal_machine(name)
    status = metal.get("status") or {}
    ready = status.get("ready") and (status.get("initialization") or {}).get("provisioned")
    return metal if ready else None


async def installed(player: CapiPlayer, name: str) -> dict[str, Any] | None:
    metal = await player.metal_machine(name)
    found = condition(metal, "Installed")
    return metal if found and found["status"] == "True" else None


async def test_a_machine_gets_a_server_boots_it_and_installs_its_bootstrap_data(
    rack: Rack, capi: CapiPlayer
) -> None:
    sims = [await rack.add() for _ in range(2)]
    await capi.create_cluster()
    await eventually(capi.infrastructure_provisioned, timeout=20, what="MetalCluster provisioned")
    metal_cluster = await rack.kube.get(METAL_CLUSTERS, capi.name, NS)
    assert "metalcluster.infrastructure.cluster.x-k8s.io" in metal_cluster["metadata"]["finalizers"]

    _, _ = await capi.create_machine("cp-0", control_plane=True, bootstrap=False)
    waiting = await eventually(
        lambda: _reason(capi, "cp-0", "Ready", "WaitingForBootstrapData"),
        timeout=20,
        what="waiting for bootstrap data",
    )
    assert not (waiting.get("spec") or {}).get("serverRef"), "no server before bootstrap data"
    assert await rack.bindings() == []

    config = await capi.bootstrap("cp-0", control_plane=True)
    metal = await eventually(lambda: provisioned(capi, "cp-0"), timeout=30, what="provisioned")
    server = metal["spec"]["serverRef"]["name"]
    sim = rack.sim(server)
    assert metal["spec"]["providerID"] == f"arges://{server}"
    assert {"type": "InternalIP", "address": sim.address} in metal["status"]["addresses"]
    binding = await rack.kube.get(SERVER_BINDINGS, server)
    assert binding["spec"]["consumerRef"]["kind"] == "MetalMachine"
    assert binding["spec"]["role"] == "controlplane"

    await eventually(lambda: installed(capi, "cp-0"), timeout=60, what="installed")
    assert sim.boots[-1] == "target"
    served = yaml.safe_load(sim.installed or "")
    expected = yaml.safe_load(config)
    assert served["cluster"] == expected["cluster"], "the Machine's own bootstrap data"
    assert served["machine"]["kubelet"]["extraConfig"]["providerID"] == f"arges://{server}"
    assert served["machine"]["nodeLabels"]["metal.arges.dev/uuid"] == server
    spare = next(s for s in sims if s.uuid != server)
    assert spare.boots == ["agent"], "the other server stays in the pool"


async def _reason(player: CapiPlayer, name: str, kind: str, reason: str) -> dict[str, Any] | None:
    metal = await player.metal_machine(name)
    found = condition(metal, kind)
    return metal if found and found["reason"] == reason else None


async def test_deleting_the_machine_releases_and_wipes_its_server(
    rack: Rack, capi: CapiPlayer
) -> None:
    sim = await rack.add()
    await capi.create_cluster()
    await eventually(capi.infrastructure_provisioned, timeout=20)
    await capi.create_machine("w-0")
    await eventually(lambda: installed(capi, "w-0"), timeout=60, what="installed")
    await asyncio.wait_for(capi.delete_machine("w-0"), 30)
    assert await rack.bindings() == []
    await eventually(lambda: rack.available(sim), timeout=60, what="wiped and available")
    assert sim.boots[-1] == "agent" and sim.installed is None


async def test_pause_stops_everything_until_it_is_lifted(rack: Rack, capi: CapiPlayer) -> None:
    await rack.add()
    await capi.create_cluster()
    await eventually(capi.infrastructure_provisioned, timeout=20)
    await capi.pause(True)
    await capi.create_machine("w-0")
    metal = await eventually(
        lambda: _reason(capi, "w-0", "Paused", "Paused"), timeout=20, what="Paused condition"
    )
    await asyncio.sleep(2)
    assert await rack.bindings() == [], "a paused cluster takes no server"
    assert not metal["metadata"].get("finalizers")
    await capi.pause(False)
    await eventually(lambda: provisioned(capi, "w-0"), timeout=30, what="provisioned once unpaused")


async def test_a_sidero_server_class_reference_and_a_pinned_server(
    rack: Rack, capi: CapiPlayer
) -> None:
    first, second = await rack.add(), await rack.add()
    await rack.kube.create(
        SERVER_CLASSES,
        {"metadata": {"name": "first"}, "spec": {"selector": {"matchLabels": {"pick": "me"}}}},
    )
    await rack.kube.patch(SERVERS, first.uuid, {"metadata": {"labels": {"pick": "me"}}})
    await capi.create_cluster()
    await eventually(capi.infrastructure_provisioned, timeout=20)
    await capi.create_machine(
        "by-class", server_class="first", class_group="metal.sidero.dev/v1alpha2"
    )
    await capi.create_machine("pinned", server=second.uuid)
    by_class = await eventually(lambda: provisioned(capi, "by-class"), timeout=30)
    pinned = await eventually(lambda: provisioned(capi, "pinned"), timeout=30)
    assert by_class["spec"]["serverRef"]["name"] == first.uuid
    assert pinned["spec"]["serverRef"]["name"] == second.uuid


async def test_talos_cluster_and_metal_machine_compete_for_one_server(
    rack: Rack, capi: CapiPlayer
) -> None:
    await rack.add()
    await capi.create_cluster()
    await eventually(capi.infrastructure_provisioned, timeout=20)
    await asyncio.gather(
        create_cluster(rack.kube, control_planes=1, workers=0),
        capi.create_machine("w-0"),
    )

    async def settled() -> list[dict[str, Any]] | None:
        bindings = await rack.bindings()
        metal = await capi.metal_machine("w-0")
        cluster = await rack.kube.get(TALOS_CLUSTERS, "demo", NS)
        allocated = condition(metal, "ServerAllocated")
        short = next(
            (
                c
                for c in (cluster.get("status") or {}).get("conditions") or []
                if c["type"] == "InsufficientServers"
            ),
            None,
        )
        waiting = (allocated and allocated["status"] == "False") or (
            short and short["status"] == "True"
        )
        return bindings if len(bindings) == 1 and waiting else None

    (binding,) = await eventually(settled, timeout=30, what="one winner, one waiting")
    await asyncio.sleep(2)
    assert len(await rack.bindings()) == 1, "the server is held once"
    assert binding["spec"]["consumerRef"]["kind"] in ("TalosCluster", "MetalMachine")


class Hold:
    """Makes the plane hang at its first write matching ``match`` (a process killed there)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, method: str, res: Resource) -> None:
        self.stuck = asyncio.Event()
        self.armed = True
        real = getattr(KubeClient, method)

        async def wrapper(client: KubeClient, resource: Resource, *a: Any, **kw: Any) -> Any:
            if self.armed and resource == res and not kw.get("subresource"):
                self.stuck.set()
                await asyncio.Event().wait()
            return await real(client, resource, *a, **kw)

        monkeypatch.setattr(KubeClient, method, wrapper)


@pytest.mark.parametrize(
    ("method", "resource"),
    [("patch", METAL_MACHINES), ("delete", SERVER_BINDINGS)],
    ids=["after-binding-before-serverRef", "during-release"],
)
async def test_a_restart_at_each_step_converges_with_no_double_binding(
    rack: Rack, capi: CapiPlayer, monkeypatch: pytest.MonkeyPatch, method: str, resource: Resource
) -> None:
    for _ in range(2):
        await rack.add()
    await capi.create_cluster()
    await eventually(capi.infrastructure_provisioned, timeout=20)
    if method == "delete":
        await capi.create_machine("w-0")
        await eventually(lambda: provisioned(capi, "w-0"), timeout=30)
        hold = Hold(monkeypatch, method, resource)
        await rack.kube.delete(METAL_MACHINES, "w-0", NS)
    else:
        # The finalizer is written first (a patch too): let it through, then hold the next.
        await capi.create_machine("w-0", bootstrap=False)
        await eventually(lambda: _finalized(capi, "w-0"), timeout=20)
        hold = Hold(monkeypatch, method, resource)
        await capi.bootstrap("w-0")
    await asyncio.wait_for(hold.stuck.wait(), 30)
    await rack.plane.stop()
    hold.armed = False
    await rack.start()
    capi.kube = rack.kube
    if method == "delete":
        await eventually(lambda: _gone(capi, "w-0"), timeout=30, what="MetalMachine gone")
        assert await rack.bindings() == []
    else:
        metal = await eventually(lambda: provisioned(capi, "w-0"), timeout=30)
        bindings = await rack.bindings()
        assert [b["metadata"]["name"] for b in bindings] == [metal["spec"]["serverRef"]["name"]]


async def _finalized(player: CapiPlayer, name: str) -> bool:
    metal = await player.metal_machine(name)
    return bool(metal["metadata"].get("finalizers"))


async def _gone(player: CapiPlayer, name: str) -> bool:
    try:
        await player.metal_machine(name)
        return False
    except NotFound:
        return True


TEMPLATE_VARIABLES = {
    "CLUSTER_NAME": "sidero",
    "CONTROL_PLANE_ENDPOINT": "10.5.0.30",
    "CONTROL_PLANE_PORT": "6443",
    "CONTROL_PLANE_SERVERCLASS": "any",
    "WORKER_SERVERCLASS": "any",
    "KUBERNETES_VERSION": "v1.34.1",
    "TALOS_VERSION": "v1.11",
    "CONTROL_PLANE_MACHINE_COUNT": "1",
    "WORKER_MACHINE_COUNT": "1",
}


async def test_sideros_cluster_template_applies_and_reconciles_to_the_bootstrap_data(
    rack: Rack, capi: CapiPlayer
) -> None:
    template = string.Template((SHARED / "sidero" / "cluster-template.yaml").read_text())
    manifest = template.substitute(TEMPLATE_VARIABLES)
    await kubectl(rack.plane.api.kubeconfig_path, "apply", "-f", "-", stdin=manifest)
    for _ in range(2):
        await rack.add()
    player = CapiPlayer(rack.kube, "sidero", version="v1beta1")
    await player.adopt_metal_cluster()
    await eventually(player.infrastructure_provisioned, timeout=20, what="MetalCluster provisioned")
    # The template's MetalMachineTemplates name Sidero's ServerClass kind
    # (metal.sidero.dev/v1alpha2): Arges' ServerClass of that name serves.
    await player.clone_machine("sidero-cp", "sidero-cp-abcde", control_plane=True)
    await player.clone_machine("sidero-workers", "sidero-workers-fghij")
    for name in ("sidero-cp-abcde", "sidero-workers-fghij"):
        metal = await eventually(lambda n=name: installed(player, n), timeout=60, what=name)
        sim = rack.sim(metal["spec"]["serverRef"]["name"])
        kind = "controlplane" if "cp" in name else "worker"
        assert sim.machine_type == kind
    assert len(await rack.bindings()) == 2
