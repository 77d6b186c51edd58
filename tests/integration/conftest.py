"""A real API server per test, and real clients for it: kubectl and an HTTP client."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import shutil
import ssl
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from arges.api.environment import Asset, EnvironmentSpec, Kernel
from arges.apiserver.server import ApiServer, ApiServerConfig
from arges.boot.services import BootConfig
from arges.discovery.api import DiscoveryConfig
from arges.kube.client import KubeClient
from arges.kube.resources import ENVIRONMENTS, SERVER_BINDINGS, SERVERS
from arges.plane import ManagementPlane, PlaneConfig
from tests.integration.webhook_server import WebhookServer, make_pki

KUBECTL = shutil.which("kubectl")
KUBECTL_DIR = Path(os.path.realpath(KUBECTL)).parent if KUBECTL else None
KUBECTL_VERSIONS = ["1.27", "1.28", "1.29", "1.30", "1.31", "1.32", "1.33"]


def kubectl_binary(version: str | None = None) -> str:
    """The kubectl to run (a given minor version, or the default one), or skip the test."""
    if KUBECTL is None or KUBECTL_DIR is None:
        pytest.skip("kubectl is not installed")
    if version is None:
        return KUBECTL
    path = KUBECTL_DIR / f"kubectl.{version}"
    if not path.exists():
        pytest.skip(f"kubectl {version} is not installed at {path}")
    return str(path)


@dataclass
class Result:
    code: int
    out: str
    err: str


class Api:
    """A thin HTTP client for the server's REST API (JSON in, status and JSON out)."""

    def __init__(self, session: aiohttp.ClientSession, base: str, token: str) -> None:
        self.session = session
        self.base = base
        self.headers = {"Authorization": f"Bearer {token}"}

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body))
        hdrs = {**self.headers, **(headers or {})}
        if data is not None:
            hdrs["Content-Type"] = content_type
        async with self.session.request(
            method, self.base + path, data=data, headers=hdrs, params=params
        ) as resp:
            raw = await resp.read()
            try:
                return resp.status, json.loads(raw) if raw else None
            except ValueError:
                return resp.status, raw.decode()

    async def get(self, path: str, **kw: Any) -> tuple[int, Any]:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, body: Any, **kw: Any) -> tuple[int, Any]:
        return await self.request("POST", path, body, **kw)

    async def put(self, path: str, body: Any, **kw: Any) -> tuple[int, Any]:
        return await self.request("PUT", path, body, **kw)

    async def patch(self, path: str, body: Any, kind: str = "merge", **kw: Any) -> tuple[int, Any]:
        ctype = {
            "merge": "application/merge-patch+json",
            "json": "application/json-patch+json",
            "strategic": "application/strategic-merge-patch+json",
        }[kind]
        return await self.request("PATCH", path, body, content_type=ctype, **kw)

    async def delete(self, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
        return await self.request("DELETE", path, body, **kw)

    async def watch(
        self,
        path: str,
        params: dict[str, str],
        *,
        until: Callable[[list[dict]], bool],
        timeout: float = 10.0,
    ) -> list[dict]:
        """Stream a watch until ``until(events)`` holds (or the server ends it)."""
        events: list[dict] = []
        async with asyncio.timeout(timeout):
            async with self.session.get(
                self.base + path, params={"watch": "true", **params}, headers=self.headers
            ) as resp:
                assert resp.status == 200, await resp.text()
                async for line in resp.content:
                    if line.strip():
                        events.append(json.loads(line))
                        if until(events):
                            break
        return events


class Cluster:
    """One running server with its clients."""

    def __init__(self, server: ApiServer, api: Api, tmp: Path) -> None:
        self.server = server
        self.api = api
        self.tmp = tmp

    async def kubectl(
        self,
        *args: str,
        version: str | None = None,
        stdin: str | None = None,
        env: dict[str, str] | None = None,
        check: bool = True,
        timeout: float = 60.0,
    ) -> Result:
        binary = kubectl_binary(version)
        proc = await asyncio.create_subprocess_exec(
            binary,
            "--kubeconfig",
            str(self.server.kubeconfig_path),
            "--cache-dir",
            str(self.tmp / f"kubectl-cache-{version or 'default'}"),
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, **(env or {})},
        )
        out, err = await asyncio.wait_for(
            proc.communicate(stdin.encode() if stdin else None), timeout
        )
        result = Result(proc.returncode or 0, out.decode(), err.decode())
        if check and result.code != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.code}): {result.err}")
        return result

    async def kubectl_background(self, *args: str) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            kubectl_binary(),
            "--kubeconfig",
            str(self.server.kubeconfig_path),
            "--cache-dir",
            str(self.tmp / "kubectl-cache-default"),
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )


async def start_server(data_dir: Path, **config: Any) -> ApiServer:
    server = ApiServer(ApiServerConfig(data_dir=data_dir, port=0, **config))
    await server.start()
    return server


def api_session(data_dir: Path) -> aiohttp.ClientSession:
    tls = ssl.create_default_context(cafile=str(data_dir / "pki" / "ca.crt"))
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=tls))


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    data = tmp_path / "data"
    server = await start_server(data, bookmark_interval=0.5)
    token = (data / "pki" / "admin.token").read_text().strip()
    async with api_session(data) as session:
        yield Cluster(server, Api(session, server.url, token), tmp_path)
    await server.stop()


async def eventually(
    check: Callable[[], Any],
    timeout: float = 10.0,
    interval: float = 0.05,
    what: str = "condition",
) -> Any:
    """Poll an async or sync ``check`` until it returns something truthy (``what`` names it
    in the failure)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what} not met within {timeout}s (last: {value!r})")
        await asyncio.sleep(interval)


WIDGET_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.arges.dev"},
    "spec": {
        "group": "example.arges.dev",
        "names": {
            "plural": "widgets",
            "singular": "widget",
            "kind": "Widget",
            "shortNames": ["wd"],
        },
        "scope": "Namespaced",
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": [
                    {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
                    {"name": "Color", "type": "string", "jsonPath": ".spec.color", "priority": 1},
                    {
                        "name": "Ready",
                        "type": "string",
                        "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
                    },
                    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                ],
                "selectableFields": [{"jsonPath": ".spec.color"}],
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["size"],
                                "properties": {
                                    "size": {
                                        "type": "integer",
                                        "minimum": 1,
                                        "description": "How big the widget is.",
                                    },
                                    "color": {
                                        "type": "string",
                                        "default": "blue",
                                        "enum": ["blue", "red", "green"],
                                    },
                                    "tags": {"type": "array", "items": {"type": "string"}},
                                },
                            },
                            "status": {
                                "type": "object",
                                "properties": {
                                    "observedGeneration": {"type": "integer"},
                                    "conditions": {
                                        "type": "array",
                                        "items": {
                                            "type": "object",
                                            "properties": {
                                                "type": {"type": "string"},
                                                "status": {"type": "string"},
                                            },
                                        },
                                    },
                                },
                            },
                        },
                    }
                },
            }
        ],
    },
}

WIDGETS = "/apis/example.arges.dev/v1/namespaces/default/widgets"


def widget(name: str, size: int = 1, **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "example.arges.dev/v1",
        "kind": "Widget",
        "metadata": {"name": name, **meta},
        "spec": {"size": size},
    }


@pytest.fixture
async def widgets(cluster: Cluster) -> Cluster:
    """A cluster with the Widget CRD installed."""
    status, body = await cluster.api.post(
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", WIDGET_CRD
    )
    assert status == 201, body
    return cluster


# A whole management plane (API server + controllers) per test.


def make_assets(directory: Path) -> tuple[Path, Path]:
    """A kernel and an initrd in ``directory``; an Environment made through the API may name
    them when ``directory`` is under the plane's ``--asset-dir`` (``tmp_path/assets``)."""
    directory.mkdir(parents=True, exist_ok=True)
    kernel, initrd = directory / "vmlinuz", directory / "initrd.img"
    kernel.write_bytes(b"kernel " * 1000)
    initrd.write_bytes(b"initrd " * 5000)
    return kernel, initrd


def sha512(path: Path) -> str:
    return hashlib.sha512(path.read_bytes()).hexdigest()


@pytest.fixture
async def plane(tmp_path: Path) -> AsyncIterator[ManagementPlane]:
    kernel, initrd = make_assets(tmp_path / "talos")
    spec = EnvironmentSpec(
        kernel=Kernel(url=kernel.as_uri(), sha512=sha512(kernel), args=["talos.platform=metal"]),
        initrd=Asset(url=initrd.as_uri(), sha512=sha512(initrd)),
    )
    p = ManagementPlane(
        PlaneConfig(
            data_dir=tmp_path / "data",
            api_port=0,
            default_environment=spec,
            asset_dirs=(tmp_path / "assets",),
        )
    )
    await p.start()
    yield p
    await p.stop()


@pytest.fixture
def kube(plane: ManagementPlane) -> KubeClient:
    assert plane.kube is not None
    return plane.kube


HARDWARE: dict[str, Any] = {
    "system": {"uuid": "", "manufacturer": "QEMU", "productName": "Standard PC"},
    "compute": {
        "processorCount": 1,
        "totalCoreCount": 2,
        "totalThreadCount": 2,
        "processors": [{"manufacturer": "AMD", "coreCount": 2, "threadCount": 2}],
    },
    "memory": {"totalSize": 2 * 2**30},
    "storage": {"deviceCount": 1, "devices": [{"name": "vda", "type": "virtio", "size": 10**10}]},
}


async def register(
    kube: KubeClient, name: str, *, accepted: bool = False, clean: bool = False
) -> dict[str, Any]:
    """What the agent's registration does: create the Server and report its inventory."""
    await kube.create(SERVERS, {"metadata": {"name": name}, "spec": {"accepted": accepted}})
    return await kube.patch(
        SERVERS,
        name,
        {
            "status": {
                "hardware": {**HARDWARE, "system": {**HARDWARE["system"], "uuid": name}},
                "isClean": clean,
                "hostname": f"host-{name[:4]}",
            }
        },
        subresource="status",
    )


async def bind(kube: KubeClient, name: str) -> dict[str, Any]:
    """Bind Server ``name``, as an allocator would (to a consumer no controller knows)."""
    return await kube.create(
        SERVER_BINDINGS,
        {
            "metadata": {"name": name},
            "spec": {
                "serverRef": {"name": name},
                "consumerRef": {"apiVersion": "v1", "kind": "X", "name": "x"},
            },
        },
    )


@contextlib.contextmanager
def requests_of(
    kube: KubeClient, sender: str | None = None, bodies: list[Any] | None = None
) -> Iterator[list[tuple[str, str]]]:
    """Every request ``kube`` sends while the block runs: (method, path without query).

    ``sender``: only those sent by code of that module (a frame of it awaiting the request),
    leaving out the controllers that share ``kube`` and act on the same objects meanwhile.
    ``bodies``, when given, gets each of those requests' bodies, in the same order.
    """
    sent: list[tuple[str, str]] = []
    answered = kube.request
    nested = "request" in vars(kube)

    async def request(method: str, path: str, body: Any = None, **kw: Any) -> Any:
        if sender is None or _sent_by(sender):
            sent.append((method, path.split("?")[0]))
            if bodies is not None:
                bodies.append(body)
        return await answered(method, path, body, **kw)

    kube.request = request  # type: ignore[method-assign]
    try:
        yield sent
    finally:
        if nested:
            kube.request = answered  # type: ignore[method-assign]
        else:
            del kube.request


def _sent_by(module: str) -> bool:
    """Whether a frame of ``module`` is on the stack: a coroutine awaiting another is, so
    this names the code whose request is being sent."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_globals.get("__name__") == module:
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


# A plane with its boot port, and machines that boot from it as real ones do.


@dataclass
class Network:
    """A plane whose boot HTTP port listens on 127.0.0.1 (no DHCP), with ready ``default``
    and ``agent`` Environments."""

    plane: ManagementPlane
    kube: KubeClient
    base: str


class Machine:
    """A machine on the provisioning network, at its own loopback address ``source``: it
    asks ``/ipxe`` and uses what it is given (the credential in its kernel arguments), as
    firmware, the agent and Talos do."""

    def __init__(self, base: str, source: str = "127.0.0.1") -> None:
        self.base = base
        self.source = source
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(source, 0)))

    async def close(self) -> None:
        await self.session.close()

    async def ipxe(self, uuid: str, mac: str = "52-54-00-12-34-56") -> tuple[int, str]:
        async with self.session.get(f"{self.base}/ipxe", params={"uuid": uuid, "mac": mac}) as resp:
            return resp.status, await resp.text()

    async def boot(self, uuid: str, mac: str = "52-54-00-12-34-56", want: str = "") -> str:
        """The iPXE script of a boot (asking again while it is not 200, or lacks ``want``)."""

        async def script() -> str | None:
            status, text = await self.ipxe(uuid, mac)
            return text if status == 200 and want in text else None

        return str(await eventually(script, what=f"/ipxe serving {uuid} {want!r}"))

    async def get(self, url: str) -> tuple[int, str]:
        async with self.session.get(url) as resp:
            return resp.status, await resp.text()

    async def post(self, path: str, body: Any, token: str = "") -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.session.post(
            self.base + path,
            data=body if isinstance(body, bytes) else None,
            json=None if isinstance(body, bytes) else body,
            headers=headers,
        ) as resp:
            return resp.status, await resp.json()


def agent_token(script: str) -> str:
    """The credential in an agent boot's kernel arguments."""
    match = re.search(r"arges\.token=(\S+)", script)
    assert match, script
    return match.group(1)


def config_url(script: str, uuid: str) -> str:
    """The ``talos.config=`` URL of a target boot, its empty ``uuid=`` filled in as Talos
    does."""
    match = re.search(r"talos\.config=(\S+)", script)
    assert match, script
    return match.group(1).replace("uuid=&", f"uuid={uuid}&")


async def env_ready(kube: KubeClient, name: str) -> bool:
    env = await kube.get(ENVIRONMENTS, name)
    conditions = (env.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def local_environment(directory: Path, args: list[str]) -> EnvironmentSpec:
    kernel, initrd = make_assets(directory)
    return EnvironmentSpec(
        kernel=Kernel(url=kernel.as_uri(), sha512=sha512(kernel), args=args),
        initrd=Asset(url=initrd.as_uri(), sha512=sha512(initrd)),
    )


@pytest.fixture
async def network(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Network]:
    """A :class:`Network`; parametrize indirectly with True to auto-accept servers."""
    plane = ManagementPlane(
        PlaneConfig(
            data_dir=tmp_path / "data",
            api_port=0,
            default_environment=local_environment(tmp_path / "talos", ["talos.platform=metal"]),
            agent_environment=local_environment(tmp_path / "agent-image", ["console=ttyS0"]),
            boot=BootConfig(address="127.0.0.1", http_port=0, tftp_port=0, dhcp_mode=None),
            discovery=DiscoveryConfig(auto_accept=getattr(request, "param", False)),
            asset_dirs=(tmp_path / "assets",),
        )
    )
    await plane.start()
    assert plane.kube is not None and plane.boot is not None
    for name in ("default", "agent"):
        await eventually(lambda n=name: env_ready(plane.kube, n), what=f"{name} ready")
    yield Network(plane, plane.kube, plane.boot.http.base_url)
    await plane.stop()


@pytest.fixture
async def webhook(tmp_path: Path) -> AsyncIterator[WebhookServer]:
    """A webhook server on loopback (TLS from a fresh CA) answering conversion and admission
    reviews as the tests configure it."""
    server = WebhookServer(make_pki())
    await server.start(tmp_path)
    yield server
    await server.stop()
