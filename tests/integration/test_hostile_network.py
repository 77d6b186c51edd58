"""An attacker on the provisioning network, on loopback: each machine is its own 127.0.0.x.

A legitimate server boots and gets its config, its agent registers and reports; another
client (another address) with the same URL or credential, a guessed UUID or credential, a
credential replayed after the install or after the next boot, a forged registration, a UUID
sweep: each gets 403 (or 429) and nothing else, and nothing is written for it.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import uuid as uuids
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from scapy.layers.dhcp import BOOTP, DHCP

from arges.agent.image.iso import missing
from arges.boot.services import BootConfig
from arges.kube.client import KubeClient
from arges.kube.resources import EVENTS, SERVERS
from arges.plane import ManagementPlane, PlaneConfig
from arges.wire import REGISTER_PATH, REPORT_PATH
from tests.integration.conftest import (
    Machine,
    Network,
    agent_token,
    config_url,
    env_ready,
    eventually,
    local_environment,
)
from tests.integration.discovery.test_discovery import registration
from tests.integration.metadata.test_configdata import UUID, bound_server

MAC = "52:54:00:12:34:56"
FORBIDDEN = (403, "forbidden\n")


@pytest.fixture
async def machines(network: Network) -> AsyncIterator[dict[str, Machine]]:
    """The legitimate server at .21, an attacker at .99."""
    made = {
        name: Machine(network.base, f"127.0.0.{n}") for name, n in (("legit", 21), ("evil", 99))
    }
    yield made
    for machine in made.values():
        await machine.close()


async def with_nic(kube: KubeClient, name: str = UUID) -> None:
    """Give the server's inventory the NIC it boots from."""
    interfaces = [{"name": "eth0", "mac": MAC, "link": "up"}]
    await kube.patch(
        SERVERS, name, {"status": {"hardware": {"network": {"interfaces": interfaces}}}},
        subresource="status",
    )  # fmt: skip


async def events(kube: KubeClient, reason: str) -> list[str]:
    listed = await kube.list(EVENTS, "default", field_selector=f"involvedObject.name={UUID}")
    return [e["message"] for e in listed if e["reason"] == reason]


def token_of(url: str) -> str:
    return parse_qs(urlsplit(url).query)["token"][0]


async def test_only_the_bound_machine_gets_its_config_and_only_until_it_is_installed(
    network: Network, machines: dict[str, Machine]
) -> None:
    kube, legit, evil = network.kube, machines["legit"], machines["evil"]
    await bound_server(kube)
    await with_nic(kube)
    url = config_url(await legit.boot(UUID, want="talos.config="), UUID)
    guessed = str(uuids.uuid4())

    assert await evil.get(url) == FORBIDDEN, "the same URL from another address"
    assert await evil.get(url.replace(UUID, guessed)) == FORBIDDEN, "a guessed UUID"
    assert await evil.get(f"{network.base}/configdata?uuid={guessed}") == FORBIDDEN
    assert await evil.get(f"{network.base}/configdata?uuid={UUID}") == FORBIDDEN, "no credential"
    odd = f"{network.base}/configdata?uuid=..%2F..%2Fsecrets&token={'A' * 43}"
    assert await evil.get(odd) == FORBIDDEN, "not a UUID: nothing is looked up"
    forged = url.replace(token_of(url), "A" * 43)
    assert await evil.get(forged) == FORBIDDEN, "a guessed credential"
    assert await legit.get(forged) == FORBIDDEN, "a guessed credential from the right address"
    assert (await evil.ipxe(UUID, "52-54-00-66-66-66"))[0] == 403, "a NIC the server lacks"
    refused = await eventually(lambda: events(kube, "ConfigRefused"))
    assert any("refused to 127.0.0.99" in m for m in refused), refused
    assert all(token_of(url) not in m for m in refused), "the credential is in no Event"

    status, config = await legit.get(url)
    assert status == 200 and "machine:" in config, "the machine itself still gets it"
    status, _ = await legit.post(REPORT_PATH, {"uuid": UUID, "phase": "installed"}, token_of(url))
    assert status == 200
    assert await legit.get(url) == FORBIDDEN, "delivered and installed: the credential is spent"
    assert await evil.get(url) == FORBIDDEN
    assert await legit.ipxe(UUID, MAC.replace(":", "-")) == (200, "#!ipxe\nexit\n")
    server = await kube.get(SERVERS, UUID)
    assert token_of(url) not in str(server), "only the credential's hash is stored"


async def test_agent_reports_need_the_current_boots_credential_from_its_machine(
    network: Network, machines: dict[str, Machine]
) -> None:
    kube, legit, evil = network.kube, machines["legit"], machines["evil"]
    token = agent_token(await legit.boot(UUID, MAC.replace(":", "-"), want="arges.token="))
    status, answer = await legit.post(REGISTER_PATH, registration(), token)
    assert status == 200, answer
    await kube.patch(SERVERS, UUID, {"spec": {"accepted": True}})
    wiped = {"uuid": UUID, "phase": "wiped", "wiped": [{"name": "vda", "bytesZeroed": 1}]}

    for who, credential in ((evil, ""), (evil, "A" * 43), (evil, token), (legit, "A" * 43)):
        assert (await who.post(REPORT_PATH, wiped, credential))[0] == 403
    assert (await evil.post(REGISTER_PATH, registration(), token))[0] == 403
    server = await kube.get(SERVERS, UUID)
    assert not server["status"].get("isClean"), "no forged wipe made it clean"

    other = str(uuids.uuid4())
    stranger = registration(uuid=other)
    stranger["hardware"]["system"]["uuid"] = other
    assert (await evil.post(REGISTER_PATH, stranger))[0] == 403, "no /ipxe, no registration"
    signed_for_another = agent_token(await evil.boot(str(uuids.uuid4()), want="arges.token="))
    assert (await evil.post(REGISTER_PATH, stranger, signed_for_another))[0] == 403
    assert [s["metadata"]["name"] for s in await kube.list(SERVERS)] == [UUID]

    status, answer = await legit.post(REPORT_PATH, wiped, token)
    assert status == 200 and (await kube.get(SERVERS, UUID))["status"]["isClean"] is True

    changed = registration()
    changed["hardware"]["network"]["interfaces"][1]["mac"] = "52:54:00:99:99:99"
    status, answer = await legit.post(REGISTER_PATH, changed, token)
    assert status == 409 and "instead of" in answer["error"]
    identity = next(
        c
        for c in (await kube.get(SERVERS, UUID))["status"]["conditions"]
        if c["type"] == "Identity"
    )
    assert (identity["status"], identity["reason"]) == ("False", "Changed")
    assert "52:54:00:99:99:99" in identity["message"]

    await legit.boot(UUID, MAC.replace(":", "-"), want="arges.token=")
    assert (await legit.post(REPORT_PATH, {"uuid": UUID, "phase": "idle"}, token))[0] == 403, (
        "replayed after the next boot"
    )
    refused = await events(kube, "AgentRefused")
    assert any("127.0.0.99" in m for m in refused) and all(token not in m for m in refused)


async def test_a_uuid_sweep_is_throttled_and_logged_once(
    network: Network, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    await bound_server(network.kube)
    sweeper = Machine(network.base, "127.0.0.77")
    statuses: Counter[int] = Counter()
    try:
        with caplog.at_level(logging.INFO):
            started = time.monotonic()
            for _ in range(600):
                guess = f"{network.base}/configdata?uuid={uuids.uuid4()}&token={'A' * 43}"
                statuses[(await sweeper.get(guess))[0]] += 1
            took = time.monotonic() - started
    finally:
        await sweeper.close()
    assert set(statuses) <= {403, 429} and statuses[403] >= 1, statuses
    lines = [r.getMessage() for r in caplog.records if "127.0.0.77" in r.getMessage()]
    assert len(lines) == 1, lines
    registry = network.plane.metrics.registry
    for answer in ("403", "429"):
        counted = registry.get_sample_value(
            "arges_boot_refusals_total", {"endpoint": "/configdata", "answer": answer}
        )
        assert counted == statuses[int(answer)], f"{answer}s counted"
    with capsys.disabled():
        print(
            f"\n  [sweep] 600 guesses from one address in {took:.2f} s: {statuses[403]} x 403 "
            f"({statuses[403] / took:.0f}/s), {statuses[429]} x 429; {len(lines)} log line"
        )


# Arges' own DHCP vets who may ask /ipxe for a UUID, and follows Talos to a new address.


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def proxy_network(tmp_path: Path) -> AsyncIterator[tuple[Network, int]]:
    """A plane running ProxyDHCP on an unprivileged port of every address."""
    port = free_udp_port()
    plane = ManagementPlane(
        PlaneConfig(
            data_dir=tmp_path / "data",
            api_port=0,
            default_environment=local_environment(tmp_path / "talos", []),
            agent_environment=local_environment(tmp_path / "agent-image", []),
            boot=BootConfig(
                address="127.0.0.1",
                http_port=0,
                tftp_port=0,
                dhcp_mode="proxy",
                dhcp_port=port,
                proxydhcp_port=free_udp_port(),
            ),
        )
    )
    await plane.start()
    assert plane.kube is not None and plane.boot is not None
    for name in ("default", "agent"):
        await eventually(lambda n=name: env_ready(plane.kube, n), what=f"{name} ready")
    yield Network(plane, plane.kube, plane.boot.http.base_url), port
    await plane.stop()


def dhcp_request(mac: str, address: str, guid: str | None = None) -> bytes:
    """A broadcast DHCPREQUEST of ``mac`` asking the site's server for ``address``."""
    options: list[Any] = [("message-type", "request"), ("requested_addr", address)]
    if guid is not None:
        options.append(("pxe_client_machine_identifier", b"\x00" + uuids.UUID(guid).bytes_le))
    packet = BOOTP(op=1, chaddr=bytes.fromhex(mac.replace(":", "")), xid=7) / DHCP(
        options=[*options, "end"]
    )
    return bytes(packet)


async def dhcp(port: int, payload: bytes) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(payload, ("127.0.0.1", port))
    await asyncio.sleep(0.2)


async def test_dhcp_vets_ipxe_requesters_and_follows_talos_to_its_new_address(
    proxy_network: tuple[Network, int],
) -> None:
    network, port = proxy_network
    kube = network.kube
    legit, evil = Machine(network.base, "127.0.0.21"), Machine(network.base, "127.0.0.99")
    talos, stray = Machine(network.base, "127.0.0.23"), Machine(network.base, "127.0.0.24")
    try:
        await bound_server(kube)
        await with_nic(kube)
        hexhyp = MAC.replace(":", "-")
        assert (await legit.ipxe(UUID, hexhyp))[0] == 403, "DHCP has not seen this NIC"
        await dhcp(port, dhcp_request(MAC, "127.0.0.21", UUID))
        url = config_url(await legit.boot(UUID, hexhyp, want="talos.config="), UUID)
        record = (await kube.get(SERVERS, UUID))["status"]["bootCredential"]
        assert record["dhcp"] == {"mac": MAC, "uuid": UUID, "address": "127.0.0.21"}
        assert record["client"] == "127.0.0.21" and record["mac"] == MAC

        assert (await evil.ipxe(UUID, hexhyp))[0] == 403, "DHCP saw that NIC elsewhere"
        await dhcp(port, dhcp_request("52:54:00:66:66:66", "127.0.0.99", UUID))
        assert (await evil.ipxe(UUID, "52-54-00-66-66-66"))[0] == 403, "not the server's NIC"
        assert (await legit.get(url))[0] == 200, "the legitimate boot's credential still works"

        assert await stray.get(url) == FORBIDDEN
        await dhcp(port, dhcp_request(MAC, "127.0.0.23"))
        status, config = await talos.get(url)
        assert status == 200 and "machine:" in config, "Talos leased another address"
        record = (await kube.get(SERVERS, UUID))["status"]["bootCredential"]
        assert record["addresses"] == ["127.0.0.21", "127.0.0.23"], "kept across restarts"
        assert await stray.get(url) == FORBIDDEN
    finally:
        for machine in (legit, evil, talos, stray):
            await machine.close()


@pytest.mark.skipif(bool(missing()), reason="; ".join(missing()))
async def test_an_agent_booted_from_virtual_media_answers_only_from_its_static_address(
    network: Network, machines: dict[str, Machine]
) -> None:
    kube, legit, evil = network.kube, machines["legit"], machines["evil"]
    media = network.plane.media
    assert media is not None
    agent_network = {"address": "127.0.0.21/8", "mac": MAC}
    await kube.create(
        SERVERS, {"metadata": {"name": UUID}, "spec": {"agentNetwork": agent_network}}
    )
    url = await media.url(UUID)  # what the power controller hands the BMC
    iso = url.split("?", 1)[0]
    assert await evil.get(iso) == FORBIDDEN, "the ISO holds a credential: not without it"
    assert await evil.get(f"{iso}?token={'A' * 43}") == FORBIDDEN, "nor with a guessed one"
    refused = await eventually(lambda: events(kube, "MediaRefused"))
    assert any("refused to 127.0.0.99" in m for m in refused), refused
    assert await evil.get(iso.replace(UUID, str(uuids.uuid4())) + "?token=" + "A" * 43) == (
        FORBIDDEN
    )
    token = token_of(url)
    assert (await evil.post(REGISTER_PATH, registration(), token))[0] == 403, "not its address"
    status, answer = await legit.post(REGISTER_PATH, registration(), token)
    assert status == 200, answer
    assert token not in str(await kube.get(SERVERS, UUID)), "only the credential's hash is stored"

    again = await media.url(UUID)  # the next insertion is the next boot
    assert (await legit.post(REPORT_PATH, {"uuid": UUID, "phase": "idle"}, token))[0] == 403
    assert (await legit.post(REPORT_PATH, {"uuid": UUID, "phase": "idle"}, token_of(again)))[0] == (
        200
    )
