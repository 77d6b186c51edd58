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


async def test_events_from_kopfs_thread_arrive_in_order_with_one_wake_per_batch() -> None:
    seen: list[tuple[str | None, str]] = []

    def route(event: str | None, body: dict) -> list[str]:
        seen.append((event, body["metadata"]["resourceVersion"]))
        return [body["metadata"]["name"]]

    recorder, manager, watch = one_watch(route)
    loop = asyncio.get_running_loop()
    wakes = 0
    call_soon_threadsafe = loop.call_soon_threadsafe

    def counted(*args: object) -> object:
        nonlocal wakes
        wakes += 1
        return call_soon_threadsafe(*args)  # type: ignore[arg-type]

    loop.call_soon_threadsafe = counted  # type: ignore[method-assign]
    try:
        # As kopf's thread hands them over, while the main loop is busy elsewhere.
        def kopf_thread() -> None:
            for i in range(200):
                body = {"metadata": {"name": f"s{i % 7}", "resourceVersion": str(i)}}
                manager._forward(loop, SERVERS, [watch], "MODIFIED", body)

        await asyncio.to_thread(kopf_thread)
        await asyncio.sleep(0)
    finally:
        del loop.call_soon_threadsafe
    assert seen == [("MODIFIED", str(i)) for i in range(200)]
    assert wakes < 10, f"{wakes} wakes of the main loop for one burst"
    assert recorder.cache.get(SERVERS, "s3")["metadata"]["resourceVersion"] == "199"
    assert recorder.queue.depth() == 7
    recorder.queue.close()


async def test_an_event_that_fails_to_route_loses_nothing_else_of_its_batch() -> None:
    def route(event: str | None, body: dict) -> list[str]:
        if body["metadata"]["name"] == "bad":
            raise KeyError("a route's bug")
        return [body["metadata"]["name"]]

    picky, manager, watch = one_watch(route)
    loop = asyncio.get_running_loop()

    def kopf_thread() -> None:
        for name in ("a", "bad", "b"):
            manager._forward(loop, SERVERS, [watch], "ADDED", {"metadata": {"name": name}})

    await asyncio.to_thread(kopf_thread)
    await asyncio.sleep(0)
    got = [await asyncio.wait_for(picky.queue.get(), 2) for _ in range(2)]
    assert sorted(got) == ["a", "b"]
    picky.queue.close()
