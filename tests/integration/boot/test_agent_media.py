"""The agent ISO per Server on the boot port, from a plane whose agent Environment is cached."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from arges.access.guard import BootGuard
from arges.agent.image.iso import missing
from arges.api.environment import AGENT_ENVIRONMENT, Asset, EnvironmentSpec, Kernel
from arges.boot.media import AgentMedia
from arges.kube.resources import ENVIRONMENTS, SERVERS
from arges.plane import ManagementPlane, PlaneConfig
from tests.integration.conftest import eventually, make_assets, sha512

pytestmark = pytest.mark.skipif(bool(missing()), reason="; ".join(missing()))

UUID = "4d3c2b1a-0f9e-4d8c-b7a6-958473625140"


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[ManagementPlane, AgentMedia, TestClient]]:
    kernel, initrd = make_assets(tmp_path / "agent")
    agent = EnvironmentSpec(
        kernel=Kernel(url=kernel.as_uri(), sha512=sha512(kernel), args=["console=ttyS0"]),
        initrd=Asset(url=initrd.as_uri(), sha512=sha512(initrd)),
    )
    plane = ManagementPlane(
        PlaneConfig(
            data_dir=tmp_path / "data",
            api_port=0,
            default_environment=agent,
            agent_environment=agent,
        )
    )
    await plane.start()
    assert plane.kube is not None
    kube = plane.kube

    async def ready() -> bool:
        env = await kube.get(ENVIRONMENTS, AGENT_ENVIRONMENT)
        return any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in env.get("status", {}).get("conditions") or []
        )

    await eventually(ready, 30, what="the agent Environment cached")
    media = AgentMedia(
        kube, plane.assets, tmp_path / "media", lambda: "http://10.88.0.1:8081", BootGuard(kube)
    )
    app = web.Application()
    app.add_routes(media.routes())
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield plane, media, client
    finally:
        await client.close()
        await plane.stop()


def path_of(url: str) -> str:
    return url.removeprefix("http://10.88.0.1:8081")


async def test_each_boot_gets_an_iso_with_its_own_kernel_arguments_and_credential(
    served: tuple[ManagementPlane, AgentMedia, TestClient], tmp_path: Path
) -> None:
    plane, media, client = served
    assert plane.kube is not None
    assert (await client.get(f"/agent/{UUID}.iso")).status == 403, "no such server, no token"

    network = {"address": "10.88.0.50/24", "gateway": "10.88.0.1", "mac": "52:54:00:00:00:07"}
    await plane.kube.create(
        SERVERS, {"metadata": {"name": UUID}, "spec": {"agentNetwork": network}}
    )
    url = await media.url(UUID)
    token = parse_qs(urlsplit(url).query)["token"][0]
    assert url == f"http://10.88.0.1:8081/agent/{UUID}.iso?token={token}"
    record = (await plane.kube.get(SERVERS, UUID))["status"]["bootCredential"]
    assert record["sha256"] == hashlib.sha256(token.encode()).hexdigest()
    assert (record["purpose"], record["addresses"]) == ("agent", ["10.88.0.50"]), "its static IP"
    assert (await client.get(f"/agent/{UUID}.iso")).status == 403, "the ISO holds a credential"
    assert (await client.get(f"/agent/{UUID}.iso?token={'A' * 43}")).status == 403
    response = await client.get(path_of(url))
    assert response.status == 200
    iso = await response.read()
    assert iso[0x8001:0x8006] == b"CD001", "an ISO 9660 image"
    assert b"ARGES_AGENT" in iso[0x8000:0x8100]
    assert b"console=ttyS0 arges.url=http://10.88.0.1:8081 arges.mac=52:54:00:00:00:07 " in iso
    assert b"ip=10.88.0.50::10.88.0.1:255.255.255.0:::off" in iso
    assert f"arges.token={token}".encode() in iso
    head = await client.head(path_of(url))
    assert head.status == 200 and int(head.headers["Content-Length"]) == len(iso)
    (first,) = (tmp_path / "media").glob("*.iso")
    assert first.stat().st_mode & 0o777 == 0o600, "it holds a credential: private"

    await plane.kube.patch(SERVERS, UUID, {"spec": {"agentNetwork": None}})
    later = await media.url(UUID)
    assert (await client.get(path_of(url))).status == 403, "the next boot's credential replaced it"
    again = await (await client.get(path_of(later))).read()
    assert (
        b"linux /boot/vmlinuz console=ttyS0 arges.url=http://10.88.0.1:8081 arges.token=" in again
    )
    assert not first.exists(), "the server's earlier ISO is removed"
    record = (await plane.kube.get(SERVERS, UUID))["status"]["bootCredential"]
    assert record["addresses"] == [], "no static address: bound where it is first used"

    await plane.kube.patch(SERVERS, UUID, {"spec": {"agentNetwork": {"address": "nonsense"}}})
    refused = await client.get(path_of(later))
    assert refused.status == 412 and "spec.agentNetwork" in await refused.text()
