"""The simulated server itself: a test's teardown must be able to stop it."""

import asyncio
from typing import cast

from arges.kube.client import KubeClient
from arges.power import fake
from arges.power.base import PowerState

from .sim import SimServer


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
