"""The fleet benchmark's measurement of the controllers' work queues (patched in for a run)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from arges.controllers import runtime
from arges.controllers.clusters import owned


class Probe:
    """Measures the controllers' work queues (patched in for the run: measurement only).

    A key enqueued by a watch event waits from that event; its latency ends when the
    reconcile that took it up after the event returns (events during a reconcile are
    measured to the end of the next one).
    """

    def __init__(self) -> None:
        self.latencies: dict[int, list[float]] = {}
        self.peaks: dict[int, int] = {}
        self._pending: dict[tuple[int, str], float] = {}
        self._inflight: dict[tuple[int, str], float] = {}
        self._from_event = False
        self.bundles = 0
        self.bundle_cpu = 0.0
        """Secrets bundles the clusters generated, and the CPU seconds they took."""

    def install(self) -> Callable[[], None]:
        probe = self
        add, get, done = runtime.WorkQueue.add, runtime.WorkQueue.get, runtime.WorkQueue.done
        dispatch = runtime.Manager._dispatch
        generate = owned.generate

        def patched_generate(*args: Any, **kwargs: Any) -> Any:
            # On the thread create_once runs it on: that thread's CPU is the bundle's.
            started = time.thread_time()
            try:
                return generate(*args, **kwargs)
            finally:
                probe.bundle_cpu += time.thread_time() - started
                probe.bundles += 1

        def patched_dispatch(self: runtime.Manager, *args: Any) -> None:
            probe._from_event = True
            try:
                dispatch(self, *args)
            finally:
                probe._from_event = False

        def patched_add(self: runtime.WorkQueue, key: str, delay: float = 0.0) -> None:
            if probe._from_event:
                probe._pending.setdefault((id(self), key), time.perf_counter())
            add(self, key, delay)
            depth = self._ready.qsize()
            if depth > probe.peaks.get(id(self), 0):
                probe.peaks[id(self)] = depth

        async def patched_get(self: runtime.WorkQueue) -> str:
            key = await get(self)
            since = probe._pending.pop((id(self), key), None)
            if since is not None:
                probe._inflight[(id(self), key)] = since
            return key

        def patched_done(self: runtime.WorkQueue, key: str, **kw: Any) -> None:
            since = probe._inflight.pop((id(self), key), None)
            if since is not None:
                probe.latencies.setdefault(id(self), []).append(time.perf_counter() - since)
            done(self, key, **kw)

        runtime.Manager._dispatch = patched_dispatch  # type: ignore[method-assign]
        runtime.WorkQueue.add = patched_add  # type: ignore[method-assign]
        runtime.WorkQueue.get = patched_get  # type: ignore[method-assign]
        runtime.WorkQueue.done = patched_done  # type: ignore[method-assign]
        owned.generate = patched_generate

        def uninstall() -> None:
            runtime.Manager._dispatch = dispatch  # type: ignore[method-assign]
            runtime.WorkQueue.add = add  # type: ignore[method-assign]
            runtime.WorkQueue.get = get  # type: ignore[method-assign]
            runtime.WorkQueue.done = done  # type: ignore[method-assign]
            owned.generate = generate

        return uninstall
