"""The plane-wide pause as one process follows it: a paused plane holds new reconciles and
refuses boots, and the process acknowledges only once the reconcile it had under way is over."""

from __future__ import annotations

import asyncio
import copy
from typing import Any, cast

from arges.controllers.pause import PlaneGate
from arges.kube.client import KubeClient
from arges.kube.errors import NotFound
from arges.kube.resources import Resource


class OnePlane:
    """The ManagementPlane ``arges`` as an API server would keep it (get, create, status)."""

    def __init__(self) -> None:
        self.body: dict[str, Any] | None = None
        self.reports: list[list[dict[str, Any]]] = []
        self.reads = 0

    async def get(self, res: Resource, name: str, namespace: str | None = None) -> dict[str, Any]:
        self.reads += 1
        if self.body is None:
            raise NotFound(f"{name} not found")
        return copy.deepcopy(self.body)

    async def create(self, res: Resource, body: dict[str, Any]) -> dict[str, Any]:
        self.body = {**body, "spec": {}, "metadata": {**body["metadata"], "generation": 1}}
        return copy.deepcopy(self.body)

    async def update_status(self, res: Resource, name: str, change: Any) -> dict[str, Any]:
        assert self.body is not None
        status = change(copy.deepcopy(self.body))
        self.body["status"] = status
        self.reports.append(status["instances"])
        return copy.deepcopy(self.body)

    def acknowledged(self) -> bool:
        return bool(self.reports) and any(i["paused"] for i in self.reports[-1])

    async def rounds(self, count: int) -> None:
        """Until the process has read the object ``count`` more times."""
        until = self.reads + count
        while self.reads < until:
            await asyncio.sleep(0.005)

    def pause(self, paused: bool) -> None:
        assert self.body is not None
        self.body["spec"] = {"paused": paused, "reason": "maintenance"}
        self.body["metadata"]["generation"] += 1


async def test_the_pause_holds_reconciles_and_is_acknowledged_once_idle() -> None:
    api = OnePlane()
    gate = PlaneGate(cast(KubeClient, api), interval=0.01, identity="host/1/abc")
    await gate.load()
    assert api.body is not None and gate.refusal() is None, "created, unpaused"
    stop = asyncio.Event()
    runner = asyncio.create_task(gate.run(stop))

    await gate.enter()  # a reconcile under way
    api.pause(True)
    await api.rounds(2)
    assert gate.paused and gate.refusal() == "Arges is paused (maintenance)"
    waiting = asyncio.create_task(gate.enter())  # the next reconcile is held
    # Several rounds of reading: no acknowledgement while the first reconcile runs.
    await api.rounds(5)
    assert not api.acknowledged()
    assert not waiting.done()

    gate.leave()
    while not api.acknowledged():
        await api.rounds(1)
    (mine,) = api.reports[-1]
    assert (mine["id"], mine["observedGeneration"]) == ("host/1/abc", 2)
    assert not waiting.done()

    api.pause(False)
    await waiting
    gate.leave()
    stop.set()
    await runner
    assert api.reports[-1] == [], "a stopped process removes its entry"
