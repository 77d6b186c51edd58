"""Two replicas of ``arges up --kubeconfig --leader-elect`` against one API server.

The leader reaches the API through a proxy that holds its third ServerBinding create; it is
killed (SIGKILL) there, mid-provisioning, with two members bound. The other replica, which
served boot HTTP all along, takes the Lease over once it expires and finishes the cluster: no
server bound twice, none lost, every member's config served by the survivor and reported
installed through it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from arges.access.credentials import mint, record
from arges.api.crds import all_crds
from arges.apiserver.server import ApiServer
from arges.kube.client import KubeClient
from arges.kube.connection import from_kubeconfig
from arges.kube.errors import NotFound
from arges.kube.resources import LEASES, SECRETS, SERVER_BINDINGS, SERVERS, TALOS_CLUSTERS
from arges.wire import REPORT_PATH
from tests.integration.clusters.conftest import create_cluster
from tests.integration.clusters.test_kill_during_scale_down import HoldingProxy
from tests.integration.conftest import eventually, register, start_server

pytestmark = pytest.mark.slow
NS = "default"
FAILOVER = 15.0
"""Seconds within which the other replica leads after the leader is killed (the goal)."""


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Replica:
    """One ``arges up --kubeconfig KUBECONFIG --leader-elect`` process, DHCP off."""

    def __init__(self, tmp: Path, name: str, kubeconfig: Path) -> None:
        self.dir = tmp / name
        self.dir.mkdir()
        self.kubeconfig = kubeconfig
        self.http_port = free_port()
        self.log = self.dir / "arges.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.identity = ""
        image = self.dir / "agent-image"
        image.mkdir()
        (image / "vmlinuz").write_bytes(b"kernel")
        (image / "initramfs.img").write_bytes(b"initramfs")
        self.image = image

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    async def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    *(sys.executable, "-m", "arges", "up", "--leader-elect"),
                    *("--kubeconfig", str(self.kubeconfig)),
                    *("--data-dir", str(self.dir / "data")),
                    *("--agent-image", str(self.image)),
                    *("--boot-address", "127.0.0.1"),
                    *("--http-port", str(self.http_port)),
                    *("--tftp-port", str(free_port(socket.SOCK_DGRAM))),
                    *("--dhcp-mode", "off"),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        await eventually(self._serving, timeout=60, what=f"{self.dir.name} serving boot HTTP")
        # The candidate line may reach the log file a moment after the port answers.
        self.identity = await eventually(
            self._candidate, timeout=30, what=f"{self.dir.name} names its candidate identity"
        )

    async def _serving(self) -> bool:
        assert self.proc is not None
        assert self.proc.poll() is None, self.log.read_text()
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"{self.base_url}/configdata") as resp,
            ):
                # Refused (no credential) is an answer: the port serves.
                return resp.status == 403
        except aiohttp.ClientError:
            return False

    def _candidate(self) -> str:
        found = re.search(r"leader election: candidate (\S+)\n", self.log.read_text())
        return found.group(1) if found else ""

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[ApiServer]:
    server = await start_server(tmp_path / "api", crds=all_crds())
    yield server
    await server.stop()


async def holder(kube: KubeClient) -> str:
    try:
        lease = await kube.get(LEASES, "arges", NS)
    except NotFound:
        return ""
    return str((lease.get("spec") or {}).get("holderIdentity") or "")


async def settled(kube: KubeClient, servers: list[str]) -> dict[str, dict[str, Any]] | None:
    """The bindings, once the cluster holds 1 control plane and 5 workers, each with its own
    config Secret, and the two servers left over are clean and unbound."""
    bindings = {b["metadata"]["name"]: b for b in await kube.list(SERVER_BINDINGS)}
    if sorted(b["spec"]["role"] for b in bindings.values()) != ["controlplane"] + ["worker"] * 5:
        return None
    selector = "cluster.arges.dev/cluster-name=demo,cluster.arges.dev/member"
    secrets = await kube.list(SECRETS, NS, label_selector=selector)
    if {s["metadata"]["labels"]["cluster.arges.dev/member"] for s in secrets} != set(bindings):
        return None
    for name in set(servers) - set(bindings):
        status = (await kube.get(SERVERS, name)).get("status") or {}
        if not status.get("isClean") or status.get("inUse"):
            return None
    return bindings


async def test_the_other_replica_takes_over_a_killed_leader_and_finishes_provisioning(
    api: ApiServer, tmp_path: Path
) -> None:
    token = (tmp_path / "api" / "pki" / "admin.token").read_text().strip()
    proxy = HoldingProxy(api)
    await proxy.start()
    first = Replica(tmp_path, "first", proxy.kubeconfig(tmp_path / "proxy.kubeconfig", token))
    second = Replica(tmp_path, "second", api.kubeconfig_path)
    try:
        async with KubeClient(from_kubeconfig(api.kubeconfig_path)) as kube:
            servers = [f"5a5a0000-0000-4000-8000-00000000000{i}" for i in range(8)]
            for name in servers:
                await register(kube, name, accepted=True, clean=True)
            await first.start()
            await eventually(
                lambda: _is(holder(kube), first.identity), timeout=30, what="first leads"
            )
            await second.start()
            assert await holder(kube) == first.identity, "a candidate waits for the lease"

            creates: list[str] = []

            def hold(method: str, path: str, body: bytes) -> bool:
                # The third binding create and every later one are held: the workers' pool
                # locks its candidates at once, and only the first of them goes through.
                if method == "POST" and path.endswith("/serverbindings"):
                    creates.append(path)
                    return len(creates) >= 3
                return False

            proxy.hold = hold
            await create_cluster(kube, workers=5)
            await asyncio.wait_for(proxy.held.wait(), 60)

            async def two_bound() -> bool:
                return len(await kube.list(SERVER_BINDINGS)) == 2

            await eventually(two_bound, what="killed mid-provisioning: 2 of 6 bound")
            first.kill()
            killed = time.monotonic()
            await eventually(
                lambda: _is(holder(kube), second.identity),
                timeout=FAILOVER + 5,
                interval=0.1,
                what="second leads",
            )
            failover = time.monotonic() - killed
            assert failover <= FAILOVER, f"failover took {failover:.1f} s"
            lease = (await kube.get(LEASES, "arges", NS))["spec"]
            assert lease["leaseTransitions"] == 1

            bindings = await eventually(
                lambda: settled(kube, servers), timeout=60, what="1+5 members, 2 servers free"
            )
            assert all(b["spec"]["consumerRef"]["name"] == "demo" for b in bindings.values())
            async with aiohttp.ClientSession() as session:
                for name, binding in bindings.items():
                    # The credential of the member's target boot, as a replica's /ipxe mints
                    # and records it (the replicas here have no Talos image to boot).
                    token = mint()
                    now = dt.datetime.now(dt.UTC)
                    boot = record(token, "config", "127.0.0.1", now)
                    await kube.patch(
                        SERVERS,
                        name,
                        {"status": {"bootCredential": boot.to_json()}},
                        subresource="status",
                    )
                    async with session.get(
                        f"{second.base_url}/configdata", params={"uuid": name, "token": token}
                    ) as resp:
                        assert resp.status == 200, await resp.text()
                        config = yaml.safe_load(await resp.text())
                    assert config["machine"]["type"] == binding["spec"]["role"]
                    async with session.post(
                        second.base_url + REPORT_PATH,
                        json={"uuid": name, "phase": "installed"},
                        headers={"Authorization": f"Bearer {token}"},
                    ) as resp:
                        assert resp.status == 200, await resp.text()

            async def installed() -> bool:
                cluster = await kube.get(TALOS_CLUSTERS, "demo", NS)
                members = (cluster.get("status") or {}).get("members") or []
                return len(members) == 6 and all(m["state"] == "Installed" for m in members)

            await eventually(installed, timeout=60, what="every member Installed")
            assert len(await kube.list(SERVER_BINDINGS)) == 6
    finally:
        first.stop()
        second.stop()
        await proxy.stop()


async def _is(value: Any, expected: str) -> bool:
    return bool(await value == expected)
