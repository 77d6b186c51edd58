"""TalosClusters end to end on simulated servers: a real plane (API server, controllers, boot
HTTP with the metadata service and the discovery endpoint), the fake power driver, and
machines that boot, register, wipe, fetch their configs and run a fake Talos API."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import pytest
import yaml

from arges.kube.errors import NotFound
from arges.kube.resources import SECRETS, SERVER_CLASSES, SERVERS, TALOS_CLUSTERS
from tests.integration.clusters.conftest import NS, Rack, all_in, create_cluster, states
from tests.integration.conftest import eventually

pytestmark = pytest.mark.slow


async def test_a_cluster_is_provisioned_bootstrapped_and_running(rack: Rack) -> None:
    for _ in range(3):
        await rack.add()
    await create_cluster(rack.kube)
    await eventually(lambda: all_in(rack, "Ready", 2), timeout=60)
    members = await rack.members()
    assert sorted(m["role"] for m in members) == ["controlplane", "worker"]
    assert len(await rack.bindings()) == 2, "exactly two servers bound; the third stays available"
    spare = next(s for s in rack.servers if s.uuid not in states(members))
    assert await rack.available(spare) and spare.boots == ["agent"]

    for member in members:
        sim = rack.sim(member["server"])
        assert sim.machine_type == member["role"], "each server fetched its own role's config"
        assert sim.boots[-1] == "target"
        config = yaml.safe_load(sim.installed or "")
        assert config["cluster"]["controlPlane"]["endpoint"] == "https://10.5.0.10:6443"

    cluster = await eventually(lambda: _phase(rack, "Running"), timeout=30)
    status = cluster["status"]
    assert (status["controlPlanes"], status["workerCount"]) == ("1/1", "1/1")
    boot = await rack.condition("Bootstrapped")
    assert boot is not None and boot["status"] == "True"
    cp = rack.sim(next(m["server"] for m in members if m["role"] == "controlplane"))
    worker = rack.sim(next(m["server"] for m in members if m["role"] == "worker"))
    assert cp.talos is not None and cp.talos.calls.count("Bootstrap") == 1
    assert worker.talos is not None and "Bootstrap" not in worker.talos.calls
    kubeconfig = await rack.secret(status["kubeconfigSecret"], "kubeconfig")
    assert kubeconfig == cp.talos.kubeconfig
    talosconfig = yaml.safe_load(await rack.secret(status["talosconfigSecret"], "talosconfig"))
    assert talosconfig["contexts"]["demo"]["endpoints"] == [cp.address]

    out = await _kubectl(rack, "get", "talosclusters", "-n", NS)
    assert "CONTROL PLANES" in out and "1/1" in out and "Running" in out


async def _phase(rack: Rack, phase: str, name: str = "demo") -> dict[str, Any] | None:
    cluster = await rack.cluster(name)
    return cluster if (cluster.get("status") or {}).get("phase") == phase else None


async def _kubectl(rack: Rack, *args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        "kubectl",
        "--kubeconfig",
        str(rack.plane.api.kubeconfig_path),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def test_workers_scale_up_and_down_and_released_servers_are_wiped(rack: Rack) -> None:
    for _ in range(3):
        await rack.add()
    await create_cluster(rack.kube)
    await eventually(lambda: all_in(rack, "Ready", 2), timeout=60)
    await rack.kube.patch(
        TALOS_CLUSTERS,
        "demo",
        {"spec": {"workers": [{"name": "workers", "replicas": 2}]}},
        NS,
    )
    await eventually(lambda: all_in(rack, "Ready", 3), timeout=60)
    assert len(await rack.bindings()) == 3

    roles = {m["server"]: m["role"] for m in await rack.members()}
    nodes = {s: rack.sim(s).talos for s in roles}
    await rack.kube.patch(
        TALOS_CLUSTERS,
        "demo",
        {"spec": {"workers": [{"name": "workers", "replicas": 1}]}},
        NS,
    )
    await eventually(lambda: all_in(rack, "Ready", 2), timeout=60)
    gone = set(roles) - {m["server"] for m in await rack.members()}
    assert len(gone) == 1
    name = gone.pop()
    assert roles[name] == "worker", "a worker was released, not the control plane"
    released, node = rack.sim(name), nodes[name]
    assert node is not None and [(r.graceful, r.reboot) for r in node.reset_requests] == [
        (False, True)
    ], "its Talos was asked to reset (a worker has no etcd to leave) and reboot"
    assert node.reset_requests[0].system_partitions == (("STATE", True), ("EPHEMERAL", True))
    await eventually(lambda: rack.available(released), timeout=30)
    assert released.reboots == ["reset"] and released.boots[-1] == "agent", "then the agent"
    assert released.installed is None, "wiped"
    server = await rack.kube.get(SERVERS, released.uuid)
    reset = next(c for c in server["status"]["conditions"] if c["type"] == "TalosReset")
    assert reset["status"] == "True"
    assert "PowerCycle" not in {c["type"] for c in server["status"]["conditions"]}, (
        "Talos rebooted it into the agent: nothing power-cycled it"
    )
    with pytest.raises(NotFound):
        await rack.kube.get(SECRETS, f"demo-config-{released.uuid}", NS)
    await eventually(lambda: _class_available(rack, released.uuid), timeout=10)


async def _class_available(rack: Rack, uuid: str) -> bool:
    status = (await rack.kube.get(SERVER_CLASSES, "any")).get("status") or {}
    return uuid in (status.get("serversAvailable") or [])


async def test_control_plane_scale_down_leaves_etcd_first(rack: Rack) -> None:
    for _ in range(2):
        await rack.add()
    await create_cluster(rack.kube, control_planes=2, workers=0)
    await eventually(lambda: all_in(rack, "Ready", 2), timeout=60)
    await eventually(lambda: _phase(rack, "Running"), timeout=30)
    nodes = {m["server"]: rack.sim(m["server"]).talos for m in await rack.members()}
    await rack.kube.patch(TALOS_CLUSTERS, "demo", {"spec": {"controlPlane": {"replicas": 1}}}, NS)
    await eventually(lambda: all_in(rack, "Ready", 1), timeout=60)
    kept = (await rack.members())[0]["server"]
    (left,) = [n for s, n in nodes.items() if s != kept]
    assert left is not None and [(r.graceful, r.reboot) for r in left.reset_requests] == [
        (True, True)
    ], "a graceful reset: Talos leaves etcd, then wipes and reboots"
    # Talos answers the Reset call first and leaves etcd as the reset runs.
    await eventually(lambda: not left.etcd_member, timeout=10)
    kept_node = nodes[kept]
    assert kept_node is not None and kept_node.etcd_member and not kept_node.reset_requests


async def test_delete_releases_every_server_and_removes_the_secrets(rack: Rack) -> None:
    for _ in range(2):
        await rack.add()
    await create_cluster(rack.kube)
    await eventually(lambda: all_in(rack, "Ready", 2), timeout=60)
    await rack.kube.delete(TALOS_CLUSTERS, "demo", NS)

    async def gone() -> bool:
        try:
            await rack.cluster()
            return False
        except NotFound:
            return True

    await eventually(gone, timeout=30)
    assert await rack.bindings() == []
    for sim in rack.servers:
        await eventually(lambda s=sim: rack.available(s), timeout=60)
        assert sim.installed is None
    secrets = [s["metadata"]["name"] for s in await rack.kube.list(SECRETS, NS)]
    assert [s for s in secrets if s.startswith("demo-")] == []


async def test_insufficient_servers_then_a_server_appears(rack: Rack) -> None:
    await rack.add()
    await create_cluster(rack.kube)

    async def short() -> dict[str, Any] | None:
        cond = await rack.condition("InsufficientServers")
        return cond if cond and cond["status"] == "True" else None

    cond = await eventually(short, timeout=20)
    assert "pool workers" in cond["message"] and "ServerClass any" in cond["message"]
    assert "1 server(s) too few" in cond["message"]
    assert len(await rack.bindings()) == 1
    await rack.add(wait=False)
    await eventually(lambda: all_in(rack, "Ready", 2), timeout=60)
    cond = await rack.condition("InsufficientServers")
    assert cond is not None and cond["status"] == "False"


async def test_a_spec_that_cannot_render_is_failed_and_allocates_nothing(rack: Rack) -> None:
    await rack.add()
    await create_cluster(rack.kube, endpoint="10.5.0.10", workers=0)
    cond = await eventually(lambda: rack.condition("ConfigValid"), timeout=20)
    assert cond["status"] == "False" and "should be an https URL" in cond["message"]
    assert (await rack.cluster())["status"]["phase"] == "Failed"
    assert await rack.bindings() == []
    await rack.kube.patch(
        TALOS_CLUSTERS, "demo", {"spec": {"endpoint": "https://10.5.0.10:6443"}}, NS
    )
    await eventually(lambda: all_in(rack, "Ready", 1), timeout=60)


@pytest.mark.parametrize("stop_at", ["Allocated", "ConfigDelivered", "Installed", "Ready"])
async def test_restarts_at_each_member_state_converge(rack: Rack, stop_at: str) -> None:
    for _ in range(3):
        await rack.add()
    linger = {"Allocated": "boot", "ConfigDelivered": "install"}
    # Installed lasts only until Talos answers: hold that step until after the restart, so a
    # slow machine cannot pass it before the test sees it.
    talos = asyncio.Event()
    for sim in rack.servers:
        if stop_at in linger:
            sim.pauses[linger[stop_at]] = 3.0
        if stop_at == "Installed":
            sim.gates["talos"] = talos
    await create_cluster(rack.kube)

    async def reached() -> bool:
        members = await rack.members()
        return len(members) == 2 and any(m["state"] == stop_at for m in members)

    await eventually(reached, timeout=60)
    bundle = await rack.secret("demo-secrets", "secrets.yaml")
    configs = {
        b["metadata"]["name"]: await _config(rack, b["metadata"]["name"])
        for b in await rack.bindings()
    }
    await rack.plane.stop()
    await rack.start()
    talos.set()
    await eventually(lambda: all_in(rack, "Ready", 2), timeout=90)
    bindings = await rack.bindings()
    assert len(bindings) == 2, "no member bound twice, no extra server taken"
    assert await rack.secret("demo-secrets", "secrets.yaml") == bundle, "secrets never regenerated"
    for name, config in configs.items():
        if config is not None:
            assert await _config(rack, name) == config
    cp = next(m["server"] for m in await rack.members() if m["role"] == "controlplane")
    node = rack.sim(cp).talos
    assert node is not None and node.bootstrapped
    boot = await rack.condition("Bootstrapped")
    assert boot is not None and boot["status"] == "True"


async def _config(rack: Rack, server: str) -> str | None:
    try:
        return await rack.secret(f"demo-config-{server}", "config")
    except NotFound:
        return None


async def _arges(rack: Rack, *args: str, check: bool = True) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "arges",
        *args,
        "--kubeconfig",
        str(rack.plane.api.kubeconfig_path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    if check:
        assert proc.returncode == 0, err.decode()
    return proc.returncode or 0, out.decode(), err.decode()


async def test_the_cluster_cli(rack: Rack) -> None:
    # No Talos API answers until the CLI has said there is no kubeconfig yet.
    talos = asyncio.Event()
    for _ in range(2):
        sim = await rack.add()
        sim.gates["talos"] = talos
    _, out, _ = await _arges(
        rack,
        "cluster",
        "create",
        "demo",
        "--endpoint",
        "https://10.5.0.10:6443",
        "--control-planes",
        "1",
        "--workers",
        "1",
    )
    assert "created" in out
    code, _, err = await _arges(rack, "cluster", "kubeconfig", "demo", check=False)
    assert code != 0 and "has no kubeconfig yet" in err
    talos.set()
    await eventually(lambda: _phase(rack, "Running"), timeout=60)
    _, out, _ = await _arges(rack, "cluster", "list")
    assert "demo" in out and "https://10.5.0.10:6443" in out and "Running" in out
    _, out, _ = await _arges(rack, "cluster", "talosconfig", "demo")
    assert yaml.safe_load(out)["context"] == "demo"
    _, out, _ = await _arges(rack, "cluster", "kubeconfig", "demo")
    cp = next(m["server"] for m in await rack.members() if m["role"] == "controlplane")
    node = rack.sim(cp).talos
    assert node is not None and out == node.kubeconfig
    _, out, _ = await _arges(rack, "cluster", "delete", "demo", "--wait", "--timeout", "60")
    assert "deleted" in out
    assert await rack.bindings() == []
