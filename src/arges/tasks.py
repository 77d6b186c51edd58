"""Ending asyncio tasks without losing a cancellation.

Python 3.11's ``asyncio.wait_for`` returns normally when the task running it is cancelled in
the same moment the awaited thing completes (gh-86296, fixed in 3.12): the cancellation is
lost and a stopping component keeps running. ``contextlib.suppress(CancelledError)`` around
``await task`` has the same effect on a caller that is itself being cancelled. The project
uses ``asyncio.timeout`` (ruff bans ``asyncio.wait_for`` in ``src``) and the helpers below.
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["cancel_and_wait", "finish"]


async def cancel_and_wait(*tasks: asyncio.Future[Any]) -> None:
    """Cancel ``tasks`` and wait until each has ended.

    Their own ``CancelledError`` is the expected ending and is dropped; any other exception a
    task ended with is raised (after the tasks before it were waited for). A cancellation of
    the caller while it waits propagates, as asyncio's cancellation contract asks
    (https://docs.python.org/3/library/asyncio-task.html#task-cancellation).
    """
    for task in tasks:
        task.cancel()
    for task in tasks:
        try:
            await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise


async def finish(task: asyncio.Future[Any], grace: float) -> None:
    """Wait up to ``grace`` seconds for ``task`` to end by itself, then cancel it and wait.

    Raises what the task ended with, other than its own cancellation (see
    :func:`cancel_and_wait`).
    """
    await asyncio.wait({task}, timeout=grace)
    await cancel_and_wait(task)
