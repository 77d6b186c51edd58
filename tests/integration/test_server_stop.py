"""Stopping the API server ends promptly, whatever its own controllers are doing."""

from __future__ import annotations

import asyncio
from pathlib import Path

from arges.apiserver.entries import Change
from tests.integration.conftest import WIDGET_CRD, Api, api_session, start_server

CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"


async def test_a_stop_arriving_with_work_for_the_lifecycle_controllers_returns(
    tmp_path: Path,
) -> None:
    """A write wakes the server's lifecycle controllers (here: a CRD to mark Established); a
    stop in that same moment used to lose its cancellation inside ``asyncio.wait_for``
    (Python 3.11, gh-86296), and the stop, like CI's test teardowns, then waited forever."""
    server = await start_server(tmp_path / "data")
    assert server.store is not None and server.lifecycle is not None
    lifecycle = server.lifecycle
    stopping: list[asyncio.Task[None]] = []

    def stop_now(change: Change) -> None:
        # Observers run in store order: the lifecycle's own observer has just woken it.
        if not stopping:
            stopping.append(asyncio.ensure_future(lifecycle.stop()))

    server.store.observe(stop_now)
    token = (tmp_path / "data" / "pki" / "admin.token").read_text().strip()
    async with api_session(tmp_path / "data") as session:
        status, body = await Api(session, server.url, token).post(CRDS, WIDGET_CRD)
        assert status == 201, body
    # A hang check, not a speed target: a stop that works takes milliseconds.
    done, _ = await asyncio.wait(stopping, timeout=10)
    assert done, "the lifecycle controllers did not stop"
    await server.stop()
