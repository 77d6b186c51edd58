"""Ending tasks: the tasks' own cancellation is dropped, the caller's never is."""

from __future__ import annotations

import asyncio

import pytest

from arges.tasks import cancel_and_wait, finish


async def test_cancel_and_wait_ends_every_task() -> None:
    tasks = [asyncio.ensure_future(asyncio.sleep(60)) for _ in range(3)]
    await cancel_and_wait(*tasks)
    assert all(t.cancelled() for t in tasks)


async def test_a_task_that_failed_raises_its_error() -> None:
    async def fail() -> None:
        raise ValueError("boom")

    task = asyncio.ensure_future(fail())
    await asyncio.sleep(0)
    with pytest.raises(ValueError, match="boom"):
        await cancel_and_wait(task)


async def test_the_callers_own_cancellation_propagates() -> None:
    """A task that shields itself from cancellation for a while: the caller waiting on it is
    cancelled meanwhile, and must end cancelled, not return as if nothing happened."""
    release = asyncio.Event()

    async def stubborn() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            await release.wait()
            raise

    child = asyncio.ensure_future(stubborn())
    await asyncio.sleep(0)
    caller = asyncio.ensure_future(cancel_and_wait(child))
    await asyncio.sleep(0)
    caller.cancel()
    release.set()
    await asyncio.wait({caller}, timeout=5)
    assert caller.cancelled()


async def test_finish_lets_a_task_end_by_itself_within_its_grace() -> None:
    task = asyncio.ensure_future(asyncio.sleep(0.01, result="done"))
    await finish(task, 5)
    assert task.result() == "done"


async def test_finish_cancels_a_task_past_its_grace() -> None:
    task = asyncio.ensure_future(asyncio.sleep(60))
    await finish(task, 0.01)
    assert task.cancelled()
