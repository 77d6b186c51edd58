"""The discovery endpoint against a real plane: Servers created, refreshed, wiped, installed.

The agent asks ``/ipxe`` first and uses the credential of its kernel arguments, as on a real
machine; who else is refused is in ``tests/integration/metadata/test_hostile``."""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp import web

from arges.access.guard import BootGuard
from arges.discovery.api import DiscoveryApi, DiscoveryConfig
from arges.kube.client import KubeClient
from arges.kube.resources import EVENTS, SERVER_BINDINGS, SERVERS
from arges.wire import REGISTER_PATH, REPORT_PATH
from tests.integration.conftest import (
    Machine,
    Network,
    agent_token,
    bind,
    config_url,
    eventually,
    requests_of,
)

UUID = "8b2c7a12-5f3e-4d61-9a0b-1c2d3e4f5a6b"
HW: dict[str, Any] = {
    "system": {
        "uuid": UUID.upper(),
        "manufacturer": "QEMU",
        "productName": "Standard PC",
        "serialNumber": "LAB-0001",
    },
    "compute": {
        "processorCount": 1,
        "totalCoreCount": 2,
        "totalThreadCount": 2,
        "processors": [
            {
                "manufacturer": "QEMU",
                "productName": "qemu64",
                "speed": 2000,
                "coreCount": 2,
                "threadCount": 2,
            }
        ],
    },
    "memory": {
        "totalSize": 2 * 2**30,
        "moduleCount": 1,
        "modules": [{"size": 2 * 2**30, "type": "RAM"}],
    },
    "storage": {
        "totalSize": 3 * 2**30,
        "deviceCount": 2,
        "devices": [
            {"name": "vda", "type": "virtio", "size": 2**30},
            {"name": "vdb", "type": "virtio", "size": 2 * 2**30},
        ],
    },
    "network": {
        "interfaceCount": 2,
        "interfaces": [
            {
                "index": 2,
                "name": "eth0",
                "mac": "52:54:00:12:34:56",
                "link": "up",
                "addresses": ["10.0.2.15/24"],
            },
            {"index": 3, "name": "eth1", "mac": "52:54:00:12:34:57", "link": "down"},
        ],
    },
}


@dataclass
class Agent:
    """The agent of one boot: its machine and the credential its kernel arguments carry."""

    machine: Machine
    kube: KubeClient
    token: str = ""

    async def boot(self, uuid: str = UUID) -> None:
        self.token = agent_token(await self.machine.boot(uuid, want="arges.token="))

    async def post(self, path: str, body: Any) -> tuple[int, Any]:
        return await self.machine.post(path, body, self.token)


pytestmark = pytest.mark.parametrize(
    "network", [False, True], indirect=True, ids=["manual-accept", "auto-accept"]
)


@pytest.fixture
async def endpoint(network: Network) -> AsyncIterator[Agent]:
    agent = Agent(Machine(network.base, "127.0.0.31"), network.kube)
    await agent.boot()
    yield agent
    await agent.machine.close()


def registration(**changes: Any) -> dict[str, Any]:
    body = {
        "uuid": UUID.upper(),
        "hardware": copy.deepcopy(HW),
        "hostname": "lab-1",
        "addresses": ["10.0.2.15/24"],
        "bootMac": "52:54:00:12:34:56",
    }
    body.update(changes)
    return body


async def test_register_creates_then_refreshes_the_server(endpoint) -> None:
    kube = endpoint.kube
    status, answer = await endpoint.post(REGISTER_PATH, registration())
    assert status == 200, answer
    server = await kube.get(SERVERS, UUID)
    auto = server["spec"]["accepted"]
    assert answer["action"] == ("wipe" if auto else "wait")
    hw = server["status"]["hardware"]
    assert hw["system"]["uuid"] == UUID, "stored lowercase, as the Server's name"
    assert [d["size"] for d in hw["storage"]["devices"]] == [2**30, 2 * 2**30]
    assert [i["mac"] for i in hw["network"]["interfaces"]] == [
        "52:54:00:12:34:56",
        "52:54:00:12:34:57",
    ]
    assert server["status"]["addresses"] == [{"type": "InternalIP", "address": "10.0.2.15"}]
    assert server["status"]["lastSeen"]
    changed = registration()
    changed["hardware"]["storage"]["devices"].append(
        {"name": "vdc", "type": "virtio", "size": 4096}
    )
    status, _ = await endpoint.post(REGISTER_PATH, changed)
    assert status == 200
    server = await kube.get(SERVERS, UUID)
    assert len(server["status"]["hardware"]["storage"]["devices"]) == 3, "re-registration refreshes"
    reasons = [
        e["reason"]
        for e in await kube.list(EVENTS, "default", field_selector=f"involvedObject.name={UUID}")
    ]
    assert "Registered" in reasons and "InventoryChanged" in reasons


async def test_a_new_server_is_registered_protected_and_unallocated(endpoint) -> None:
    # The Server controller's finalizer and allocation state come with the registration, so
    # the controller has nothing to write for a new server (each write is one that every
    # watch of Servers gets), even when the registration's status write comes a second after
    # its create (under load): the controller leaves a Server without status to it a while.
    kube = endpoint.kube
    path = f"/apis/metal.arges.dev/v1alpha1/servers/{UUID}"
    answered = kube.request

    async def late_registration(method: str, path: str, body: Any = None, **kw: Any) -> Any:
        if method == "PATCH" and "hardware" in ((body or {}).get("status") or {}):
            await asyncio.sleep(1.0)
        return await answered(method, path, body, **kw)

    kube.request = late_registration  # type: ignore[method-assign]
    registered: list[Any] = []
    try:
        with (
            requests_of(kube, "arges.discovery.api", registered) as sent,
            requests_of(kube, "arges.controllers.servers") as controller,
        ):
            status, _ = await endpoint.post(REGISTER_PATH, registration())
            assert status == 200
            server = await kube.get(SERVERS, UUID)
            assert server["metadata"]["finalizers"] == ["metal.arges.dev/server-protection"]
            unbound = list(controller)
            await bind(kube, UUID)

            async def in_use() -> bool:
                return bool((await kube.get(SERVERS, UUID))["status"]["inUse"])

            await eventually(in_use, what="the bound server in use")
    finally:
        del kube.request
    [recorded] = [b["status"] for (m, p), b in zip(sent, registered, strict=True) if m == "PATCH"]
    assert (recorded["inUse"], recorded["isClean"]) == (False, False)
    assert ("PATCH", path) not in controller, "the finalizer came with the Server"
    assert ("PATCH", f"{path}/status") not in unbound, "the allocation state came with it too"
    assert ("PATCH", f"{path}/status") in controller, "the binding is the controller's to record"


async def test_reports_that_change_nothing_write_last_seen_once_a_minute(endpoint) -> None:
    # As kubelet's unchanged NodeStatus: an idle agent's reports are not each a write that
    # every watch of the Server receives.
    kube = endpoint.kube
    await endpoint.post(REGISTER_PATH, registration())
    seen = (await kube.get(SERVERS, UUID))["status"]["lastSeen"]
    with requests_of(kube, "arges.discovery.api") as sent:
        for _ in range(3):
            status, _ = await endpoint.post(REPORT_PATH, {"uuid": UUID, "phase": "idle"})
            assert status == 200
    assert [m for m, p in sent if m != "GET"] == [], "nothing new: nothing written"
    assert (await kube.get(SERVERS, UUID))["status"]["lastSeen"] == seen
    old = "2026-01-01T00:00:00"  # a date-time the API takes without a zone: UTC
    await kube.patch(SERVERS, UUID, {"status": {"lastSeen": old}}, subresource="status")
    status, _ = await endpoint.post(REPORT_PATH, {"uuid": UUID, "phase": "idle"})
    assert status == 200
    assert (await kube.get(SERVERS, UUID))["status"]["lastSeen"] > old, "a minute old: written"
    recent = f"{dt.datetime.now(dt.UTC) - dt.timedelta(seconds=30):%Y-%m-%dT%H:%M:%SZ}"
    await kube.patch(SERVERS, UUID, {"status": {"lastSeen": recent}}, subresource="status")
    await kube.patch(SERVERS, UUID, {"spec": {"accepted": True}})
    await endpoint.post(REPORT_PATH, {"uuid": UUID, "phase": "wiping"})
    now = (await kube.get(SERVERS, UUID))["status"]
    wipe = next(c for c in now["conditions"] if c["type"] == "Wipe")
    assert wipe["reason"] == "InProgress" and now["lastSeen"] > recent, "written with a change"


async def test_an_unaccepted_servers_report_does_not_read_its_binding(endpoint) -> None:
    # Until it is accepted its agent only waits: a binding would change nothing.
    kube = endpoint.kube
    await endpoint.post(REGISTER_PATH, registration())
    await kube.patch(SERVERS, UUID, {"spec": {"accepted": False}})
    await bind(kube, UUID)
    with requests_of(kube, "arges.discovery.api") as sent:
        status, answer = await endpoint.post(REPORT_PATH, {"uuid": UUID, "phase": "idle"})
    assert (status, answer["action"]) == (200, "wait")
    reads = [p for m, p in sent if m == "GET"]
    assert reads == [f"/apis/metal.arges.dev/v1alpha1/servers/{UUID}"]
    await kube.patch(SERVERS, UUID, {"spec": {"accepted": True}})
    with requests_of(kube, "arges.discovery.api") as sent:
        status, answer = await endpoint.post(REPORT_PATH, {"uuid": UUID, "phase": "idle"})
    assert (status, answer["action"]) == (200, "reboot"), "accepted and bound"
    assert [p.rsplit("/", 2)[-2] for m, p in sent if m == "GET"] == ["servers", "serverbindings"]


async def test_a_wipe_heartbeat_does_not_read_the_binding_its_outcome_does(endpoint) -> None:
    # An agent reports "wiping" every 10 s of a wipe that may take hours, and carries on
    # whatever it is told: the binding is read for the outcome's report, not for each beat.
    kube = endpoint.kube
    await endpoint.post(REGISTER_PATH, registration())
    await kube.patch(SERVERS, UUID, {"spec": {"accepted": True}})
    await bind(kube, UUID)

    async def in_use() -> bool:  # the Server controller's write, which a report could meet
        return bool((await kube.get(SERVERS, UUID))["status"]["inUse"])

    await eventually(in_use, what="the bound server in use")
    with requests_of(kube, "arges.discovery.api") as sent:
        status, answer = await endpoint.post(REPORT_PATH, {"uuid": UUID, "phase": "wiping"})
    assert (status, answer["action"]) == (200, "wipe"), "carry on"
    assert [p for m, p in sent if m == "GET"] == [f"/apis/metal.arges.dev/v1alpha1/servers/{UUID}"]
    wiped = {
        "uuid": UUID,
        "phase": "wiped",
        "wiped": [{"name": "vda", "size": 1, "bytesZeroed": 1}],
    }
    with requests_of(kube, "arges.discovery.api") as sent:
        status, answer = await endpoint.post(REPORT_PATH, wiped)
    assert (status, answer["action"]) == (200, "reboot"), "bound: its target is next"
    assert [p.rsplit("/", 2)[-2] for m, p in sent if m == "GET"] == ["servers", "serverbindings"]
    assert (await kube.get(SERVERS, UUID))["status"]["isClean"] is False, "bound: not clean"


async def test_wipe_report_makes_an_accepted_server_clean(endpoint) -> None:
    kube = endpoint.kube
    await endpoint.post(REGISTER_PATH, registration())
    await kube.patch(SERVERS, UUID, {"spec": {"accepted": True}})
    status, answer = await endpoint.post(REPORT_PATH, {"uuid": UUID, "phase": "wiping"})
    assert status == 200 and answer["action"] == "wipe"
    status, answer = await endpoint.post(
        REPORT_PATH,
        {
            "uuid": UUID,
            "phase": "wiped",
            "wiped": [{"name": "vda", "size": 2**30, "bytesZeroed": 2 * 2**20}],
        },
    )
    assert status == 200 and answer["action"] == "wait", "clean, no BMC: wait for allocation"
    server = await kube.get(SERVERS, UUID)
    assert server["status"]["isClean"] is True
    wipe = next(c for c in server["status"]["conditions"] if c["type"] == "Wipe")
    assert (wipe["status"], wipe["reason"]) == ("True", "Wiped")
    await kube.patch(SERVERS, UUID, {"spec": {"bmc": {"address": "127.0.0.1"}}})
    _, answer = await endpoint.post(REPORT_PATH, {"uuid": UUID, "phase": "idle"})
    assert answer["action"] == "poweroff"


async def test_install_report_marks_the_binding_and_spends_the_credential(endpoint) -> None:
    kube = endpoint.kube
    await endpoint.post(REGISTER_PATH, registration())
    await kube.patch(SERVERS, UUID, {"spec": {"accepted": True}})
    await bind(kube, UUID)
    status, _ = await endpoint.post(REPORT_PATH, {"uuid": UUID, "phase": "installed"})
    assert status == 403, "the agent's credential is not the target's"
    script = await endpoint.machine.boot(UUID, want="talos.config=")
    token = parse_qs(urlsplit(config_url(script, UUID)).query)["token"][0]
    installed_report = {"uuid": UUID, "phase": "installed"}
    with requests_of(kube, "arges.discovery.api") as sent:
        status, answer = await endpoint.machine.post(REPORT_PATH, installed_report, token)
    assert status == 200 and answer["action"] == "reboot"
    on_binding = [m for m, p in sent if f"/serverbindings/{UUID}" in p]
    assert on_binding == ["GET", "PATCH"], "written on the copy the report read"
    binding = await kube.get(SERVER_BINDINGS, UUID)
    installed = binding["status"]["conditions"][0]
    assert (installed["type"], installed["status"]) == ("Installed", "True")
    credential = (await kube.get(SERVERS, UUID))["status"]["bootCredential"]
    assert "sha256" not in credential and credential["spent"] == "the machine config is installed"
    status, _ = await endpoint.machine.post(REPORT_PATH, installed_report, token)
    assert status == 403, "spent"

    async def not_clean() -> bool:
        return (await kube.get(SERVERS, UUID))["status"].get("isClean") is False

    await eventually(not_clean)


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (registration(uuid="not-a-uuid"), "not an SMBIOS UUID"),
        (registration(uuid="00000000-0000-0000-0000-000000000000"), "placeholder"),
        (registration(uuid="11111111-2222-3333-4444-555555555555"), "does not match"),
        (
            registration(hardware={"storage": {"devices": [{"size": "big"}]}}),
            "hardware.storage.devices.0.size",
        ),
        (registration(addresses=["not-an-ip"]), "not an IP address"),
        (registration(bootMac="zz"), "not a MAC"),
        (registration(hardware="nope"), "hardware must be an object"),
        (registration(hardware={**HW, "storage": {"devices": [{}] * 300}}), "more than 256"),
        (b"{not json", "not JSON"),
        (b"[1, 2]", "JSON object"),
        # Found by hostile clients (#23): these were 500s or 503s (retried for ever).
        (registration(hostname="lab-\ud800"), "lone surrogate"),
        (json.dumps(registration(extra=2**64)).encode(), "out of range"),
        (json.dumps(registration(extra=[2**63])).encode(), "out of range"),
        (b'{"uuid": NaN}', "not a JSON number"),
        (b"[" * 100_000 + b"]" * 100_000, "not JSON"),
    ],
)
async def test_bad_registrations_are_refused_with_a_reason(endpoint, body, words) -> None:
    status, answer = await endpoint.post(REGISTER_PATH, body)
    assert status == 400 and words in answer["error"], answer
    assert await endpoint.kube.list(SERVERS) == [], "nothing was written"


async def test_oversized_bodies_and_unknown_servers(endpoint) -> None:
    status, answer = await endpoint.post(REGISTER_PATH, b"{" + b" " * 300_000 + b"}")
    assert status == 413
    status, answer = await endpoint.post(REPORT_PATH, {"uuid": UUID, "phase": "idle"})
    assert status == 403, "a server that never registered has no credential to report with"
    status, answer = await endpoint.post(REPORT_PATH, {"uuid": UUID, "phase": "dancing"})
    assert status == 400 and "phase must be one of" in answer["error"]


@pytest.mark.parametrize(
    ("wiped", "words"),
    [
        ([{"bytesZeroed": "x"}], "is not a count of bytes"),
        ([{"bytesZeroed": -1}], "is not a count of bytes"),
        ([{"bytesZeroed": True}], "is not a count of bytes"),
        ("abc", "wiped must be a list"),
        (5, "wiped must be a list"),
        (["disk"], "list of objects"),
    ],
)
async def test_wipe_reports_of_the_wrong_type_are_refused(endpoint, wiped, words) -> None:
    assert (await endpoint.post(REGISTER_PATH, registration()))[0] == 200
    body = {"uuid": UUID, "phase": "wiped", "wiped": wiped}
    status, answer = await endpoint.post(REPORT_PATH, body)
    assert status == 400 and words in answer["error"], answer


def _head(path: str, length: int) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: arges\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


async def test_bodies_in_pieces_are_read_whole_and_a_client_gone_is_no_error(
    network: Network, caplog: pytest.LogCaptureFixture
) -> None:
    # One slot: the first request holds it while its body trickles in; the second waits for
    # it, and its client is gone by the time it gets the slot and reads the body.
    api = DiscoveryApi(network.kube, DiscoveryConfig(concurrency=1), BootGuard(network.kube))
    app = web.Application()
    app.add_routes(api.routes())
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    try:
        body = json.dumps({"uuid": UUID, "phase": "dancing"}).encode()
        holder_in, holder = await asyncio.open_connection("127.0.0.1", port)
        holder.write(_head(REPORT_PATH, len(body)) + body[:5])
        await asyncio.sleep(0.2)
        _, gone = await asyncio.open_connection("127.0.0.1", port)
        gone.write(_head(REPORT_PATH, 1000) + b'{"uuid": ')
        await asyncio.sleep(0.2)
        gone.transport.abort()
        await asyncio.sleep(0.1)
        holder.write(body[5:])
        # The body that came in two pieces was read whole: its phase is what is refused.
        answer = await asyncio.wait_for(holder_in.read(4096), 10)
        assert answer.startswith(b"HTTP/1.1 400") and b"phase must be one of" in answer
        holder.close()
        await asyncio.sleep(0.3)
        assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    finally:
        await runner.cleanup()
