"""``arges move`` between two API servers: the source an embedded one with Arges running on it
(``arges up --kubeconfig``), the target another one treated as any Kubernetes API (no Arges
CRDs, nothing of Arges' on it), reached through a proxy that can hold a request.

The move is killed (SIGKILL) while the target holds its first ServerBinding create, then run
again: it finishes with every object once on the target, owner references and uids remapped,
spec and status identical, Secrets byte-identical; the source paused and refusing boots. An
Arges started on the target then gives a bound server the same boot and the same config, and
a scale-up binds exactly one more server; everything then moves back. Also: ``--dry-run``
changes nothing, ``--rollback`` after a kill leaves the target without a copy and the source
unpaused, and Cluster API's objects move (their Cluster paused meanwhile) with the bindings
their MetalMachines hold, once the target serves Cluster API (refused before, nothing
written).
"""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from arges.api.binding import RELEASE_FINALIZER
from arges.api.crds import all_crds
from arges.apiserver.server import ApiServer
from arges.kube.client import KubeClient
from arges.kube.connection import from_kubeconfig
from arges.kube.errors import NotFound
from arges.kube.resources import (
    MANAGEMENT_PLANES,
    METAL_CLUSTERS,
    METAL_MACHINES,
    SECRETS,
    SERVER_BINDINGS,
    SERVER_CLASSES,
    SERVERS,
    TALOS_CLUSTERS,
    Resource,
)
from arges.metal.capi import CONSUMER_UID_LABEL
from arges.metal.move import MOVED_FROM, RECORD
from tests.integration.clusters.capi import CapiPlayer, install
from tests.integration.clusters.conftest import create_cluster
from tests.integration.clusters.test_kill_during_scale_down import Arges, _settled
from tests.integration.conftest import eventually, register, start_server
from tests.integration.proxy import HoldingProxy

pytestmark = pytest.mark.slow
NS = "default"
SERVER_NAMES = [f"5a5a0000-0000-4000-8000-00000000000{i}" for i in range(4)]
BMC_SERVER = SERVER_NAMES[3]
ARGES_KINDS = [SERVERS, SERVER_CLASSES, SERVER_BINDINGS, TALOS_CLUSTERS]
ENVIRONMENTS = Resource("metal.arges.dev", "v1alpha1", "environments", "Environment", False)
MOVED = [*ARGES_KINDS, ENVIRONMENTS]


@pytest.fixture
async def apis(tmp_path: Path) -> AsyncIterator[tuple[ApiServer, ApiServer]]:
    source = await start_server(tmp_path / "source", crds=all_crds())
    target = await start_server(tmp_path / "target")
    try:
        yield source, target
    finally:
        await source.stop()
        await target.stop()


async def populate(kube: KubeClient) -> None:
    """Three accepted, clean servers and one not accepted whose BMC has a credentials Secret."""
    for name in SERVER_NAMES[:3]:
        await register(kube, name, accepted=True, clean=True)
    await register(kube, BMC_SERVER)
    await kube.create(
        SECRETS,
        {"metadata": {"name": "bmc-creds"}, "stringData": {"username": "admin", "password": "pw"}},
        NS,
    )
    bmc = {
        "address": "sim-bmc-9",
        "protocol": "fake",
        "credentialsSecretRef": {"name": "bmc-creds", "namespace": NS},
    }
    await kube.patch(SERVERS, BMC_SERVER, {"spec": {"bmc": bmc}})


def move_args(source: Path, target: Path, *extra: str) -> list[str]:
    return [
        *(sys.executable, "-m", "arges", "move"),
        *("--kubeconfig", str(source), "--to-kubeconfig", str(target)),
        *extra,
    ]


async def run_move(source: Path, target: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """``arges move`` to completion (the API servers run in this event loop meanwhile)."""
    proc = await asyncio.create_subprocess_exec(
        *move_args(source, target, *extra),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 180)
    return subprocess.CompletedProcess([], proc.returncode or 0, out.decode(), err.decode())


def first_binding(method: str, path: str, body: bytes) -> bool:
    return method == "POST" and path.endswith("/serverbindings")


async def kill_move_at_first_binding(
    proxy: HoldingProxy,
    source: Path,
    target: Path,
    log: Path,
    hold: Callable[[str, str, bytes], bool] = first_binding,
) -> None:
    """Run the move until the target holds the request ``hold`` picks (its first ServerBinding
    create), then SIGKILL it."""
    proxy.held.clear()
    proxy.hold = hold
    with log.open("w") as out:
        proc = subprocess.Popen(move_args(source, target), stdout=out, stderr=subprocess.STDOUT)
    try:
        await asyncio.wait_for(proxy.held.wait(), 90)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        proxy.hold = None
    assert proc.returncode == -signal.SIGKILL, log.read_text()


async def boot(base_url: str, uuid: str) -> tuple[str, int, str]:
    """What server ``uuid`` is given when it network-boots now (``target``, ``agent`` or
    ``disk``), and what it gets fetching its config with that boot's credential; ``refused``
    when ``/ipxe`` does not answer 200."""
    async with aiohttp.ClientSession() as session:
        params = {"uuid": uuid, "mac": "52-54-00-00-00-01"}
        async with session.get(f"{base_url}/ipxe", params=params) as resp:
            script = await resp.text()
            if resp.status != 200:
                return "refused", resp.status, script
        target = re.search(r"talos\.config=(\S+)", script)
        if target is None:
            return ("agent" if "arges.token=" in script else "disk"), 0, ""
        async with session.get(target.group(1).replace("uuid=&", f"uuid={uuid}&")) as resp:
            return "target", resp.status, await resp.text()


async def _served(answer: Any) -> tuple[str, int, str] | None:
    value: tuple[str, int, str] = await answer
    return value if value[0] != "refused" else None


async def snapshot(kube: KubeClient) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Every object of the kinds that move (but the built-in Environments, each Arges' own),
    and every Secret, by (kind, namespace, name)."""
    found = {}
    for res in [*MOVED, SECRETS]:
        for obj in await kube.list(res):
            if (obj["metadata"].get("annotations") or {}).get("metal.arges.dev/built-in"):
                continue
            meta = obj["metadata"]
            found[(res.kind, meta.get("namespace") or "", meta["name"])] = obj
    return found


def remapped(node: Any, uids: dict[str, str]) -> Any:
    if isinstance(node, str):
        return uids.get(node, node)
    if isinstance(node, dict):
        return {k: remapped(v, uids) for k, v in node.items()}
    if isinstance(node, list):
        return [remapped(v, uids) for v in node]
    return node


def assert_copied(
    before: dict[tuple[str, str, str], dict[str, Any]],
    after: dict[tuple[str, str, str], dict[str, Any]],
    fields: tuple[str, ...] = ("spec", "status", "data"),
) -> int:
    """Every object of ``before`` (the source) that moves is on the target (``after``), uids
    remapped, the rest (of ``fields``, and the metadata) identical; returns how many moved."""
    copies = {
        o["metadata"]["annotations"][MOVED_FROM]: o
        for o in after.values()
        if MOVED_FROM in (o["metadata"].get("annotations") or {})
    }
    uids = {source: copy["metadata"]["uid"] for source, copy in copies.items()}
    moved = 0
    for k, obj in before.items():
        if k[0] == "Secret" and not (k[2] == "bmc-creds" or k[2].startswith("demo-")):
            continue
        copy = after.get(k)
        assert copy is not None, f"{k} was not moved"
        assert copy["metadata"]["annotations"][MOVED_FROM] == obj["metadata"]["uid"]
        moved += 1
        for field in fields:
            assert copy.get(field) == remapped(obj.get(field), uids), (k, field)
        for field in ("labels", "finalizers"):
            assert copy["metadata"].get(field) == remapped(obj["metadata"].get(field), uids), k
        notes = dict(copy["metadata"]["annotations"])
        del notes[MOVED_FROM]
        source_notes = dict(obj["metadata"].get("annotations") or {})
        source_notes.pop(MOVED_FROM, None)  # a copy's, when it moves again
        assert notes == remapped(source_notes, uids), k
        owners = obj["metadata"].get("ownerReferences") or []
        assert copy["metadata"].get("ownerReferences", []) == [
            {**o, "uid": uids[o["uid"]]} for o in owners
        ], k
        for o in copy["metadata"].get("ownerReferences", []):
            assert o["uid"] in {c["metadata"]["uid"] for c in after.values()}, k
    assert len(copies) == moved, "nothing else carries the marker"
    return moved


async def test_a_move_killed_midway_resumes_and_the_target_takes_over(
    apis: tuple[ApiServer, ApiServer], tmp_path: Path
) -> None:
    source_api, target_api = apis
    token = (tmp_path / "target" / "pki" / "admin.token").read_text().strip()
    proxy = HoldingProxy(target_api)
    await proxy.start()
    to = proxy.kubeconfig(tmp_path / "to.kubeconfig", token)
    (tmp_path / "source-arges").mkdir()
    (tmp_path / "target-arges").mkdir()
    source_arges = Arges(tmp_path / "source-arges", source_api.kubeconfig_path)
    target_arges = Arges(tmp_path / "target-arges", target_api.kubeconfig_path)
    source = KubeClient(from_kubeconfig(source_api.kubeconfig_path))
    target = KubeClient(from_kubeconfig(target_api.kubeconfig_path))
    try:
        await populate(source)
        await source_arges.start()
        await create_cluster(source)
        bindings = await eventually(lambda: _settled(source, 1), timeout=60, what="1+1 members")
        control_plane = next(n for n, b in bindings.items() if b["spec"]["role"] == "controlplane")
        before_boot = await boot(source_arges.base_url, control_plane)
        assert before_boot[:2] == ("target", 200), before_boot

        await kill_move_at_first_binding(proxy, source_api.kubeconfig_path, to, tmp_path / "1.log")
        first = (tmp_path / "1.log").read_text()
        assert "created" in first and "ServerBinding" not in first, first
        assert not await target.list(SERVER_BINDINGS), "killed before any binding landed"

        done = await run_move(source_api.kubeconfig_path, to)
        assert done.returncode == 0, done.stdout + done.stderr
        assert re.search(r"moved \d+ objects", done.stdout), done.stdout
        assert "password" not in done.stdout + done.stderr + first
        # What the first run wrote was found, not written again.
        assert re.search(r"Server \S+: present", done.stdout), done.stdout

        plane = await source.get(MANAGEMENT_PLANES, "arges")
        assert plane["spec"]["paused"] is True
        assert '"phase": "done"' in plane["metadata"]["annotations"][RECORD]
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{source_arges.base_url}/ipxe", params={"uuid": control_plane}) as resp,
        ):
            assert resp.status == 503, "the source refuses boots"
        assert not (await target.get(MANAGEMENT_PLANES, "arges"))["spec"]["paused"]

        moved = assert_copied(await snapshot(source), await snapshot(target))
        # 4 servers, 2 bindings, 1 cluster, the class any, and 5 Secrets: the BMC's, the
        # cluster's bundle and talosconfig, 2 member configs (not the built-in Environments).
        assert moved == 13, moved
        again = await run_move(source_api.kubeconfig_path, to)
        assert again.returncode == 0 and "is done" in again.stdout, again.stdout

        await target_arges.start()
        # Its own default Environment is fetched first (412 meanwhile, and firmware retries).
        after_boot = await eventually(
            lambda: _served(boot(target_arges.base_url, control_plane)),
            timeout=30,
            interval=0.5,
            what="the target's Arges serving boots",
        )
        assert after_boot == before_boot, "the same boot and the same config"

        await target.patch(
            TALOS_CLUSTERS, "demo", {"spec": {"workers": [{"name": "workers", "replicas": 2}]}}, NS
        )
        grown = await eventually(lambda: _settled(target, 2), timeout=60, what="1+2 members")
        assert set(bindings) < set(grown), "the moved bindings are kept"
        assert len(await target.list(SERVER_BINDINGS)) == 3, "one more server, bound once"
        assert BMC_SERVER not in grown

        # And back: the workers released on the target, everything moves onto the first API
        # again, where what it still held of the workers is left over and goes; the Arges
        # there, paused all along, takes over again.
        await target.patch(
            TALOS_CLUSTERS, "demo", {"spec": {"workers": [{"name": "workers", "replicas": 0}]}}, NS
        )
        shrunk = await eventually(lambda: _settled(target, 0), timeout=60, what="1+0 members")
        assert list(shrunk) == [control_plane]
        back = await run_move(target_api.kubeconfig_path, source_api.kubeconfig_path)
        assert back.returncode == 0, back.stdout + back.stderr
        (worker,) = set(bindings) - {control_plane}
        assert f"ServerBinding {worker}: deleted (left over" in back.stdout, back.stdout
        assert [b["metadata"]["name"] for b in await source.list(SERVER_BINDINGS)] == [
            control_plane
        ]
        # Not the status: the Arges there writes its own as soon as it is unpaused.
        assert_copied(await snapshot(target), await snapshot(source), ("spec", "data"))
        plane = await source.get(MANAGEMENT_PLANES, "arges")
        assert not plane["spec"]["paused"] and RECORD not in plane["metadata"]["annotations"]
        assert (await target.get(MANAGEMENT_PLANES, "arges"))["spec"]["paused"]
        served = await eventually(
            lambda: _served(boot(source_arges.base_url, control_plane)),
            timeout=30,
            interval=0.5,
            what="the first Arges serving boots again",
        )
        assert served == before_boot
        assert (await boot(source_arges.base_url, worker))[0] == "agent", "released: wiped"
    finally:
        for arges in (source_arges, target_arges):
            if arges.proc is not None and arges.proc.poll() is None:
                arges.kill()
        await source.close()
        await target.close()
        await proxy.stop()


async def test_a_dry_run_lists_what_would_move_and_changes_nothing(
    apis: tuple[ApiServer, ApiServer],
) -> None:
    source_api, target_api = apis
    async with KubeClient(from_kubeconfig(source_api.kubeconfig_path)) as source:
        await populate(source)
        await create_cluster(source)
        await source.create(
            SECRETS, {"metadata": {"name": "unrelated"}, "stringData": {"k": "v"}}, NS
        )
        result = await run_move(source_api.kubeconfig_path, target_api.kubeconfig_path, "--dry-run")
        assert result.returncode == 0, result.stdout + result.stderr
        lines = result.stdout.splitlines()
        for name in SERVER_NAMES:
            assert f"Server {name}: would create" in lines
        assert "Secret default/bmc-creds: would create" in lines
        assert "TalosCluster default/demo: would create" in lines
        assert not any("unrelated" in line for line in lines)
        assert "dry run: 6 objects would move" in lines[-1]
        with pytest.raises(NotFound):
            await source.get(MANAGEMENT_PLANES, "arges")
    async with KubeClient(from_kubeconfig(target_api.kubeconfig_path)) as target:
        assert await target.preferred_version("metal.arges.dev") is None, "no CRD installed"
    backwards = await run_move(target_api.kubeconfig_path, source_api.kubeconfig_path)
    assert backwards.returncode == 1
    assert "serves no metal.arges.dev: Arges does not run on it" in backwards.stderr


async def test_a_rollback_after_a_kill_removes_the_copies_and_unpauses_the_source(
    apis: tuple[ApiServer, ApiServer], tmp_path: Path
) -> None:
    source_api, target_api = apis
    token = (tmp_path / "target" / "pki" / "admin.token").read_text().strip()
    proxy = HoldingProxy(target_api)
    await proxy.start()
    to = proxy.kubeconfig(tmp_path / "to.kubeconfig", token)
    try:
        async with (
            KubeClient(from_kubeconfig(source_api.kubeconfig_path)) as source,
            KubeClient(from_kubeconfig(target_api.kubeconfig_path)) as target,
        ):
            await populate(source)
            await source.create(
                SERVER_BINDINGS,
                {
                    "metadata": {"name": SERVER_NAMES[0]},
                    "spec": {
                        "serverRef": {"name": SERVER_NAMES[0]},
                        "consumerRef": {
                            "apiVersion": "v1",
                            "kind": "ConfigMap",
                            "namespace": NS,
                            "name": "someone",
                        },
                    },
                },
            )
            await kill_move_at_first_binding(
                proxy, source_api.kubeconfig_path, to, tmp_path / "1.log"
            )
            assert len(await target.list(SERVERS)) == 4, "the servers were copied"
            assert (await source.get(MANAGEMENT_PLANES, "arges"))["spec"]["paused"]

            undone = await run_move(source_api.kubeconfig_path, to, "--rollback")
            assert undone.returncode == 0, undone.stdout + undone.stderr
            assert not await target.list(SERVERS)
            assert not [
                s
                for s in await target.list(SECRETS)
                if MOVED_FROM in (s["metadata"].get("annotations") or {})
            ]
            plane = await source.get(MANAGEMENT_PLANES, "arges")
            assert not plane["spec"]["paused"]
            assert RECORD not in (plane["metadata"].get("annotations") or {})
            assert len(await source.list(SERVERS)) == 4, "the source keeps everything"
    finally:
        await proxy.stop()


async def test_cluster_api_objects_move_paused_with_their_bindings(
    apis: tuple[ApiServer, ApiServer],
) -> None:
    source_api, target_api = apis
    await install(source_api.kubeconfig_path, "cluster-api")
    async with (
        KubeClient(from_kubeconfig(source_api.kubeconfig_path)) as source,
        KubeClient(from_kubeconfig(target_api.kubeconfig_path)) as target,
    ):
        await register(source, SERVER_NAMES[0], accepted=True, clean=True)
        player = CapiPlayer(source)
        await player.create_cluster()
        _, metal = await player.create_machine("m0", control_plane=True, server=SERVER_NAMES[0])
        consumer = metal["metadata"]["uid"]
        await source.create(
            SERVER_BINDINGS,
            {
                "metadata": {"name": SERVER_NAMES[0], "labels": {CONSUMER_UID_LABEL: consumer}},
                "spec": {
                    "serverRef": {"name": SERVER_NAMES[0]},
                    "consumerRef": {
                        "apiVersion": METAL_MACHINES.api_version,
                        "kind": "MetalMachine",
                        "namespace": NS,
                        "name": "m0",
                        "uid": consumer,
                    },
                },
            },
        )

        refused = await run_move(source_api.kubeconfig_path, target_api.kubeconfig_path)
        assert refused.returncode == 1
        assert "nothing was written" in refused.stderr
        assert "clusters.cluster.x-k8s.io" in refused.stderr and "clusterctl init" in refused.stderr
        with pytest.raises(NotFound):
            await source.get(MANAGEMENT_PLANES, "arges")
        assert await target.preferred_version("metal.arges.dev") is None

        await install(target_api.kubeconfig_path, "cluster-api")
        result = await run_move(source_api.kubeconfig_path, target_api.kubeconfig_path)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "Cluster default/capi: paused" in result.stdout
        assert "Cluster default/capi: resumed" in result.stdout
        assert (await source.get(player.clusters, "capi", NS))["spec"]["paused"] is True
        cluster = await target.get(player.clusters, "capi", NS)
        assert not cluster["spec"].get("paused"), "Cluster API acts on the target"

        machine = await target.get(player.machines, "m0", NS)
        moved_metal = await target.get(METAL_MACHINES, "m0", NS)
        metal_cluster = await target.get(METAL_CLUSTERS, "capi", NS)
        assert moved_metal["metadata"]["ownerReferences"][0]["uid"] == machine["metadata"]["uid"]
        assert metal_cluster["metadata"]["ownerReferences"][0]["uid"] == cluster["metadata"]["uid"]
        binding = await target.get(SERVER_BINDINGS, SERVER_NAMES[0])
        uid = moved_metal["metadata"]["uid"]
        assert uid != consumer
        assert binding["spec"]["consumerRef"]["uid"] == uid
        assert binding["metadata"]["labels"][CONSUMER_UID_LABEL] == uid
        data = machine["spec"]["bootstrap"]["dataSecretName"]
        assert (await target.get(SECRETS, data, NS))["data"] == (
            await source.get(SECRETS, data, NS)
        )["data"]


async def test_a_move_killed_between_a_copy_and_its_status_resumes_with_the_status(
    apis: tuple[ApiServer, ApiServer], tmp_path: Path
) -> None:
    source_api, target_api = apis
    token = (tmp_path / "target" / "pki" / "admin.token").read_text().strip()
    proxy = HoldingProxy(target_api)
    await proxy.start()
    to = proxy.kubeconfig(tmp_path / "to.kubeconfig", token)

    def second_server_status(method: str, path: str, body: bytes) -> bool:
        return method == "PUT" and path.endswith(f"/servers/{SERVER_NAMES[1]}/status")

    try:
        async with (
            KubeClient(from_kubeconfig(source_api.kubeconfig_path)) as source,
            KubeClient(from_kubeconfig(target_api.kubeconfig_path)) as target,
        ):
            await populate(source)
            # A binding being released: its finalizer holds it until an Arges releases the
            # server (none runs on the source).
            await source.create(
                SERVER_BINDINGS,
                {
                    "metadata": {"name": SERVER_NAMES[2], "finalizers": [RELEASE_FINALIZER]},
                    "spec": {
                        "serverRef": {"name": SERVER_NAMES[2]},
                        "consumerRef": {"apiVersion": "v1", "kind": "ConfigMap", "name": "x"},
                    },
                },
            )
            await source.delete(SERVER_BINDINGS, SERVER_NAMES[2])
            await kill_move_at_first_binding(
                proxy, source_api.kubeconfig_path, to, tmp_path / "1.log", second_server_status
            )
            copy = await target.get(SERVERS, SERVER_NAMES[1])
            assert not (copy.get("status") or {}).get("hardware"), "created, its status not yet"

            done = await run_move(source_api.kubeconfig_path, to)
            assert done.returncode == 0, done.stdout + done.stderr
            assert f"Server {SERVER_NAMES[1]}: present (status written)" in done.stdout
            assert_copied(await snapshot(source), await snapshot(target))
            assert len(await target.list(SERVERS)) == 4
            releasing = await target.get(SERVER_BINDINGS, SERVER_NAMES[2])
            assert releasing["metadata"]["deletionTimestamp"], "its release goes on there"
            assert releasing["metadata"]["finalizers"] == [RELEASE_FINALIZER]
    finally:
        await proxy.stop()
