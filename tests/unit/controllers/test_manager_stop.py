"""Stopping the controller runtime never waits without bound on kopf.

kopf's watchers wait, shielded from cancellation, for their per-object workers to drain; a
CI run once saw a plane's stop hang there for over 120 s. kopf cannot be made to do that on
demand, so ``kopf.operator`` is replaced here by one that ignores its stop flag and every
cancellation until the test lets it go.
"""

import asyncio
import contextlib
import logging
import threading
from typing import Any, cast

import pytest

from arges.controllers import runtime
from arges.controllers.runtime import Cache, Controller, Manager
from arges.kube.client import KubeClient
from arges.kube.connection import Connection


class Idle(Controller):
    name = "idle"
    workers = 2

    async def reconcile(self, key: str) -> float | None:
        return None


def test_a_kopf_that_never_stops_does_not_hold_the_process(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    released = threading.Event()

    async def operator(**_: Any) -> None:
        while not released.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(0.02)

    monkeypatch.setattr(runtime.kopf, "operator", operator)
    monkeypatch.setattr(runtime, "KOPF_STOP_SECONDS", 0.2)
    idle = Idle(cast(KubeClient, None), Cache())
    workers: list[asyncio.Task[Any]] = []

    async def plane() -> None:
        manager = Manager(Connection(server="https://127.0.0.1:1"), [idle], idle.cache)
        stop, ready = asyncio.Event(), asyncio.Event()
        run = asyncio.create_task(manager.run(stop, ready))
        await ready.wait()
        workers.extend(t for t in asyncio.all_tasks() if t.get_name().startswith("idle-"))
        stop.set()
        await run

    # As `arges up` runs it: asyncio.run, which also waits for the loop's executor threads.
    process = threading.Thread(target=asyncio.run, args=(plane(),), daemon=True)
    caplog.set_level(logging.WARNING, logger=runtime.__name__)
    try:
        process.start()
        process.join(5)
        assert not process.is_alive(), "the plane's loop never ended"
    finally:
        released.set()
        process.join(5)
    assert len(workers) == 2 and all(t.cancelled() for t in workers)
    messages = [r.getMessage() for r in caplog.records]
    assert "kopf did not stop in 0 s; cancelling its tasks" in messages
    assert "kopf did not stop once its tasks were cancelled; leaving its thread behind" in messages
