import asyncio

from arges.controllers.runtime import WorkQueue


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
