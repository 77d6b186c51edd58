"""The real Cluster API drives Arges: Cluster API core, the Talos bootstrap provider (CABPT) and
control-plane provider (CACPPT), started by ``scripts/capi-stack`` as processes against the
plane's embedded API server, with Arges as the infrastructure provider on simulated servers.

The servers boot through /ipxe, fetch from the metadata service the config CABPT generated for
their Machine, and answer Talos' API (the fake apid, port 50000 on their own loopback address)
so CACPPT can bootstrap etcd. There is no kubelet: Machines stop at Provisioned, never Running.
Skips, saying why, without Go or the module proxy (the stack is built from them).
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from arges.api.manifests import repository
from arges.kube.resources import (
    CAPI,
    METAL_MACHINES,
    SERVER_BINDINGS,
    Resource,
    capi_clusters,
    capi_machines,
)
from tests.integration.clusters.capi import kubectl
from tests.integration.clusters.conftest import NS, Rack, open_rack
from tests.integration.conftest import eventually

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
REPO = Path(__file__).resolve().parents[3]
STACK = REPO / "scripts" / "capi-stack"
CLUSTERS = capi_clusters("v1beta1")
MACHINES = capi_machines("v1beta1")
MACHINE_DEPLOYMENTS = Resource(CAPI, "v1beta1", "machinedeployments", "MachineDeployment", True)
TALOS_PORT = 50000


def stack_unavailable() -> str | None:
    """Why the stack cannot run here, or None."""
    if shutil.which("go") is None:
        return "no Go toolchain: the Cluster API stack is built with it"
    proc = subprocess.run(
        [str(STACK), "install"], capture_output=True, text=True, timeout=3000, check=False
    )
    if proc.returncode != 0:
        return f"the Cluster API stack could not be installed: {proc.stderr.strip()[-400:]}"
    return None


def talos_port_free() -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.11", TALOS_PORT))
        except OSError:
            return False
    return True


@pytest.fixture(scope="module")
def installed() -> None:
    why = stack_unavailable()
    if why is not None:
        pytest.skip(why)
    if not talos_port_free():
        pytest.skip(f"port {TALOS_PORT} on 127.0.0.11 is taken: the simulated Talos API needs it")


@pytest.fixture
async def stack(installed: None, tmp_path: Path) -> AsyncIterator[Rack]:
    async with open_rack(tmp_path, talos_port=TALOS_PORT) as rack:
        assert rack.plane.api is not None
        kubeconfig = rack.plane.api.kubeconfig_path
        state = tmp_path / "capi-stack"
        up = await asyncio.create_subprocess_exec(
            str(STACK),
            "up",
            "--kubeconfig",
            str(kubeconfig),
            "--state-dir",
            str(state),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await up.communicate()
        print(out.decode())
        try:
            assert up.returncode == 0, err.decode()
            yield rack
        finally:
            down = await asyncio.create_subprocess_exec(
                str(STACK),
                "down",
                "--kubeconfig",
                str(kubeconfig),
                "--state-dir",
                str(state),
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
            await down.wait()
            for log in sorted(state.glob("*.log")):
                lines = log.read_text(errors="replace").splitlines()
                errors = [line for line in lines if line.startswith("E")]
                print(f"--- {log.name}: {len(lines)} lines, last errors:")
                print("\n".join(errors[-15:]))


def clusterctl() -> str:
    """Where ``scripts/capi-stack install`` put clusterctl."""
    spec = importlib.util.spec_from_file_location("capi_stack", REPO / "scripts" / "capi_stack.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("capi_stack", module)
    spec.loader.exec_module(module)
    return str(module.clusterctl())


async def generate(rack: Rack, name: str, workers: int) -> str:
    """``clusterctl generate cluster`` from Arges' published template, applied."""
    config = repository(rack.tmp / "repo")
    template = config.parent / "infrastructure-arges" / "v0.1.0" / "cluster-template.yaml"
    proc = await asyncio.create_subprocess_exec(
        clusterctl(),
        "generate",
        "cluster",
        name,
        "--from",
        str(template),
        "--target-namespace",
        NS,
        "--kubernetes-version",
        "v1.34.1",
        "--control-plane-machine-count",
        "1",
        "--worker-machine-count",
        str(workers),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "CONTROL_PLANE_ENDPOINT": "10.5.0.10"},
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    manifest = out.decode()
    assert rack.plane.api is not None
    await kubectl(rack.plane.api.kubeconfig_path, "apply", "-f", "-", stdin=manifest)
    return manifest


async def machines(rack: Rack) -> list[dict[str, Any]]:
    return await rack.kube.list(MACHINES, NS)


async def provisioned(rack: Rack, count: int) -> list[dict[str, Any]] | None:
    found = await machines(rack)
    done = [
        m
        for m in found
        if (m.get("status") or {}).get("phase") == "Provisioned" and m["spec"].get("providerID")
    ]
    return done if len(found) == count and len(done) == count else None


async def test_a_cluster_api_cluster_is_provisioned_scaled_and_deleted(stack: Rack) -> None:
    rack = stack
    for _ in range(3):
        await rack.add()
    manifest = await generate(rack, "demo", workers=2)
    assert {d["kind"] for d in yaml.safe_load_all(manifest) if d} >= {
        "Cluster",
        "MachineDeployment",
    }

    done = await eventually(
        lambda: provisioned(rack, 3), timeout=300, what="3 Machines Provisioned"
    )
    bindings = {b["metadata"]["name"]: b for b in await rack.bindings()}
    assert len(bindings) == 3
    for machine in done:
        server = machine["spec"]["providerID"].removeprefix("arges://")
        assert server in bindings, "the Machine's providerID names the server bound to it"
        sim = rack.sim(server)
        role = (
            "controlplane"
            if "cluster.x-k8s.io/control-plane" in machine["metadata"]["labels"]
            else "worker"
        )
        # Provisioned is the infrastructure's part (bound, providerID set, as with Sidero); the
        # machine fetches and installs its bootstrap data after that.
        await eventually(
            lambda sim=sim: sim.installed is not None, timeout=120, what=f"{server} installed"
        )
        assert sim.machine_type == role, "it installed the config CABPT generated for its Machine"
        config = yaml.safe_load(sim.installed or "")
        assert (
            config["machine"]["kubelet"]["extraConfig"]["providerID"]
            == machine["spec"]["providerID"]
        )

    # Scale the workers down: the surplus Machine's server is released and wiped.
    await rack.kube.patch(MACHINE_DEPLOYMENTS, "demo-workers", {"spec": {"replicas": 1}}, NS)
    await eventually(lambda: provisioned(rack, 2), timeout=180, what="2 Machines left")
    released = [
        s
        for s in rack.servers
        if s.uuid not in {b["metadata"]["name"] for b in await rack.bindings()}
    ]
    assert len(released) == 1
    await eventually(lambda: rack.available(released[0]), timeout=120, what="released server wiped")
    assert released[0].boots[-1] == "agent" and released[0].installed is None

    # And up again: the wiped server is taken again.
    await rack.kube.patch(MACHINE_DEPLOYMENTS, "demo-workers", {"spec": {"replicas": 2}}, NS)
    await eventually(lambda: provisioned(rack, 3), timeout=180, what="3 Machines again")

    # Delete the Cluster: every server released and wiped, nothing left behind.
    await rack.kube.delete(CLUSTERS, "demo", NS)

    async def cleaned() -> bool:
        left = await rack.kube.list(METAL_MACHINES, NS) + await machines(rack)
        return not left and not await rack.kube.list(SERVER_BINDINGS)

    await eventually(cleaned, timeout=300, what="Machines, MetalMachines and bindings gone")
    for sim in rack.servers:
        await eventually(lambda s=sim: rack.available(s), timeout=120, what=f"{sim.uuid} wiped")
