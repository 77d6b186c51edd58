"""The power controller with the fake driver, against a live plane."""

from __future__ import annotations

import asyncio
import base64
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from arges.api.crds import all_crds
from arges.controllers.power import BMC_CREDENTIALS_LABEL, PowerController
from arges.controllers.runtime import Cache
from arges.kube.client import KubeClient
from arges.kube.connection import from_kubeconfig
from arges.kube.resources import SECRETS, SERVER_BINDINGS, SERVER_CLASSES, SERVERS
from arges.plane import ManagementPlane, PlaneConfig
from arges.power import fake
from arges.power.base import BootDevice, PowerState
from arges.power.errors import BmcUnreachable
from tests.integration.conftest import bind, eventually, register, requests_of, start_server
from tests.integration.proxy import HoldingProxy

INSTALLED_TRUE = {
    "type": "Installed",
    "status": "True",
    "reason": "Installed",
    "message": "installed",
    "lastTransitionTime": "2026-12-04T10:00:00Z",
}

UUID = "8b2c7a12-5f3e-4d61-9a0b-1c2d3e4f5a6b"


async def start(tmp_path: Path) -> ManagementPlane:
    plane = ManagementPlane(
        PlaneConfig(data_dir=tmp_path / "data", api_port=0, power_refresh=0.2, reboot_timeout=600)
    )
    await plane.start()
    return plane


@pytest.fixture
async def plane(tmp_path: Path) -> AsyncIterator[ManagementPlane]:
    fake.MACHINES.clear()
    p = await start(tmp_path)
    yield p
    await p.stop()


async def with_bmc(
    kube: KubeClient, *, accepted: bool, clean: bool, password: str = "secret"
) -> fake.FakeMachine:
    await kube.create(
        SECRETS,
        {
            "metadata": {"name": "bmc-creds"},
            "stringData": {"username": "admin", "password": password},
        },
        "default",
    )
    await register(kube, UUID, accepted=accepted, clean=clean)
    machine = fake.MACHINES.setdefault("bmc.lab:623", fake.FakeMachine())
    await kube.patch(
        SERVERS,
        UUID,
        {
            "spec": {
                "bmc": {
                    "address": "bmc.lab",
                    "protocol": "fake",
                    "credentialsSecretRef": {"name": "bmc-creds", "namespace": "default"},
                }
            }
        },
    )
    return machine


async def bmc_answers(kube: KubeClient) -> bool:
    """Whether the PowerManagement condition records an answer of the BMC."""
    found = await condition(kube, "PowerManagement")
    return found is not None and found["reason"] == "BMCAnswers"


async def condition(kube: KubeClient, kind: str) -> dict | None:
    status = (await kube.get(SERVERS, UUID)).get("status") or {}
    return next((c for c in status.get("conditions") or [] if c["type"] == kind), None)


async def test_dirty_servers_are_cycled_into_the_agent_once(plane: ManagementPlane) -> None:
    kube = plane.kube
    assert kube is not None
    machine = await with_bmc(kube, accepted=True, clean=False)
    await kube.patch(SERVERS, UUID, {"status": {"lastSeen": None}}, subresource="status")
    await eventually(lambda: machine.power == PowerState.ON)
    assert machine.actions[:2] == ["bootdev network", "on"]
    cycle = await eventually(lambda: condition(kube, "PowerCycle"))
    assert cycle["reason"] == "Requested"

    async def on() -> bool:
        return (await kube.get(SERVERS, UUID))["status"].get("power") == "on"

    await eventually(on)
    before = list(machine.actions)
    await asyncio.sleep(1.0)
    assert machine.actions == before, "no second cycle while the agent gets to work"
    await kube.patch(SERVERS, UUID, {"status": {"isClean": True}}, subresource="status")
    await eventually(lambda: machine.power == PowerState.OFF)


async def test_allocated_servers_boot_from_the_network_then_stay_on(plane: ManagementPlane) -> None:
    kube = plane.kube
    assert kube is not None
    machine = await with_bmc(kube, accepted=True, clean=True)

    await eventually(lambda: bmc_answers(kube))
    assert machine.actions == [], "clean and already off: nothing sent, no boot device set"
    await bind(kube, UUID)
    await eventually(lambda: machine.power == PowerState.ON)
    assert machine.boot_device == BootDevice.NETWORK and "bootdev network" in machine.actions


async def test_writes_that_change_no_power_decision_do_not_ask_the_bmc(tmp_path: Path) -> None:
    fake.MACHINES.clear()
    # A refresh far beyond the test: every BMC reading here is one a write asked for.
    plane = ManagementPlane(
        PlaneConfig(data_dir=tmp_path / "data", api_port=0, power_refresh=300, reboot_timeout=600)
    )
    await plane.start()
    try:
        kube = plane.kube
        assert kube is not None and plane._manager is not None
        machine = fake.MACHINES.setdefault("bmc.lab:623", fake.FakeMachine())
        machine.power = PowerState.ON
        await with_bmc(kube, accepted=True, clean=True)
        await eventually(lambda: machine.power == PowerState.OFF)

        async def recorded() -> bool:
            server = await kube.get(SERVERS, UUID)
            return server["status"].get("power") == "off"

        await eventually(recorded)
        reads = machine.reads
        # The agent's heartbeats, an inventory label: nothing the power decision turns on.
        for second in range(5):
            written = await kube.patch(
                SERVERS,
                UUID,
                {"status": {"lastSeen": f"2026-12-04T10:00:0{second}Z"}},
                subresource="status",
            )
        written = await kube.patch(SERVERS, UUID, {"metadata": {"labels": {"rack": "r7"}}})
        cache = plane._manager.cache
        power = plane._manager.controllers["power"]

        def settled() -> bool:
            seen = cache.get(SERVERS, UUID) or {"metadata": {}}
            return (
                seen["metadata"].get("resourceVersion") == written["metadata"]["resourceVersion"]
                and power.queue.depth() == 0
            )

        await eventually(settled)
        await asyncio.sleep(0.5)
        assert machine.reads == reads, "the BMC was read again for writes that changed nothing"
        assert machine.actions == ["off"]
        # A write that changes the decision is carried out at once: dirty, it is cycled into
        # the agent (powered on, as it is off).
        await kube.patch(SERVERS, UUID, {"status": {"isClean": False}}, subresource="status")
        await eventually(lambda: machine.power == PowerState.ON)
        assert machine.actions == ["off", "bootdev network", "on"]
        assert machine.reads > reads
    finally:
        await plane.stop()


async def test_unaccepted_servers_are_left_alone(plane: ManagementPlane) -> None:
    kube = plane.kube
    assert kube is not None
    machine = await with_bmc(kube, accepted=False, clean=False)
    machine.power = PowerState.ON

    async def answered() -> dict | None:
        c = await condition(kube, "PowerManagement")
        return c if c and c["reason"] == "BMCAnswers" else None

    pm = await eventually(answered)
    assert pm["status"] == "True" and "not accepted" in pm["message"]
    assert machine.actions == []


async def test_a_failing_bmc_is_reported_then_recovers(plane: ManagementPlane) -> None:
    kube = plane.kube
    assert kube is not None
    fake.MACHINES["bmc.lab:623"] = fake.FakeMachine(
        faults=fake.Faults(fail=3, error=BmcUnreachable)
    )
    await with_bmc(kube, accepted=True, clean=True)

    async def failed() -> bool:
        c = await condition(kube, "PowerManagement")
        return bool(
            c
            and c["status"] == "False"
            and c["reason"] == "BmcUnreachable"
            and "injected failure" in c["message"]
        )

    await eventually(failed)
    assert (await kube.get(SERVERS, UUID))["status"]["power"] == "unknown"

    async def recovered() -> bool:
        c = await condition(kube, "PowerManagement")
        return bool(c and c["status"] == "True")

    await eventually(recovered, timeout=15)
    assert fake.MACHINES["bmc.lab:623"].faults.fail == 0


async def test_a_server_never_given_a_bmc_gets_no_power_condition(
    plane: ManagementPlane,
) -> None:
    kube = plane.kube
    assert kube is not None
    with requests_of(kube, "arges.controllers.power") as sent:
        await register(kube, UUID, accepted=True, clean=True)

        async def in_use_recorded() -> bool:
            return (await kube.get(SERVERS, UUID))["status"].get("inUse") is False

        await eventually(in_use_recorded, what="the servers controller has seen the server")
        await asyncio.sleep(1.0)  # five of the power controller's refresh periods
        status = (await kube.get(SERVERS, UUID))["status"]
        assert "power" not in status and await condition(kube, "PowerManagement") is None
        assert sent == [], "nothing to record, so nothing written (no race with registration)"
    # Given a BMC later, the server is read and recorded as any other.
    await kube.create(
        SECRETS,
        {
            "metadata": {"name": "bmc-creds"},
            "stringData": {"username": "admin", "password": "secret"},
        },
        "default",
    )
    fake.MACHINES["bmc.lab:623"] = fake.FakeMachine()
    ref = {"name": "bmc-creds", "namespace": "default"}
    bmc = {"address": "bmc.lab", "protocol": "fake", "credentialsSecretRef": ref}
    await kube.patch(SERVERS, UUID, {"spec": {"bmc": bmc}})
    await eventually(lambda: bmc_answers(kube))


async def test_bad_credentials_and_missing_bmcs_are_conditions(plane: ManagementPlane) -> None:
    kube = plane.kube
    assert kube is not None
    await with_bmc(kube, accepted=True, clean=True)
    await kube.patch(SECRETS, "bmc-creds", {"data": {"password": None}}, "default")

    async def invalid() -> bool:
        c = await condition(kube, "PowerManagement")
        return bool(c and c["reason"] == "InvalidBMC" and "username and password" in c["message"])

    await eventually(invalid)
    await kube.patch(SERVERS, UUID, {"spec": {"bmc": None}})

    async def no_bmc() -> bool:
        c = await condition(kube, "PowerManagement")
        return bool(c and c["reason"] == "NoBMC")

    await eventually(no_bmc)


async def test_the_bmc_secret_is_read_once_then_followed_through_its_watch(
    plane: ManagementPlane,
) -> None:
    kube = plane.kube
    assert kube is not None
    await with_bmc(kube, accepted=True, clean=True)
    await eventually(lambda: bmc_answers(kube))

    async def labelled() -> bool:
        meta = (await kube.get(SECRETS, "bmc-creds", "default"))["metadata"]
        return (meta.get("labels") or {}).get(BMC_CREDENTIALS_LABEL) == "true"

    await eventually(labelled, what="the Secret labelled for the watch")

    async def invalid() -> bool:
        c = await condition(kube, "PowerManagement")
        return bool(c and c["reason"] == "InvalidBMC" and "username and password" in c["message"])

    with requests_of(kube, "arges.controllers.power") as sent:
        await kube.patch(SECRETS, "bmc-creds", {"data": {"password": None}}, "default")
        await eventually(invalid, what="the broken Secret noticed")
        again = base64.b64encode(b"secret").decode()
        await kube.patch(SECRETS, "bmc-creds", {"data": {"password": again}}, "default")
        await eventually(lambda: bmc_answers(kube), what="the mended Secret noticed")
    reads = [r for r in sent if r == ("GET", SECRETS.path("default", "bmc-creds"))]
    assert reads == [], "the Secret came from the watch"
    assert any(method == "PATCH" and "/servers/" in path for method, path in sent)


async def test_restarts_in_the_middle_of_a_cycle_converge(tmp_path: Path) -> None:
    fake.MACHINES.clear()
    plane = await start(tmp_path)
    kube = plane.kube
    assert kube is not None
    machine = await with_bmc(kube, accepted=True, clean=False)
    await eventually(lambda: condition(kube, "PowerCycle"))
    await plane.stop()
    for _ in range(2):
        plane = await start(tmp_path)
        assert plane.kube is not None
        await asyncio.sleep(1.0)
        await plane.stop()
    assert machine.actions.count("on") + machine.actions.count("cycle") == 1, machine.actions
    plane = await start(tmp_path)
    assert plane.kube is not None
    await plane.kube.patch(SERVERS, UUID, {"status": {"isClean": True}}, subresource="status")
    await eventually(lambda: machine.power == PowerState.OFF)
    await plane.stop()


async def test_an_insecure_redfish_bmc_says_so_in_its_conditions(plane: ManagementPlane) -> None:
    kube = plane.kube
    assert kube is not None
    await with_bmc(kube, accepted=False, clean=True)
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        endpoint = f"https://127.0.0.1:{closed.getsockname()[1]}"
    bmc = {"protocol": "redfish", "endpoint": endpoint, "insecure": True}
    await kube.patch(SERVERS, UUID, {"spec": {"bmc": bmc}})

    async def unreachable() -> dict | None:
        c = await condition(kube, "PowerManagement")
        return c if c and c["reason"] == "BmcUnreachable" else None

    assert endpoint in (await eventually(unreachable))["message"]
    tls = await condition(kube, "BMCCertificateVerified")
    assert tls is not None and (tls["status"], tls["reason"]) == ("False", "Insecure")

    await kube.patch(SERVERS, UUID, {"spec": {"bmc": {"insecure": False}}})

    async def verified() -> dict | None:
        c = await condition(kube, "BMCCertificateVerified")
        return c if c and c["status"] == "True" else None

    assert (await eventually(verified))["reason"] == "HostCAs"


async def test_a_server_class_can_make_virtual_media_its_members_boot_method(
    plane: ManagementPlane,
) -> None:
    kube = plane.kube
    assert kube is not None
    machine = await with_bmc(kube, accepted=True, clean=False)
    await kube.patch(SERVERS, UUID, {"status": {"lastSeen": None}}, subresource="status")
    await eventually(lambda: machine.power == PowerState.ON)
    assert machine.actions[:2] == ["bootdev network", "on"], "network boot by default"
    machine.power = PowerState.OFF
    await kube.patch(SERVERS, UUID, {"metadata": {"labels": {"rack": "r7"}}})
    await kube.create(
        SERVER_CLASSES,
        {
            "metadata": {"name": "rack-7"},
            "spec": {"selector": {"matchLabels": {"rack": "r7"}}, "bootMethod": "virtualMedia"},
        },
    )

    async def member() -> bool:
        status = (await kube.get(SERVER_CLASSES, "rack-7")).get("status") or {}
        return UUID in [
            *(status.get("serversAvailable") or []),
            *(status.get("serversInUse") or []),
        ]

    # The class's bootMethod applies once its status lists the server (the ServerClass
    # controller folds a burst of changes into one pass, a second later).
    await eventually(member)
    await kube.patch(
        SERVERS,
        UUID,
        {"status": {"conditions": [], "lastSeen": None}},
        subresource="status",
    )

    async def needs_media() -> dict | None:
        c = await condition(kube, "PowerManagement")
        return c if c and c["reason"] == "Unsupported" else None

    refused = await eventually(needs_media, timeout=15)
    assert "virtual media needs Arges' boot HTTP service" in refused["message"]
    assert machine.power == PowerState.OFF and "bootdev cd" not in machine.actions


async def test_a_restarted_plane_acts_only_once_it_has_listed_the_bindings(
    tmp_path: Path,
) -> None:
    # Regression: workers started before the watches' first listing was in the cache; the
    # power controller saw a bound, installed server without its binding, took it for an
    # unbound one to wipe, and power-cycled it. Here the bindings' listing comes late.
    fake.MACHINES.clear()
    api = await start_server(tmp_path / "api", crds=all_crds())
    proxy = HoldingProxy(api)
    await proxy.start()
    token = (tmp_path / "api" / "pki" / "admin.token").read_text().strip()
    connection = from_kubeconfig(proxy.kubeconfig(tmp_path / "proxy.kubeconfig", token))
    try:
        async with KubeClient(from_kubeconfig(api.kubeconfig_path)) as kube:
            machine = await with_bmc(kube, accepted=True, clean=True)
            machine.power = PowerState.ON
            await bind(kube, UUID)
            await kube.patch(
                SERVER_BINDINGS,
                UUID,
                {"status": {"conditions": [INSTALLED_TRUE]}},
                subresource="status",
            )
            # As a bound, installed server is after it was provisioned: in use, not clean.
            await kube.patch(
                SERVERS, UUID, {"status": {"inUse": True, "isClean": False}}, subresource="status"
            )
            proxy.delay = lambda method, path: (
                1.5 if method == "GET" and "/serverbindings" in path and "watch" not in path else 0
            )
            plane = ManagementPlane(
                PlaneConfig(
                    data_dir=tmp_path / "data",
                    external_api=connection,
                    power_refresh=0.2,
                    reboot_timeout=600,
                )
            )
            await plane.start()
            try:
                await eventually(lambda: bmc_answers(kube), timeout=30)
                await asyncio.sleep(0.5)
                assert machine.actions == [], "a bound, installed server was left alone"
                assert machine.power == PowerState.ON
            finally:
                await plane.stop()
    finally:
        await proxy.stop()
        await api.stop()


async def test_a_reconcile_writes_on_its_own_last_write_while_the_cache_lags(
    tmp_path: Path,
) -> None:
    # A cycle is recorded, then the BMC's answer: the second write was made on the watch
    # cache's copy, which lacks the first, so it was refused (409), read again and resent.
    # Here the cache never catches up, the worst lag a watch can have.
    fake.MACHINES.clear()
    api = await start_server(tmp_path / "api", crds=all_crds())
    try:
        async with KubeClient(from_kubeconfig(api.kubeconfig_path)) as kube:
            machine = await with_bmc(kube, accepted=True, clean=False)
            cache = Cache()
            for res in (SERVERS, SECRETS):
                for obj in await kube.list(res, "default" if res is SECRETS else None):
                    cache.apply(res, "ADDED", obj)
            power = PowerController(kube, cache, reboot_timeout=600)
            with requests_of(kube) as sent:
                await power.reconcile(UUID)

            assert machine.actions == ["bootdev network", "on"]
            writes = [m for m, p in sent if p.endswith(f"/servers/{UUID}/status")]
            reads = [m for m, p in sent if m == "GET" and p.endswith(f"/servers/{UUID}")]
            assert (writes, reads) == (["PATCH", "PATCH"], []), sent
            status = (await kube.get(SERVERS, UUID))["status"]
            kinds = {c["type"]: c["reason"] for c in status["conditions"]}
            assert kinds["PowerCycle"] == "Requested" and kinds["PowerManagement"] == "BMCAnswers"
            assert status["power"] == "on"
    finally:
        await api.stop()
