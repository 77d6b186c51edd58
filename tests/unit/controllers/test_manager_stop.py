"""Stopping the controller runtime never waits on the API: a stop while the first listing
hangs (an API server that accepts connections and never answers) ends at once, with nothing
of the runtime left running."""

import asyncio
import socket
from typing import Any, cast

from arges.controllers.runtime import Cache, Controller, Manager, Watch
from arges.kube.client import KubeClient
from arges.kube.connection import Connection
from arges.kube.resources import Resource

SERVERS = Resource("metal.arges.dev", "v1alpha1", "servers", "Server", namespaced=False)


class Idle(Controller):
    name = "idle"
    workers = 2

    def watches(self) -> list[Watch]:
        return [Watch(SERVERS, lambda _e, body: [(self.name, body["metadata"]["name"])])]

    async def reconcile(self, key: str) -> float | None:
        return None


async def test_a_stop_while_the_api_never_answers_ends_at_once() -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    port = silent.getsockname()[1]
    idle = Idle(cast(KubeClient, None), Cache())
    manager = Manager(Connection(server=f"http://127.0.0.1:{port}"), [idle], idle.cache)
    stop, ready = asyncio.Event(), asyncio.Event()
    before = set(asyncio.all_tasks())
    run = asyncio.create_task(manager.run(stop, ready))
    try:
        await asyncio.sleep(0.3)
        watching = [t for t in asyncio.all_tasks() - before if t.get_name() == "watch-servers"]
        assert len(watching) == 1, "the watch of Servers is asking"
        assert not ready.is_set(), "no worker before the first listing"
        loop = asyncio.get_running_loop()
        started = loop.time()
        stop.set()
        await asyncio.wait_for(run, 2)
        assert loop.time() - started < 1
        left: list[asyncio.Task[Any]] = [t for t in asyncio.all_tasks() - before if not t.done()]
        assert left == [], f"still running after the stop: {left}"
        assert watching[0].cancelled()
    finally:
        silent.close()
