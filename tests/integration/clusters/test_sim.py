"""The simulated server itself: a test's teardown must be able to stop it."""

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import cast

import aiohttp
from aiohttp import web

from arges.kube.client import KubeClient
from arges.power import fake
from arges.power.base import PowerState

from .sim import SimServer

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def test_a_cancel_that_meets_the_halt_of_a_boot_stops_the_server() -> None:
    sim = SimServer(0, "http://127.0.0.1:1", 1, cast(KubeClient, None), tick=0.01)
    boot_cancelled = asyncio.Event()

    async def booting() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            boot_cancelled.set()
            await asyncio.sleep(0.2)  # a boot's own clean-up takes a moment
            raise

    sim._task = asyncio.create_task(booting())
    sim.machine.power = PowerState.ON
    sim._seen = len(sim.machine.actions)
    run = asyncio.create_task(sim.run())
    await asyncio.sleep(0.05)
    sim.machine.power = PowerState.OFF  # run() halts the boot at its next look
    await asyncio.wait_for(boot_cancelled.wait(), 2)
    run.cancel()  # the teardown's cancel arrives while run() waits for that halt
    done, _ = await asyncio.wait({run}, timeout=2)
    fake.MACHINES.pop(f"{sim.bmc_address}:623", None)
    assert run in done and run.cancelled(), "run() went on after it was cancelled"


@contextlib.asynccontextmanager
async def answering(path: str, handler: Handler) -> AsyncIterator[str]:
    """A base URL whose ``path`` (a POST) ``handler`` answers, while the block runs."""
    app = web.Application()
    app.router.add_post(path, handler)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def test_a_request_answered_too_late_is_asked_again() -> None:
    # aiohttp ends a request whose answer does not come within the session's timeout with
    # a bare TimeoutError, not a ClientError: the machine must ask again, as firmware and
    # the agent do, not end its boot there (it would never register).
    asked = 0

    async def slow_once(request: web.Request) -> web.Response:
        nonlocal asked
        asked += 1
        if asked == 1:
            await asyncio.sleep(2)
        return web.json_response({"action": "wait"})

    async with answering("/agent/v1/register", slow_once) as url:
        sim = SimServer(0, url, 1, cast(KubeClient, None))
        sim._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.3))
        try:
            answer = await asyncio.wait_for(sim._post("/agent/v1/register", {}), 10)
        finally:
            await sim.close()
    assert answer == {"action": "wait"}
    assert asked == 2


async def test_a_fleet_machine_waits_out_a_refusals_retry_after() -> None:
    asked: list[float] = []

    async def busy_once(request: web.Request) -> web.Response:
        asked.append(time.monotonic())
        if len(asked) == 1:
            return web.json_response({"error": "busy"}, status=503, headers={"Retry-After": "1"})
        return web.json_response({"action": "wait"})

    waited = {}
    async with answering("/agent/v1/report", busy_once) as url:
        for honours in (True, False):
            asked.clear()
            sim = SimServer(0, url, 1, cast(KubeClient, None), honours_retry_after=honours)
            sim._session = aiohttp.ClientSession()
            try:
                await asyncio.wait_for(sim._post("/agent/v1/report", {}), 10)
            finally:
                await sim.close()
            waited[honours] = asked[1] - asked[0]
    assert waited[True] >= 1.0, "the fleet's machine asked again before its Retry-After"
    assert waited[False] < 1.0, "a test's machine waited out the Retry-After"
