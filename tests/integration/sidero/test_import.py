"""``arges import sidero`` from a running Sidero Metal (a second API server with Sidero's CRDs
and a rack in Sidero's shapes) into an Arges plane with boot services and real IPMI BMCs."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import datetime as dt
from pathlib import Path
from typing import Any

import aiohttp
import click
import pytest
import yaml

from arges.apiserver.server import ApiServer
from arges.cli.importer import SideroReader, read_sidero, read_target, write
from arges.kube.client import KubeClient
from arges.kube.connection import from_kubeconfig
from arges.kube.errors import NotFound, Unavailable
from arges.kube.resources import SERVER_BINDINGS, SERVER_CLASSES, SERVERS
from arges.metal.sidero import translate
from arges.metal.sidero.plan import plan
from arges.plane import ManagementPlane
from arges.power.base import PowerState
from tests.integration.clusters.capi import SHARED, CapiPlayer, condition, install, kubectl
from tests.integration.conftest import eventually, start_server
from tests.integration.sidero.conftest import (
    NEEDS_IPMITOOL,
    LabBmc,
    Sidero,
    arges_import,
    sidero_resource,
)
from tests.unit.metal.sidero_objects import (
    BOUND,
    CORDONED,
    FREE,
    MACHINE,
    NEW,
    OLD,
    PASSWORDS,
    rack,
)

pytestmark = pytest.mark.slow


def kube_of(plane: ManagementPlane) -> KubeClient:
    assert plane.kube is not None
    return plane.kube


def target_args(sidero: Sidero, plane: ManagementPlane) -> list[str]:
    return [
        "--kubeconfig",
        str(sidero.kubeconfig),
        "--target-kubeconfig",
        str(plane.api.kubeconfig_path),
    ]


async def ipxe(plane: ManagementPlane, uuid: str) -> tuple[int, str]:
    """What the server ``uuid`` is told when it network-boots (from its first NIC, as its
    inventory in Arges names it: a boot from another NIC is refused)."""
    assert plane.boot is not None and plane.kube is not None
    mac = "b4-96-91-3a-5c-10"
    with contextlib.suppress(NotFound):
        hardware = ((await plane.kube.get(SERVERS, uuid)).get("status") or {}).get("hardware")
        nics = ((hardware or {}).get("network") or {}).get("interfaces") or []
        if nics and nics[0].get("mac"):
            mac = nics[0]["mac"].replace(":", "-")
    url = f"{plane.boot.http.base_url}/ipxe?uuid={uuid}&mac={mac}&arch=x86_64"
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        return resp.status, await resp.text()


async def server_status(plane: ManagementPlane, name: str) -> dict[str, Any]:
    return (await kube_of(plane).get(SERVERS, name)).get("status") or {}


async def power_managed(plane: ManagementPlane, name: str, power: str) -> dict[str, Any] | None:
    status = await server_status(plane, name)
    found = next(
        (c for c in status.get("conditions") or [] if c["type"] == "PowerManagement"), None
    )
    ok = found is not None and found["status"] == "True" and status.get("power") == power
    return status if ok else None


class FailingAfter(KubeClient):
    """An Arges client whose connection breaks after ``writes`` writes (an import killed
    half-way)."""

    def __init__(self, kube: KubeClient, writes: int) -> None:
        super().__init__(kube.connection)
        self.left = writes

    async def request(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        if method != "GET":
            if self.left == 0:
                raise Unavailable(f"{method} {path}: connection reset")
            self.left -= 1
        return await super().request(method, path, body, **kw)


async def interrupted_import(sidero: Sidero, plane: ManagementPlane, after: str) -> None:
    """Import until the write creating ``after``'s Server, then lose the connection."""
    state, _ = await read_sidero(SideroReader(sidero.kube))
    steps = plan(translate(state, now=dt.datetime.now(dt.UTC)), await read_target(kube_of(plane)))
    cut = 1 + next(
        i
        for i, s in enumerate(steps.steps)
        if (s.verb, s.kind, s.name) == ("create", "Server", after)
    )
    async with FailingAfter(kube_of(plane), cut) as broken:
        with pytest.raises(
            click.ClickException, match=f"stopped writing Server {after}: .*connection reset"
        ):
            await write(broken, steps.steps)


@NEEDS_IPMITOOL
async def test_import_a_running_sidero(
    sidero: Sidero, arges: ManagementPlane, bmcs: dict[str, LabBmc]
) -> None:
    before = await sidero.snapshot()
    args = target_args(sidero, arges)

    code, out, err = await arges_import(*args, "--dry-run")
    assert code == 0, err
    assert f"Server {BOUND}: would create (accepted, bound, BMC 127.0.0.1:" in out
    assert "dry run: nothing was written to Arges" in out
    # Sidero's default Environment (the Talos its servers run) would replace Arges' built-in.
    assert "Environment default: would take over (Sidero's replaces Arges' built-in: " in out
    assert await kube_of(arges).list(SERVERS) == []

    await interrupted_import(sidero, arges, BOUND)
    # Half-way, the bound server is already told to boot from its disk: its binding comes
    # before it, and it has no BMC yet, so nothing powers it.
    assert await ipxe(arges, BOUND) == (200, "#!ipxe\nexit\n")

    code, out, err = await arges_import(*args)
    assert code == 0, err
    lines = out.splitlines()
    assert (
        f"Server {BOUND}: completed an interrupted import (accepted, bound, BMC 127.0.0.1:{bmcs[BOUND].port})"
        in lines
    )
    assert f"Server {FREE}: created (accepted, clean, BMC 127.0.0.1:{bmcs[FREE].port})" in lines
    assert f"Server {NEW}: created (not accepted, not clean)" in lines
    assert f"ServerBinding {BOUND}: unchanged (imported before)" in lines
    assert any(line.startswith(f"note: ServerBinding {BOUND}: its SideroLink") for line in lines)
    assert any(line.startswith(f"note: Server {CORDONED}: spec.pxeMode uefi") for line in lines)
    assert lines[-1].endswith("nothing was written to Sidero")
    for password in PASSWORDS.values():
        assert password not in out + err

    # The bound server boots from its disk, stays on, and is never rebooted.
    assert await ipxe(arges, BOUND) == (200, "#!ipxe\nexit\n")
    bound = await eventually(lambda: power_managed(arges, BOUND, "on"), timeout=30)
    assert (bound["inUse"], bound["isClean"]) == (True, False)
    # The free and the cordoned ones are clean, and their (moved) BMC credentials work.
    free = await eventually(lambda: power_managed(arges, FREE, "off"), timeout=30)
    assert (free["inUse"], free["isClean"]) == (False, True)
    assert free["hardware"]["memory"]["modules"][0]["size"] == 16 * 2**30
    await eventually(lambda: power_managed(arges, CORDONED, "off"), timeout=30)
    status, script = await ipxe(arges, FREE)
    assert status == 200 and "/env/agent/" in script
    status, script = await ipxe(arges, NEW)
    assert status == 200 and "/env/agent/" in script

    # Class membership is what Sidero shows.
    sidero_classes = await sidero.kube.list(sidero_resource("serverclasses", "v1alpha2"))
    for shown in sidero_classes:
        name, expected = shown["metadata"]["name"], shown["status"]

        async def same(name: str = name, expected: dict[str, Any] = expected) -> bool:
            status = (await kube_of(arges).get(SERVER_CLASSES, name)).get("status") or {}
            return all(status.get(k) == expected[k] for k in ("serversAvailable", "serversInUse"))

        await eventually(same, timeout=20, what=f"ServerClass {name} as Sidero shows it")

    code, out, err = await arges_import(*args)
    assert code == 0, err
    outcomes = [line for line in out.splitlines() if not line.startswith(("note:", "Sidero ("))]
    assert outcomes and all(": unchanged (" in line for line in outcomes), out
    assert "; 0 writes;" in out.splitlines()[-1]

    await asyncio.sleep(3)  # a few more rounds of the power controller
    assert bmcs[BOUND].boots() == ["disk"], "powered on once, under Sidero; never again"
    assert await bmcs[BOUND].power() == PowerState.ON
    assert bmcs[FREE].boots() == [] and bmcs[CORDONED].boots() == []
    assert await sidero.snapshot() == before, "nothing changed in Sidero"


@NEEDS_IPMITOOL
async def test_the_bound_machine_moved_into_arges_keeps_its_server_and_the_free_ones_serve(
    sidero: Sidero, arges: ManagementPlane, bmcs: dict[str, LabBmc]
) -> None:
    code, _, err = await arges_import(*target_args(sidero, arges))
    assert code == 0, err
    # What `clusterctl move` brings over: the Cluster, the Machine and its MetalMachine as
    # they were (Sidero's spec: pinned server, sidero:// provider ID), under new uids.
    await install(arges.api.kubeconfig_path, "cluster-api")
    capi = CapiPlayer(kube_of(arges), "prod")
    await capi.create_cluster()
    await eventually(capi.infrastructure_provisioned, timeout=20)
    moved = next(m for m in rack()["metalmachines"] if m["metadata"]["name"] == MACHINE)
    await capi.create_machine(MACHINE, control_plane=True, metal_spec=copy.deepcopy(moved["spec"]))

    async def adopted() -> dict[str, Any] | None:
        metal = await capi.metal_machine(MACHINE)
        installed = condition(metal, "Installed")
        ready = (metal.get("status") or {}).get("ready")
        return metal if ready and installed and installed["status"] == "True" else None

    metal = await eventually(adopted, timeout=30, what="the moved MetalMachine provisioned")
    assert metal["spec"]["providerID"] == f"sidero://{BOUND}"
    assert metal["spec"]["serverRef"]["name"] == BOUND
    binding = await kube_of(arges).get(SERVER_BINDINGS, BOUND)
    assert binding["spec"]["consumerRef"]["uid"] == metal["metadata"]["uid"]

    # A new machine of the same class gets the free server: it is allocatable as it was.
    await capi.create_machine(
        "prod-cp-second",
        control_plane=True,
        metal_spec={
            "serverClassRef": {
                "apiVersion": "metal.sidero.dev/v1alpha2",
                "kind": "ServerClass",
                "name": "r640",
            }
        },
    )

    async def allocated() -> dict[str, Any] | None:
        second = await capi.metal_machine("prod-cp-second")
        return second if (second["spec"].get("serverRef") or {}).get("name") else None

    second = await eventually(allocated, timeout=30, what="a server for the second machine")
    assert second["spec"]["serverRef"]["name"] == FREE
    await eventually(lambda: bmcs[FREE].boots() == ["network"], timeout=30, what="FREE booted")
    assert bmcs[BOUND].boots() == ["disk"]
    assert await ipxe(arges, BOUND) == (200, "#!ipxe\nexit\n")


async def test_an_older_sidero_serving_only_v1alpha1(
    tmp_path: Path, arges: ManagementPlane
) -> None:
    """Sidero before 0.6 served metal.sidero.dev at v1alpha1 only, with cpu and
    systemInformation qualifiers (each a list, ORed; the two ANDed)."""
    if not (SHARED / "sidero").is_dir():
        pytest.skip(f"Sidero's CRDs are not at {SHARED / 'sidero'} (../shared is absent)")
    server = await start_server(tmp_path / "old-sidero", crds=())
    try:
        for path in sorted((SHARED / "sidero").glob("metal.sidero.dev_*.yaml")):
            crd = yaml.safe_load(path.read_text())
            for version in crd["spec"]["versions"]:
                old = version["name"] == "v1alpha1"
                version["served"], version["storage"] = old, old
            await kubectl(server.kubeconfig_path, "apply", "-f", "-", stdin=yaml.safe_dump(crd))
        async with KubeClient(from_kubeconfig(server.kubeconfig_path)) as kube:
            old_server = next(s for s in rack()["servers"] if s["metadata"]["name"] == OLD)
            res = sidero_resource("servers", "metal.sidero.dev/v1alpha1")
            await eventually(lambda: _served(kube), timeout=10)
            await kube.create(res, {"metadata": old_server["metadata"], "spec": old_server["spec"]})
            await kube.patch(res, OLD, {"status": old_server["status"]}, subresource="status")
            classes = sidero_resource("serverclasses", "metal.sidero.dev/v1alpha1")
            for name, cpu in (("hpe-amd", "Advanced Micro Devices, Inc."), ("hpe-intel", "Intel")):
                spec = {
                    "qualifiers": {
                        "cpu": [{"manufacturer": cpu}],
                        "systemInformation": [{"manufacturer": "HPE"}],
                    }
                }
                await kube.create(classes, {"metadata": {"name": name}, "spec": spec})
            code, out, err = await arges_import(
                "--kubeconfig",
                str(server.kubeconfig_path),
                "--target-kubeconfig",
                str(arges.api.kubeconfig_path),
            )
        assert code == 0, err
        assert "Sidero (metal.sidero.dev/v1alpha1): " in out.splitlines()[-1]

        async def members(name: str, expected: list[str]) -> bool:
            status = (await kube_of(arges).get(SERVER_CLASSES, name)).get("status") or {}
            return (
                list(status.get("serversAvailable") or []) == expected and "serversInUse" in status
            )

        await eventually(lambda: members("hpe-amd", [OLD]), timeout=20, what="hpe-amd has OLD")
        await eventually(lambda: members("hpe-intel", []), timeout=20, what="hpe-intel is empty")
    finally:
        await server.stop()


async def _served(kube: KubeClient) -> bool:
    return await kube.preferred_version("metal.sidero.dev") == "v1alpha1"


async def test_what_is_not_sidero_or_not_arges_is_a_clear_message(
    tmp_path: Path, sidero_api: ApiServer
) -> None:
    sidero = sidero_api.kubeconfig_path
    code, out, err = await arges_import("--kubeconfig", str(tmp_path / "missing"))
    assert (code, out) == (1, "")
    assert err.startswith("Error: Sidero's kubeconfig: cannot read kubeconfig ")
    plain = await start_server(tmp_path / "plain", crds=())
    try:
        code, _, err = await arges_import(
            "--kubeconfig", str(plain.kubeconfig_path), "--target-kubeconfig", str(sidero)
        )
        assert code == 1 and "serves no metal.sidero.dev API" in err, err
        code, _, err = await arges_import(
            "--kubeconfig", str(sidero), "--target-kubeconfig", str(plain.kubeconfig_path)
        )
        assert code == 1 and "the target API serves no metal.arges.dev" in err, err
        assert "Traceback" not in err
    finally:
        await plain.stop()
