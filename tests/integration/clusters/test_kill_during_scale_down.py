"""kill -9 of ``arges up`` at each step of a scale-down, then convergence.

The controllers and boot services run as their own process (``arges up --kubeconfig``)
against an API server in the test, reached through a proxy that can hold one request: the
process is killed while its k-th write of the release is held, so that write never lands and
every earlier one did. After a restart the cluster converges with no orphan config Secret, and
the released server, bound again in another role, is served the config of its new role.
"""

from __future__ import annotations

import asyncio
import json
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

from arges.api.crds import all_crds
from arges.apiserver.server import ApiServer
from arges.kube.client import KubeClient
from arges.kube.connection import from_kubeconfig
from arges.kube.errors import NotFound
from arges.kube.resources import SECRETS, SERVER_BINDINGS, SERVERS, TALOS_CLUSTERS
from tests.integration.clusters.conftest import create_cluster
from tests.integration.conftest import eventually, register, start_server
from tests.integration.proxy import HoldingProxy

pytestmark = pytest.mark.slow
NS = "default"


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Arges:
    """``arges up --kubeconfig`` as a child process, with the boot HTTP port (DHCP off)."""

    def __init__(self, tmp: Path, kubeconfig: Path) -> None:
        self.tmp = tmp
        self.kubeconfig = kubeconfig
        self.http_port = free_port()
        self.tftp_port = free_port(socket.SOCK_DGRAM)
        self.log = tmp / "arges.log"
        self.proc: subprocess.Popen[bytes] | None = None
        image = tmp / "agent-image"
        image.mkdir(exist_ok=True)
        (image / "vmlinuz").write_bytes(b"kernel")
        (image / "initramfs.img").write_bytes(b"initramfs")
        self.image = image
        # A local stand-in for Talos, so /ipxe can serve the target Environment offline.
        self.talos = tmp / "talos"
        self.talos.mkdir(exist_ok=True)
        (self.talos / "vmlinuz").write_bytes(b"talos kernel")
        (self.talos / "initramfs.xz").write_bytes(b"talos initramfs")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    async def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    *(sys.executable, "-m", "arges", "up"),
                    *("--kubeconfig", str(self.kubeconfig)),
                    *("--data-dir", str(self.tmp / "data")),
                    *("--agent-image", str(self.image)),
                    *("--talos-kernel-url", (self.talos / "vmlinuz").as_uri()),
                    *("--talos-initrd-url", (self.talos / "initramfs.xz").as_uri()),
                    *("--boot-address", "127.0.0.1"),
                    *("--http-port", str(self.http_port)),
                    *("--tftp-port", str(self.tftp_port)),
                    *("--dhcp-mode", "off"),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                assert self.proc.poll() is None, self.log.read_text()
                try:
                    async with session.get(f"{self.base_url}/configdata") as resp:
                        if resp.status == 403:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.2)
        raise AssertionError(f"arges up did not start:\n{self.log.read_text()}")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    async def configdata(self, uuid: str) -> tuple[int, str]:
        """What the server ``uuid`` gets when it network-boots now and fetches its config
        with the credential its kernel arguments carry (its agent's, when it is not bound)."""
        async with aiohttp.ClientSession() as session:
            params = {"uuid": uuid, "mac": "52-54-00-00-00-01"}
            async with session.get(f"{self.base_url}/ipxe", params=params) as resp:
                script = await resp.text()
            target = re.search(r"talos\.config=(\S+)", script)
            agent = re.search(r"arges\.token=(\S+)", script)
            if target is not None:
                url = target.group(1).replace("uuid=&", f"uuid={uuid}&")
            else:
                url = f"{self.base_url}/configdata?uuid={uuid}&token={agent.group(1) if agent else ''}"
            async with session.get(url) as resp:
                return resp.status, await resp.text()


def release_step(method: str, path: str, body: bytes) -> str | None:
    """Which write of a TalosCluster's release a request is, if it is one."""
    if method == "DELETE" and "/secrets/demo-config-" in path:
        return "config"
    if method == "DELETE" and "/serverbindings/" in path:
        return "binding"
    if method == "POST" and path.endswith("/events"):
        event = json.loads(body)
        if event["reason"] == "Released" and event["involvedObject"]["kind"] == "TalosCluster":
            return "event"
    return None


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[tuple[ApiServer, HoldingProxy, Arges]]:
    api = await start_server(tmp_path / "api", crds=all_crds())
    proxy = HoldingProxy(api)
    await proxy.start()
    token = (tmp_path / "api" / "pki" / "admin.token").read_text().strip()
    arges = Arges(tmp_path, proxy.kubeconfig(tmp_path / "proxy.kubeconfig", token))
    try:
        yield api, proxy, arges
    finally:
        if arges.proc is not None and arges.proc.poll() is None:
            arges.kill()
        await proxy.stop()
        await api.stop()


async def _config_secrets(kube: KubeClient) -> dict[str, dict[str, Any]]:
    selector = "cluster.arges.dev/cluster-name=demo,cluster.arges.dev/member"
    return {
        s["metadata"]["labels"]["cluster.arges.dev/member"]: s
        for s in await kube.list(SECRETS, NS, label_selector=selector)
    }


async def _settled(kube: KubeClient, workers: int) -> dict[str, dict[str, Any]] | None:
    """The bindings once the cluster holds 1 control plane and ``workers`` workers, each with
    exactly its own config Secret and no other."""
    bindings = {b["metadata"]["name"]: b for b in await kube.list(SERVER_BINDINGS)}
    roles = sorted(b["spec"]["role"] for b in bindings.values())
    if roles != ["controlplane"] + ["worker"] * workers:
        return None
    secrets = await _config_secrets(kube)
    if set(secrets) != set(bindings):
        return None
    for name, secret in secrets.items():
        uid = secret["metadata"]["annotations"]["cluster.arges.dev/binding-uid"]
        if uid != bindings[name]["metadata"]["uid"]:
            return None
    return bindings


@pytest.mark.parametrize("step", ["config", "binding", "event"])
async def test_a_kill_at_each_step_of_a_scale_down_converges_with_no_stale_config(
    stack: tuple[ApiServer, HoldingProxy, Arges], step: str
) -> None:
    api, proxy, arges = stack
    async with KubeClient(from_kubeconfig(api.kubeconfig_path)) as kube:
        for i in range(3):
            await register(
                kube, f"5a5a0000-0000-4000-8000-00000000000{i}", accepted=True, clean=True
            )
        await arges.start()
        await create_cluster(kube, workers=2)
        before = await eventually(lambda: _settled(kube, 2), timeout=60, what="1+2 members")

        steps: list[str] = []

        def hold(method: str, path: str, body: bytes) -> bool:
            which = release_step(method, path, body)
            if which is not None:
                steps.append(which)
            return which == step

        proxy.hold = hold
        await kube.patch(
            TALOS_CLUSTERS, "demo", {"spec": {"workers": [{"name": "workers", "replicas": 1}]}}, NS
        )
        await asyncio.wait_for(proxy.held.wait(), 30)
        arges.kill()
        proxy.hold = None
        order = ["config", "binding", "event"]
        assert steps == order[: order.index(step) + 1], "a release writes in this order"

        await arges.start()
        after = await eventually(lambda: _settled(kube, 1), timeout=60, what="1+1 members")
        (released,) = set(before) - set(after)
        assert await arges.configdata(released) == (403, "forbidden\n"), "nothing is served to it"
        with pytest.raises(NotFound):
            await kube.get(SECRETS, f"demo-config-{released}", NS)

        # Wiped (as its agent would report), it is the only free server: growing the control
        # plane takes it, and it is served a control plane's config, not its old one.
        await kube.patch(SERVERS, released, {"status": {"isClean": True}}, subresource="status")
        await kube.patch(TALOS_CLUSTERS, "demo", {"spec": {"controlPlane": {"replicas": 2}}}, NS)

        async def served() -> str | None:
            code, text = await arges.configdata(released)
            return text if code == 200 else None

        config = yaml.safe_load(await eventually(served, timeout=60, what="its new config"))
        assert config["machine"]["type"] == "controlplane"
        bindings = await kube.list(SERVER_BINDINGS)
        assert len(bindings) == 3 and len({b["metadata"]["name"] for b in bindings}) == 3
