"""Leader election on a Lease of the embedded API server, candidate by candidate."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from arges.apiserver.server import ApiServer
from arges.kube.client import KubeClient
from arges.kube.connection import from_kubeconfig
from arges.kube.leaderelection import ElectionConfig, LeaderElector
from arges.kube.resources import LEASES
from tests.integration.conftest import eventually, start_server

CONFIG = ElectionConfig(
    namespace="default", name="test", lease_duration=2.0, renew_deadline=1.5, retry_period=0.2
)


@pytest.fixture
async def kube(tmp_path: Path) -> AsyncIterator[KubeClient]:
    server: ApiServer = await start_server(tmp_path / "api")
    async with KubeClient(from_kubeconfig(server.kubeconfig_path)) as client:
        yield client
    await server.stop()


async def lease(kube: KubeClient) -> dict:
    return (await kube.get(LEASES, "test", "default"))["spec"]


async def test_the_first_candidate_leads_and_renews_as_client_go_records_it(
    kube: KubeClient,
) -> None:
    a, b = LeaderElector(kube, CONFIG, "a"), LeaderElector(kube, CONFIG, "b")
    await asyncio.wait_for(a.acquire(), 5)
    first = await lease(kube)
    assert first["holderIdentity"] == "a"
    assert (first["leaseDurationSeconds"], first["leaseTransitions"]) == (2, 0)
    assert first["acquireTime"] == first["renewTime"]
    holding = asyncio.create_task(a.hold())
    try:
        assert not await b.try_acquire_or_renew()
        await eventually(lambda: _renewed(kube, first["renewTime"]), timeout=3, what="a renewal")
        renewed = await lease(kube)
        assert renewed["acquireTime"] == first["acquireTime"]
        assert (renewed["holderIdentity"], renewed["leaseTransitions"]) == ("a", 0)
        await asyncio.sleep(CONFIG.lease_duration + 0.5)
        assert not await b.try_acquire_or_renew(), "a lease being renewed never expires"
        assert not holding.done()
    finally:
        holding.cancel()


async def _renewed(kube: KubeClient, before: str) -> bool:
    return bool((await lease(kube))["renewTime"] > before)


async def test_a_dead_leaders_lease_is_taken_once_it_expires(kube: KubeClient) -> None:
    a, b = LeaderElector(kube, CONFIG, "a"), LeaderElector(kube, CONFIG, "b")
    await a.acquire()
    started = time.monotonic()
    await asyncio.wait_for(b.acquire(), 10)
    waited = time.monotonic() - started
    assert CONFIG.lease_duration <= waited <= CONFIG.lease_duration + 1.5
    taken = await lease(kube)
    assert (taken["holderIdentity"], taken["leaseTransitions"]) == ("b", 1)
    assert b.is_leader


async def test_a_leader_that_is_overtaken_stops_holding(kube: KubeClient) -> None:
    a, b = LeaderElector(kube, CONFIG, "a"), LeaderElector(kube, CONFIG, "b")
    await a.acquire()
    spec = await lease(kube)
    body = await kube.get(LEASES, "test", "default")
    body["spec"] = {**spec, "holderIdentity": "b", "leaseTransitions": 1}
    await kube.replace(LEASES, body)
    await asyncio.wait_for(a.hold(), 5)
    assert a.leader == "b" and not a.is_leader
    assert not await b.try_acquire_or_renew() or b.is_leader


async def test_a_leader_that_cannot_renew_stops_within_the_renew_deadline(
    kube: KubeClient,
) -> None:
    a = LeaderElector(kube, CONFIG, "a")
    await a.acquire()
    a.kube = KubeClient(dataclasses.replace(kube.connection, server="https://127.0.0.1:1"))
    started = time.monotonic()
    await asyncio.wait_for(a.hold(), 5)
    assert time.monotonic() - started <= CONFIG.renew_deadline + CONFIG.retry_period + 0.5
    await a.kube.close()


async def test_a_released_lease_is_taken_at_once(kube: KubeClient) -> None:
    a, b = LeaderElector(kube, CONFIG, "a"), LeaderElector(kube, CONFIG, "b")
    await a.acquire()
    assert not await b.try_acquire_or_renew()
    await a.release()
    released = await lease(kube)
    assert released.get("holderIdentity") in (None, "")
    assert released["leaseDurationSeconds"] == 1
    started = time.monotonic()
    await asyncio.wait_for(b.acquire(), 5)
    assert time.monotonic() - started < 1.5
    assert (await lease(kube))["leaseTransitions"] == 1


def test_durations_must_nest() -> None:
    with pytest.raises(ValueError, match="retry_period < renew_deadline < lease_duration"):
        ElectionConfig(namespace="x", lease_duration=5, renew_deadline=5)
