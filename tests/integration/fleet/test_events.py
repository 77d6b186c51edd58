"""Events: what ``kubectl get events`` tells a person about a server's life."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from arges.kube.resources import EVENTS, SERVERS
from tests.integration.clusters.conftest import Rack, all_in, create_cluster
from tests.integration.conftest import eventually
from tests.integration.fleet.conftest import http_get

pytestmark = pytest.mark.slow


async def server_events(rack: Rack, name: str) -> list[dict[str, Any]]:
    return [
        e
        for e in await rack.kube.list(EVENTS, "default")
        if e["involvedObject"].get("name") == name
    ]


def reasons(events: list[dict[str, Any]]) -> set[str]:
    return {e["reason"] for e in events}


async def test_a_server_life_is_told_in_events(rack: Rack) -> None:
    sim = await rack.add()
    # Its first boot was as an unknown machine; known now, it boots the agent twice more.
    for _ in range(2):
        status, _ = await sim.ipxe()
        assert status == 200
    expected = {"Registered", "Accepted", "BootingAgent", "WipeStarted", "Wiped", "PoweredOff"}
    events = await eventually(
        lambda: _having(rack, sim.uuid, expected), what="the events of a racked server"
    )
    for event in events:
        assert event["reason"][0].isupper() and " " not in event["reason"]
        assert event["involvedObject"]["kind"] == "Server"
        assert event["message"], event
        # The BMC's password (the rack's Secret holds "secret") is in no message.
        assert "secret" not in event["message"].lower(), event
    booting = [e for e in events if e["reason"] == "BootingAgent"]
    assert len(booting) == 1, "a decision that does not change is announced once"

    await rack.kube.patch(SERVERS, sim.uuid, {"spec": {"cordoned": True}})
    await eventually(lambda: _having(rack, sim.uuid, {"Cordoned"}), what="a Cordoned event")
    await rack.kube.patch(SERVERS, sim.uuid, {"spec": {"cordoned": False}})
    await eventually(lambda: _having(rack, sim.uuid, {"Uncordoned"}), what="an Uncordoned event")


async def test_repeated_config_fetches_are_one_event_with_a_count(rack: Rack) -> None:
    sim = await rack.add()
    # Talos retries its fetch until it has the config on disk; hold it there, and fetch three
    # more times with its boot's credential (spent once it is installed).
    install = asyncio.Event()
    sim.gates["install"] = install
    await create_cluster(rack.kube, workers=0)
    await eventually(lambda: sim.config_url or None, timeout=60, what="the config fetched")
    uuid = sim.uuid
    for _ in range(3):
        status, _ = await http_get(sim.session, sim.config_url)
        assert status == 200
    install.set()
    await eventually(lambda: all_in(rack, "Ready", 1), timeout=60)

    async def delivered() -> list[dict[str, Any]] | None:
        found = [e for e in await server_events(rack, uuid) if e["reason"] == "ConfigDelivered"]
        return found if found and found[0]["count"] >= 4 else None

    (event,) = await eventually(delivered, what="a ConfigDelivered event counted 4 times")
    assert event["count"] == 4, "the machine's own fetch and three more"
    assert event["lastTimestamp"] >= event["firstTimestamp"]
    assert "Installed" in reasons(await server_events(rack, uuid))


async def _having(rack: Rack, name: str, wanted: set[str]) -> list[dict[str, Any]] | None:
    events = await server_events(rack, name)
    return events if wanted <= reasons(events) else None
