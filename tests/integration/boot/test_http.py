"""The boot HTTP endpoints against a live plane, with curl as the client."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from arges.access.guard import BootGuard
from arges.boot.decider import KubeBootDecider
from arges.boot.http import BootHttp, HttpConfig
from arges.kube.informer import Informer
from arges.kube.resources import ENVIRONMENTS, SERVER_BINDINGS, SERVER_CLASSES, SERVERS
from arges.plane import ManagementPlane
from arges.tasks import cancel_and_wait
from tests.integration.conftest import bind, eventually, make_assets, register, requests_of

UUID = "8b2c7a12-5f3e-4d61-9a0b-1c2d3e4f5a6b"


@pytest.fixture
async def boot(
    plane: ManagementPlane, tmp_path: Path
) -> AsyncIterator[tuple[str, ManagementPlane, Path]]:
    root = tmp_path / "tftp"
    root.mkdir()
    (root / "ipxe.efi").write_bytes(b"EFI" * 1000)
    assert plane.kube is not None
    guard = BootGuard(plane.kube)
    http = BootHttp(
        HttpConfig("127.0.0.1", 0, tftp_root=root),
        KubeBootDecider(plane.kube, guard),
        plane.assets,
        admission=guard,
    )
    await http.start()
    yield f"http://127.0.0.1:{http.port}", plane, root
    await http.stop()


async def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes, dict]:
    async with aiohttp.ClientSession() as s, s.get(url, headers=headers) as r:
        return r.status, await r.read(), dict(r.headers)


async def agent_environment(plane: ManagementPlane, tmp_path: Path, name: str = "agent") -> None:
    """Environment ``name`` (kernel argument ``console=ttyS0``), created and Ready."""
    assert plane.kube is not None
    kernel, initrd = make_assets(tmp_path / "assets" / name)
    await plane.kube.create(
        ENVIRONMENTS,
        {
            "metadata": {"name": name},
            "spec": {
                "kernel": {"url": kernel.as_uri(), "args": ["console=ttyS0"]},
                "initrd": {"url": initrd.as_uri()},
            },
        },
    )

    async def ready() -> bool:
        env = await plane.kube.get(ENVIRONMENTS, name)
        return any(c["status"] == "True" for c in (env.get("status") or {}).get("conditions", []))

    await eventually(ready)


async def test_unknown_servers_get_the_agent_then_its_assets(boot, tmp_path: Path) -> None:
    base, plane, _ = boot
    status, body, _ = await get(f"{base}/ipxe?uuid={UUID}&mac=52-54-00-12-34-56&arch=x86_64")
    assert status == 412 and b"'agent' does not exist" in body
    await agent_environment(plane, tmp_path)
    status, body, _ = await get(f"{base}/ipxe?uuid={UUID}&mac=52-54-00-12-34-56&arch=x86_64")
    script = body.decode()
    assert status == 200 and f"kernel {base}/env/agent/kernel console=ttyS0 initrd=initrd" in script
    assert "arges.mac=52:54:00:12:34:56" in script and f"arges.url={base}" in script
    assert re.search(r"arges\.token=s\.[0-9]+\.\S+$", script.splitlines()[2]), (
        "an unknown server's credential is signed: it has no Server to keep a hash in"
    )
    kernel = (tmp_path / "assets" / "agent" / "vmlinuz").read_bytes()
    status, body, headers = await get(f"{base}/env/agent/kernel")
    assert status == 200 and body == kernel and int(headers["Content-Length"]) == len(kernel)
    status, body, _ = await get(f"{base}/env/agent/kernel", {"Range": "bytes=10-19"})
    assert status == 206 and body == kernel[10:20]
    async with aiohttp.ClientSession() as s, s.head(f"{base}/env/agent/initrd") as r:
        assert (
            r.status == 200
            and int(r.headers["Content-Length"])
            == (tmp_path / "assets" / "agent" / "initrd.img").stat().st_size
        )
    assert (await get(f"{base}/env/agent/nothing"))[0] == 404
    assert (await get(f"{base}/env/..%2F..%2Fetc/kernel"))[0] == 404


async def test_a_bound_server_gets_talos_then_boots_from_disk(boot, tmp_path: Path) -> None:
    base, plane, _ = boot
    kube = plane.kube
    assert kube is not None
    await register(kube, UUID, accepted=True, clean=True)
    await bind(kube, UUID)

    async def default_ready() -> bool:
        status, _, _ = await get(f"{base}/ipxe?uuid={UUID.upper()}&mac=52-54-00-12-34-56")
        return status == 200

    await eventually(default_ready)
    status, body, _ = await get(f"{base}/ipxe?uuid={UUID}&mac=52-54-00-12-34-56")
    token = re.search(rf"talos\.config={base}/configdata\?uuid=&token=(\S+)", body.decode())
    assert token is not None, body
    server = await kube.get(SERVERS, UUID)
    booted = next(c for c in server["status"]["conditions"] if c["type"] == "PXEBooted")
    assert booted["reason"] == "Target" and "environment default" in booted["message"]
    credential = server["status"]["bootCredential"]
    assert credential["purpose"] == "config" and credential["client"] == "127.0.0.1"
    assert credential["mac"] == "52:54:00:12:34:56"
    assert credential["sha256"] == hashlib.sha256(token.group(1).encode()).hexdigest()
    assert token.group(1) not in json.dumps(server), "only the hash is kept"
    await kube.patch(
        SERVER_BINDINGS,
        UUID,
        {
            "status": {
                "conditions": [
                    {
                        "type": "Installed",
                        "status": "True",
                        "lastTransitionTime": "2026-01-01T00:00:00Z",
                        "reason": "Installed",
                        "message": "",
                    }
                ]
            }
        },
        subresource="status",
    )
    status, body, _ = await get(f"{base}/ipxe?uuid={UUID}")
    assert (status, body) == (200, b"#!ipxe\nexit\n")
    credential = (await kube.get(SERVERS, UUID))["status"]["bootCredential"]
    assert "sha256" not in credential and credential["spent"] == "the server booted again"


async def test_chain_script_and_tftp_over_http(boot) -> None:
    base, _, root = boot
    status, body, _ = await get(f"{base}/boot.ipxe")
    assert status == 200 and body.startswith(b"#!ipxe") and f"{base}/ipxe?uuid=".encode() in body
    status, body, _ = await get(f"{base}/tftp/ipxe.efi")
    assert (
        status == 200
        and hashlib.sha256(body).digest()
        == hashlib.sha256((root / "ipxe.efi").read_bytes()).digest()
    )
    assert (await get(f"{base}/tftp/../etc/passwd"))[0] == 404


async def test_curl_fetches_the_scripts(boot) -> None:
    base, _, _ = boot
    proc = await asyncio.create_subprocess_exec(
        "curl", "-sf", f"{base}/boot.ipxe", stdout=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0 and out.startswith(b"#!ipxe")


@pytest.fixture
async def mirrored(
    plane: ManagementPlane, tmp_path: Path
) -> AsyncIterator[tuple[str, ManagementPlane, list[asyncio.Task[None]]]]:
    """The boot port as ``arges up`` runs it: Environments and ServerClasses read from
    running informers (their tasks given, for a test to stop them)."""
    assert plane.kube is not None
    environments = Informer(plane.kube, ENVIRONMENTS)
    classes = Informer(plane.kube, SERVER_CLASSES)
    tasks = [asyncio.create_task(environments.run()), asyncio.create_task(classes.run())]
    await eventually(lambda: environments.synced and classes.synced, what="the first listings")
    guard = BootGuard(plane.kube)
    decider = KubeBootDecider(plane.kube, guard, environments=environments, server_classes=classes)
    http = BootHttp(
        HttpConfig("127.0.0.1", 0, tftp_root=tmp_path), decider, plane.assets, admission=guard
    )
    await http.start()
    yield f"http://127.0.0.1:{http.port}", plane, tasks
    await http.stop()
    await cancel_and_wait(*tasks)


async def bind_in_class(plane: ManagementPlane, server_class: str) -> None:
    """A clean, accepted Server UUID bound through ``server_class``, whose Environment is
    ``custom``."""
    assert plane.kube is not None
    await plane.kube.create(
        SERVER_CLASSES,
        {"metadata": {"name": server_class}, "spec": {"environmentRef": {"name": "custom"}}},
    )
    await register(plane.kube, UUID, accepted=True, clean=True)
    await plane.kube.create(
        SERVER_BINDINGS,
        {
            "metadata": {"name": UUID},
            "spec": {
                "serverRef": {"name": UUID},
                "serverClassRef": {"name": server_class},
                "consumerRef": {"apiVersion": "v1", "kind": "X", "name": "x"},
            },
        },
    )


def api_reads_of(sent: list[tuple[str, str]], plural: str) -> list[tuple[str, str]]:
    return [(method, path) for method, path in sent if f"/{plural}" in path]


async def test_the_boot_port_reads_classes_and_environments_from_its_mirrors(
    mirrored, tmp_path: Path
) -> None:
    base, plane, _ = mirrored
    await agent_environment(plane, tmp_path, "custom")
    await bind_in_class(plane, "tiny")
    ipxe = f"{base}/ipxe?uuid={UUID}&mac=52-54-00-12-34-56"
    # Until the watches bring the class, it is read from the API; then from the mirror.
    for _ in range(50):
        with requests_of(plane.kube, "arges.boot.decider") as sent:
            status, body, _ = await get(ipxe)
        assert status == 200 and f"{base}/env/custom/kernel console=ttyS0" in body.decode()
        if not api_reads_of(sent, "serverclasses"):
            break
        await asyncio.sleep(0.1)
    assert not api_reads_of(sent, "serverclasses") and not api_reads_of(sent, "environments")
    assert ("GET", SERVERS.path(None, UUID)) in sent, (
        "the Server itself is read from the API at every boot"
    )


async def test_a_mirror_behind_the_api_never_makes_a_server_wait(mirrored, tmp_path: Path) -> None:
    base, plane, tasks = mirrored
    # The mirrors stop following the API: they hold their first listings only.
    await cancel_and_wait(*tasks)
    await agent_environment(plane, tmp_path, "custom")
    await bind_in_class(plane, "late")
    with requests_of(plane.kube, "arges.boot.decider") as sent:
        status, body, _ = await get(f"{base}/ipxe?uuid={UUID}&mac=52-54-00-12-34-56")
    assert status == 200 and f"{base}/env/custom/kernel console=ttyS0" in body.decode(), body
    assert api_reads_of(sent, "serverclasses/late") and api_reads_of(sent, "environments/custom")
