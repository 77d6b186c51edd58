"""A rack of simulated servers beside a real plane, for the cluster tests."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import random
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from arges.api.environment import AGENT_ENVIRONMENT, Asset, EnvironmentSpec, Kernel
from arges.boot.services import BootConfig
from arges.kube.client import KubeClient
from arges.kube.errors import NotFound
from arges.kube.resources import (
    ENVIRONMENTS,
    SECRETS,
    SERVER_BINDINGS,
    SERVERS,
    TALOS_CLUSTERS,
)
from arges.plane import ManagementPlane, PlaneConfig
from arges.power import fake
from arges.power.base import PowerState
from tests.integration.clusters.sim import SimServer
from tests.integration.conftest import eventually, make_assets, sha512

NS = "default"
_PORTS = random.Random()
"""Port picks, off the shared ``random`` state (Hypothesis watches that one during draws)."""


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port free now, below Linux's ephemeral range (32768 on): a port kept for a restarted
    plane must not be taken meanwhile as the local end of some outgoing connection (a CI run
    once found its boot HTTP port so taken, between this pick and the plane's start)."""
    while True:
        port = _PORTS.randrange(10_000, 32_768)
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


def environment(directory: Path, args: list[str]) -> EnvironmentSpec:
    kernel, initrd = make_assets(directory)
    return EnvironmentSpec(
        kernel=Kernel(url=kernel.as_uri(), sha512=sha512(kernel), args=args),
        initrd=Asset(url=initrd.as_uri(), sha512=sha512(initrd)),
    )


@dataclass
class Rack:
    """A plane and its simulated servers."""

    plane: ManagementPlane
    kube: KubeClient
    session: aiohttp.ClientSession
    talos_port: int
    tmp: Path
    servers: list[SimServer]
    tasks: list[asyncio.Task[None]]

    async def start(self) -> None:
        self.plane = ManagementPlane(self.plane.config)
        await self.plane.start()
        assert self.plane.kube is not None
        self.kube = self.plane.kube
        assert self.plane.boot is not None
        for sim in self.servers:
            sim.kube = self.kube
            sim.base_url = self.plane.boot.http.base_url

    async def add(self, *, wait: bool = True) -> SimServer:
        """Rack a new server: power it on, record its BMC, accept it, and (with ``wait``)
        wait until it is clean and powered off (available)."""
        assert self.plane.boot is not None
        sim = SimServer(
            len(self.servers) + 1,
            self.plane.boot.http.base_url,
            self.talos_port,
            self.kube,
        )
        self.servers.append(sim)
        sim.power_on()
        self.tasks.append(asyncio.create_task(sim.run()))
        await eventually(lambda: self._exists(sim.uuid), timeout=20)
        await self.kube.patch(
            SERVERS,
            sim.uuid,
            {
                "spec": {
                    "accepted": True,
                    "bmc": {
                        "address": sim.bmc_address,
                        "protocol": "fake",
                        "credentialsSecretRef": {"name": "sim-bmc", "namespace": NS},
                    },
                }
            },
        )
        if wait:
            await eventually(lambda: self.available(sim), timeout=30)
        return sim

    async def _exists(self, name: str) -> bool:
        try:
            await self.kube.get(SERVERS, name)
            return True
        except NotFound:
            return False

    async def available(self, sim: SimServer) -> bool:
        status = (await self.kube.get(SERVERS, sim.uuid)).get("status") or {}
        return (
            status.get("isClean") is True
            and not status.get("inUse")
            and sim.machine.power == PowerState.OFF
        )

    async def cluster(self, name: str = "demo") -> dict[str, Any]:
        return await self.kube.get(TALOS_CLUSTERS, name, NS)

    async def members(self, name: str = "demo") -> list[dict[str, Any]]:
        return list(((await self.cluster(name)).get("status") or {}).get("members") or [])

    async def bindings(self) -> list[dict[str, Any]]:
        return await self.kube.list(SERVER_BINDINGS)

    async def condition(self, kind: str, name: str = "demo") -> dict[str, Any] | None:
        status = (await self.cluster(name)).get("status") or {}
        return next((c for c in status.get("conditions") or [] if c["type"] == kind), None)

    async def secret(self, name: str, key: str) -> str:
        data = (await self.kube.get(SECRETS, name, NS))["data"]
        return base64.b64decode(data[key]).decode()

    def sim(self, uuid: str) -> SimServer:
        return next(s for s in self.servers if s.uuid == uuid)


@contextlib.asynccontextmanager
async def open_rack(tmp_path: Path, *, talos_port: int | None = None) -> AsyncIterator[Rack]:
    """A plane with boot HTTP (no DHCP), the fake power driver, the agent Environment and
    the simulated servers' BMC Secret; its members answer Talos' API on ``talos_port``."""
    fake.MACHINES.clear()
    talos_port = talos_port or free_port()
    config = PlaneConfig(
        data_dir=tmp_path / "data",
        api_port=0,
        default_environment=environment(tmp_path / "talos", ["talos.platform=metal"]),
        boot=BootConfig(
            address="127.0.0.1",
            # Fixed, so a restarted plane is where the servers' URLs point, as in production.
            http_port=free_port(),
            # Any: the simulated servers boot over HTTP only.
            tftp_port=0,
            dhcp_mode=None,
        ),
        power_refresh=0.3,
        reboot_timeout=60,
        talos_port=talos_port,
        cluster_recheck=1.0,
        talos_probe_interval=0.5,
        asset_dirs=(tmp_path / "assets",),
    )
    plane = ManagementPlane(config)
    await plane.start()
    assert plane.kube is not None
    kube = plane.kube
    agent = environment(tmp_path / "assets" / "agent", ["console=ttyS0"])
    await kube.create(
        ENVIRONMENTS, {"metadata": {"name": AGENT_ENVIRONMENT}, "spec": agent.to_json()}
    )
    await kube.create(
        SECRETS,
        {
            "metadata": {"name": "sim-bmc"},
            "stringData": {"username": "admin", "password": "secret"},
        },
        NS,
    )
    async with aiohttp.ClientSession() as session:
        r = Rack(plane, kube, session, talos_port, tmp_path, [], [])
        try:
            yield r
        finally:
            for task in r.tasks:
                task.cancel()
            await asyncio.gather(*r.tasks, return_exceptions=True)
            for sim in r.servers:
                await sim.close()
            await r.plane.stop()


@pytest.fixture
async def rack(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> AsyncIterator[Rack]:
    # The plane's INFO lines (power actions, allocations, releases) are kept, so a failure
    # in CI, where these tests cannot be watched, says what the plane did before it.
    caplog.set_level(logging.INFO, logger="arges")
    async with open_rack(tmp_path) as r:
        yield r


async def create_cluster(
    kube: KubeClient, name: str = "demo", *, control_planes: int = 1, workers: int = 1, **spec: Any
) -> dict[str, Any]:
    """Create TalosCluster ``name`` (one pool, ``workers``); returns it as stored."""
    return await kube.create(
        TALOS_CLUSTERS,
        {
            "metadata": {"name": name},
            "spec": {
                "endpoint": "https://10.5.0.10:6443",
                "controlPlane": {"replicas": control_planes},
                "workers": [{"name": "workers", "replicas": workers}],
                **spec,
            },
        },
        NS,
    )


def states(members: list[dict[str, Any]]) -> dict[str, str]:
    return {m["server"]: m["state"] for m in members}


async def all_in(rack: Rack, state: str, count: int, name: str = "demo") -> bool:
    members = await rack.members(name)
    return len(members) == count and all(m["state"] == state for m in members)
