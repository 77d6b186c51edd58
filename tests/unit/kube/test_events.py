"""The event recorder counts repeats and combines floods, as client-go's does."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from arges.kube import events
from arges.kube.errors import NotFound, Unavailable
from arges.kube.events import EventRecorder
from arges.kube.resources import Resource

SERVER = {
    "apiVersion": "metal.arges.dev/v1alpha1",
    "kind": "Server",
    "metadata": {"name": "s1", "uid": "u-1"},
}


class Store:
    """Events as an API server would keep them."""

    def __init__(self) -> None:
        self.events: dict[str, dict[str, Any]] = {}
        self.fail: Exception | None = None

    async def create(
        self, res: Resource, obj: dict[str, Any], namespace: str | None = None
    ) -> dict[str, Any]:
        if self.fail is not None:
            raise self.fail
        self.events[obj["metadata"]["name"]] = {**obj, "namespace": namespace}
        return obj

    async def patch(
        self, res: Resource, name: str, patch: Any, namespace: str | None = None
    ) -> dict[str, Any]:
        if name not in self.events:
            raise NotFound(f"events {name} not found")
        self.events[name].update(patch)
        return self.events[name]


@pytest.fixture
def store() -> Store:
    return Store()


async def test_a_repeat_bumps_count_instead_of_creating(store: Store) -> None:
    recorder = EventRecorder(store, "arges")
    for _ in range(3):
        await recorder.record(SERVER, "ConfigDelivered", "machine config delivered to 10.0.0.5")
    await recorder.record(SERVER, "ConfigDelivered", "machine config delivered to 10.0.0.6")
    by_message = {e["message"]: e for e in store.events.values()}
    assert len(store.events) == 2
    assert by_message["machine config delivered to 10.0.0.5"]["count"] == 3
    assert by_message["machine config delivered to 10.0.0.6"]["count"] == 1
    event = by_message["machine config delivered to 10.0.0.5"]
    assert event["involvedObject"] == {
        "apiVersion": "metal.arges.dev/v1alpha1",
        "kind": "Server",
        "name": "s1",
        "uid": "u-1",
    }
    assert event["namespace"] == "default"
    assert event["source"] == {"component": "arges"}


async def test_type_reason_and_object_each_make_a_different_event(store: Store) -> None:
    recorder = EventRecorder(store, "arges")
    other = {**SERVER, "metadata": {"name": "s2", "uid": "u-2"}}
    await recorder.record(SERVER, "PowerFailed", "BMC unreachable", "Warning")
    await recorder.record(SERVER, "PowerFailed", "BMC unreachable", "Normal")
    await recorder.record(SERVER, "BootNotReady", "BMC unreachable", "Warning")
    await recorder.record(other, "PowerFailed", "BMC unreachable", "Warning")
    assert len(store.events) == 4
    assert all(e["count"] == 1 for e in store.events.values())


async def test_an_expired_event_is_recorded_anew(store: Store) -> None:
    recorder = EventRecorder(store, "arges")
    await recorder.record(SERVER, "Wiped", "wiped 1 disk(s)")
    store.events.clear()  # kube-apiserver's event TTL, or a person, removed it
    await recorder.record(SERVER, "Wiped", "wiped 1 disk(s)")
    assert [e["count"] for e in store.events.values()] == [1]


async def test_a_flood_of_similar_messages_is_combined(store: Store) -> None:
    recorder = EventRecorder(store, "arges")
    for i in range(events.AGGREGATE_AFTER + 5):
        await recorder.record(SERVER, "PowerFailed", f"attempt {i}: no answer", "Warning")
    combined = [e for e in store.events.values() if e["message"].startswith(events.COMBINED)]
    assert len(store.events) == events.AGGREGATE_AFTER + 1
    assert len(combined) == 1
    assert combined[0]["count"] == 5
    assert combined[0]["message"] == f"{events.COMBINED}attempt 14: no answer"


async def test_failures_are_logged_never_raised(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    store.fail = Unavailable("POST /api/v1/namespaces/default/events: connection refused")
    await EventRecorder(store, "arges").record(SERVER, "Registered", "discovered")
    assert "could not record event Registered on s1" in caplog.text


async def test_memory_is_bounded(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(events, "CACHE_SIZE", 3)
    recorder = EventRecorder(store, "arges")
    for i in range(5):
        await recorder.record(SERVER, "Registered", f"message {i}")
    await recorder.record(SERVER, "Registered", "message 0")  # forgotten: a new Event
    assert len(store.events) == 6


async def test_long_messages_are_cut(store: Store) -> None:
    await EventRecorder(store, "arges").record(SERVER, "InstallFailed", "x" * 5000)
    (event,) = store.events.values()
    assert len(event["message"]) == events.MAX_MESSAGE


class HeldStore(Store):
    """A store whose creates of Events about ``held`` wait until ``release`` is set."""

    def __init__(self, held: str) -> None:
        super().__init__()
        self.held = held
        self.release = asyncio.Event()

    async def create(
        self, res: Resource, obj: dict[str, Any], namespace: str | None = None
    ) -> dict[str, Any]:
        if obj["involvedObject"]["name"] == self.held:
            await self.release.wait()
        return await super().create(res, obj, namespace)


async def test_an_event_does_not_wait_for_the_round_trip_of_another_objects() -> None:
    store = HeldStore("s1")
    recorder = EventRecorder(store, "arges")
    slow = asyncio.create_task(recorder.record(SERVER, "PowerCycle", "not clean"))
    await asyncio.sleep(0)
    other = {**SERVER, "metadata": {"name": "s2", "uid": "u-2"}}
    await asyncio.wait_for(recorder.record(other, "PowerCycle", "not clean"), 2)
    assert [e["involvedObject"]["name"] for e in store.events.values()] == ["s2"]
    store.release.set()
    await slow
    assert len(store.events) == 2


async def test_repeats_recorded_at_once_are_still_one_event() -> None:
    store = HeldStore("s1")
    recorder = EventRecorder(store, "arges")
    repeats = [
        asyncio.create_task(recorder.record(SERVER, "ConfigDelivered", "to 10.0.0.5"))
        for _ in range(5)
    ]
    await asyncio.sleep(0.01)
    store.release.set()
    await asyncio.gather(*repeats)
    assert [e["count"] for e in store.events.values()] == [5]
