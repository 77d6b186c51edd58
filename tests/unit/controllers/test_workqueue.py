import asyncio
from collections.abc import Callable
from typing import cast

from arges.controllers.runtime import Cache, Controller, Manager, Watch, WorkQueue
from arges.kube.client import KubeClient
from arges.kube.connection import Connection
from arges.kube.resources import Resource

SERVERS = Resource("metal.arges.dev", "v1alpha1", "servers", "Server", namespaced=False)


def one_watch(
    route: Callable[[str | None, dict], list[str]], *, delay: float = 0.0
) -> tuple[Controller, Manager, Watch]:
    """A controller with one watch, of Servers, that queues the keys ``route`` names; its
    manager (no API: events are handed to it directly); and that watch."""

    class Routed(Controller):
        name = "routed"

        def watches(self) -> list[Watch]:
            def keys(event: str | None, body: dict) -> list[tuple[str, str]]:
                return [(self.name, key) for key in route(event, body)]

            return [Watch(SERVERS, keys, delay=delay)]

    controller = Routed(cast(KubeClient, None), Cache())
    manager = Manager(cast(Connection, None), [controller], controller.cache)
    (watch,) = controller.watches()
    return controller, manager, watch


async def test_one_key_at_a_time_and_changes_during_work_run_again() -> None:
    q = WorkQueue()
    q.add("a")
    q.add("a")
    assert await q.get() == "a"
    q.add("a")
    assert q._ready.empty(), "a key being worked on is not handed out twice"
    q.done("a", failed=False, requeue_after=None)
    assert await asyncio.wait_for(q.get(), 1) == "a"


async def test_failures_back_off_exponentially_and_events_do_not_shortcut_them() -> None:
    q = WorkQueue(base_delay=0.1, max_delay=0.4)
    loop = asyncio.get_running_loop()
    q.add("k")
    key = await q.get()
    delays = []
    for _ in range(4):
        started = loop.time()
        q.done(key, failed=True, requeue_after=None)
        q.add(key)
        key = await asyncio.wait_for(q.get(), 2)
        delays.append(round(loop.time() - started, 1))
    assert delays == [0.1, 0.2, 0.4, 0.4]
    assert q.failures("k") == 4
    q.close()


async def test_success_resets_the_backoff_and_honours_requeue_after() -> None:
    q = WorkQueue(base_delay=0.1)
    q.add("k")
    key = await q.get()
    q.done(key, failed=True, requeue_after=None)
    key = await asyncio.wait_for(q.get(), 1)
    q.done(key, failed=False, requeue_after=0.05)
    assert q.failures("k") == 0
    assert await asyncio.wait_for(q.get(), 1) == "k"
    q.close()


async def test_a_delayed_watch_folds_a_burst_into_one_reconcile() -> None:
    summary, manager, watch = one_watch(lambda _e, _b: ["all"], delay=0.2)
    loop = asyncio.get_running_loop()
    started = loop.time()
    for i in range(100):
        manager._dispatch(SERVERS, [watch], "ADDED", {"metadata": {"name": f"s{i}"}})
    assert summary.queue.depth() == 0, "nothing before the delay"
    assert await asyncio.wait_for(summary.queue.get(), 1) == "all"
    assert loop.time() - started >= 0.19
    assert summary.queue.depth() == 0, "the burst is one reconcile"
    assert len(summary.cache.names(SERVERS)) == 100, "the cache saw every event at once"
    summary.queue.close()
