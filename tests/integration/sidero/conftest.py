"""A running Sidero Metal played by a second embedded API server, beside an Arges plane with
its boot services, and IPMI BMCs (the lab's, on loopback) for the servers that have one.

The Sidero cluster gets Sidero's own CRDs from ../shared/capi/sidero (applied with kubectl; the
tests are skipped where they are absent) and a rack written in Sidero's shapes
(tests/unit/metal/sidero_objects.py), each object's status written through its status
subresource as Sidero's controllers write it.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from arges.api.environment import AGENT_ENVIRONMENT
from arges.apiserver.server import ApiServer
from arges.boot.services import BootConfig
from arges.kube.client import KubeClient
from arges.kube.connection import from_kubeconfig
from arges.kube.errors import NotFound
from arges.kube.resources import ENVIRONMENTS, SECRETS, Resource
from arges.plane import ManagementPlane, PlaneConfig
from arges.power.base import BmcInfo, PowerAction, PowerState
from arges.power.ipmi import IpmiDriver
from tests.integration.clusters.capi import install
from tests.integration.clusters.conftest import environment, free_port
from tests.integration.conftest import start_server
from tests.unit.metal.sidero_objects import BOUND, CORDONED, FREE, PASSWORDS, rack

NEEDS_IPMITOOL = pytest.mark.skipif(
    shutil.which("ipmitool") is None, reason="ipmitool is not installed (apt-get install ipmitool)"
)
KINDS = {
    "servers": ("metal.sidero.dev", "Server", False),
    "serverclasses": ("metal.sidero.dev", "ServerClass", False),
    "environments": ("metal.sidero.dev", "Environment", False),
    "serverbindings": ("infrastructure.cluster.x-k8s.io", "ServerBinding", False),
    "metalmachines": ("infrastructure.cluster.x-k8s.io", "MetalMachine", True),
}
USERS = {BOUND: "sidero", FREE: "sidero", CORDONED: "ADMIN"}


def sidero_resource(plural: str, api_version: str) -> Resource:
    group, kind, namespaced = KINDS[plural]
    return Resource(group, api_version.rpartition("/")[2], plural, kind, namespaced)


class LabBmc:
    """One lab BMC (``python -m arges.lab.bmc``) on a loopback UDP port; its "server" is a
    sleeping process, and every start of it is a line in the BMC's log."""

    def __init__(self, tmp: Path, name: str, username: str, password: str) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.log = tmp / f"bmc-{name}.log"
        run_dir = tmp / f"run-{name}"
        run_dir.mkdir()
        config = {
            "port": self.port,
            "username": username,
            "password": password,
            "name": name,
            "run_dir": str(run_dir),
            "argv": [sys.executable, "-c", "import time; time.sleep(3600)"],
        }
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "arges.lab.bmc"],
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(config).encode())
        self.proc.stdin.close()
        deadline = time.monotonic() + 10
        while b"ready" not in self.log.read_bytes():
            assert time.monotonic() < deadline, self.log.read_text()
            time.sleep(0.05)
        self.driver = IpmiDriver(BmcInfo("127.0.0.1", self.port, username, password))

    def boots(self) -> list[str]:
        """The boot device of every start of the server, in order."""
        return [
            line.rsplit("booting from ", 1)[1].split()[0]
            for line in self.log.read_text().splitlines()
            if "powered on, booting from" in line
        ]

    async def power(self) -> PowerState:
        return await self.driver.get_power_state()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


@dataclass
class Sidero:
    """The Sidero management cluster: its API server and a client."""

    server: ApiServer
    kube: KubeClient
    kubeconfig: Path

    async def snapshot(self) -> dict[tuple[str, str, str], str]:
        """Every Sidero object and BMC Secret by (plural, namespace, name): resourceVersion."""
        out = {}
        for plural in KINDS:
            for version in ("v1alpha2", "v1alpha3"):
                try:
                    items = await self.kube.list(sidero_resource(plural, version))
                except NotFound:
                    continue
                for item in items:
                    meta = item["metadata"]
                    out[(plural, meta.get("namespace", ""), meta["name"])] = meta["resourceVersion"]
        for secret in await self.kube.list(SECRETS, "default"):
            out[("secrets", "default", secret["metadata"]["name"])] = secret["metadata"][
                "resourceVersion"
            ]
        return out


async def write_rack(kube: KubeClient, objects: dict[str, list[dict[str, Any]]]) -> None:
    """Create each object at its own apiVersion, then write its status as Sidero does."""
    for secret in objects["secrets"]:
        await kube.create(SECRETS, secret, "default")
    for plural in KINDS:
        for obj in objects[plural]:
            res = sidero_resource(plural, obj["apiVersion"])
            meta = obj["metadata"]
            namespace = meta.get("namespace")
            await kube.create(res, {"metadata": meta, "spec": obj["spec"]}, namespace)
            if obj.get("status"):
                await kube.patch(
                    res, meta["name"], {"status": obj["status"]}, namespace, subresource="status"
                )


@pytest.fixture
def bmcs(tmp_path: Path) -> Iterator[dict[str, LabBmc]]:
    found: dict[str, LabBmc] = {}
    try:
        for name in (BOUND, FREE, CORDONED):
            found[name] = LabBmc(tmp_path, name[-4:], USERS[name], PASSWORDS[name])
        yield found
    finally:
        for bmc in found.values():
            bmc.stop()


@pytest.fixture
async def sidero_api(tmp_path: Path) -> AsyncIterator[ApiServer]:
    """An API server with Sidero's CRDs and nothing else."""
    server = await start_server(tmp_path / "sidero", crds=())
    try:
        await install(server.kubeconfig_path, "sidero")
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def sidero(sidero_api: ApiServer, bmcs: dict[str, LabBmc]) -> AsyncIterator[Sidero]:
    """Sidero with the rack: BOUND's server is running (powered on), the others are off."""
    async with KubeClient(from_kubeconfig(sidero_api.kubeconfig_path)) as kube:
        objects = rack(
            {name: ("127.0.0.1", bmc.port) for name, bmc in bmcs.items()},
            talos=f"http://127.0.0.1:{free_port()}/talos",
        )
        await write_rack(kube, objects)
        assert await bmcs[BOUND].driver.power(PowerAction.ON, wait=10) == PowerState.ON
        yield Sidero(sidero_api, kube, sidero_api.kubeconfig_path)


@pytest.fixture
async def arges(tmp_path: Path) -> AsyncIterator[ManagementPlane]:
    """An Arges plane with its boot services and the agent Environment (the rack fixture's
    configuration, tests/integration/clusters/conftest.py)."""
    config = PlaneConfig(
        data_dir=tmp_path / "arges",
        api_port=0,
        default_environment=environment(tmp_path / "talos", ["talos.platform=metal"]),
        boot=BootConfig(
            address="127.0.0.1",
            http_port=free_port(),
            tftp_port=free_port(socket.SOCK_DGRAM),
            dhcp_mode=None,
        ),
        power_refresh=1.0,
        reboot_timeout=60,
        asset_dirs=(tmp_path / "assets",),
    )
    plane = ManagementPlane(config)
    await plane.start()
    try:
        assert plane.kube is not None
        agent = environment(tmp_path / "assets" / "agent", ["console=ttyS0"])
        await plane.kube.create(
            ENVIRONMENTS, {"metadata": {"name": AGENT_ENVIRONMENT}, "spec": agent.to_json()}
        )
        yield plane
    finally:
        await plane.stop()


async def arges_import(*args: str) -> tuple[int, str, str]:
    """Run ``arges import sidero ARGS`` as a user would; (exit code, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from arges.cli.main import main; main()",
        "import",
        "sidero",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ},
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()
