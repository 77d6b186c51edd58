"""The reflector (list, then watch) against the embedded API server, as the controllers and the
dashboard's informers use it: what it hands over, in what order, across a 410 Gone, for a kind
installed later and for one no longer served."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from arges.apiserver.server import ApiServer
from arges.controllers.runtime import Cache, Controller, Manager, Watch, key_of
from arges.kube.client import KubeClient
from arges.kube.connection import Connection, from_kubeconfig
from arges.kube.informer import Informer, Informers
from arges.kube.reflector import Reflector
from arges.kube.resources import Resource
from tests.integration.conftest import WIDGET_CRD, eventually, start_server, widget
from tests.integration.proxy import HoldingProxy

WIDGETS = Resource("example.arges.dev", "v1", "widgets", "Widget", namespaced=True)
CRDS = Resource("apiextensions.k8s.io", "v1", "customresourcedefinitions", "", False)


class Seen:
    """What a reflector hands over: (event type, widget name, its size)."""

    def __init__(self, fail_on: str = "") -> None:
        self.events: list[tuple[str | None, str, int]] = []
        self.fail_on = fail_on

    def __call__(self, kind: str | None, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        if name == self.fail_on:
            raise KeyError("a callback's bug")
        self.events.append((kind, name, obj["spec"]["size"]))


@contextlib.asynccontextmanager
async def reflecting(reflector: Reflector) -> AsyncIterator[Reflector]:
    task = asyncio.create_task(reflector.run())
    try:
        yield reflector
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[ApiServer]:
    # Short history: a watch that was away for a few seconds is too old to resume.
    api = await start_server(tmp_path / "data", history_seconds=0.2, bookmark_interval=0.5)
    yield api
    await api.stop()


@pytest.fixture
async def kube(server: ApiServer) -> AsyncIterator[KubeClient]:
    async with KubeClient(from_kubeconfig(server.kubeconfig_path)) as client:
        yield client


class Away:
    """A proxy in front of the API server: while ``away`` is set, each watch waits 3 s in it
    before it is forwarded, so a reflector behind it misses what happens meanwhile."""

    def __init__(self, proxy: HoldingProxy) -> None:
        self.proxy = proxy
        self.away = False
        proxy.delay = lambda _method, path: 3.0 if self.away and "watch=1" in path else 0.0

    def widget_listings(self) -> int:
        """How many listings (not watches) of widgets went through."""
        return len(
            [
                path
                for method, path in self.proxy.seen
                if method == "GET" and "watch=1" not in path and path.startswith(WIDGETS.path())
            ]
        )


@contextlib.asynccontextmanager
async def behind_proxy(server: ApiServer, tmp_path: Path) -> AsyncIterator[tuple[Away, KubeClient]]:
    """An :class:`Away` proxy and a client that goes through it."""
    proxy = HoldingProxy(server)
    await proxy.start()
    token = (server.config.data_dir / "pki" / "admin.token").read_text().strip()
    connection = from_kubeconfig(proxy.kubeconfig(tmp_path / "proxy.kubeconfig", token))
    try:
        async with KubeClient(connection) as client:
            yield Away(proxy), client
    finally:
        await proxy.stop()


async def install_widgets(kube: KubeClient) -> None:
    await kube.create(CRDS, WIDGET_CRD)
    await eventually(lambda: kube.preferred_version(WIDGETS.group), what="widgets served")


async def test_lists_then_hands_over_every_change_in_order(kube: KubeClient) -> None:
    await install_widgets(kube)
    for name in ("a", "bad", "b"):
        await kube.create(WIDGETS, widget(name), "default")
    seen = Seen(fail_on="bad")
    async with reflecting(Reflector(kube, WIDGETS, seen)) as reflector:
        await asyncio.wait_for(reflector.synced.wait(), 5)
        assert seen.events == [(None, "a", 1), (None, "b", 1)], "the listing, past a failure"
        await kube.create(WIDGETS, widget("c"), "default")
        await kube.patch(WIDGETS, "a", {"spec": {"size": 2}}, "default")
        await kube.delete(WIDGETS, "b", "default")
        await kube.patch(WIDGETS, "a", {"spec": {"size": 3}}, "default")
        await eventually(lambda: len(seen.events) == 6)
    assert seen.events[2:] == [
        ("ADDED", "c", 1),
        ("MODIFIED", "a", 2),
        ("DELETED", "b", 1),
        ("MODIFIED", "a", 3),
    ]


async def test_objects_come_without_managed_fields_and_an_update_of_one_keeps_them(
    kube: KubeClient,
) -> None:
    await install_widgets(kube)
    await kube.create(WIDGETS, widget("a"), "default")
    mirror: dict[str, dict[str, Any]] = {}

    def keep(_kind: str | None, obj: dict[str, Any]) -> None:
        mirror[obj["metadata"]["name"]] = obj

    async with reflecting(Reflector(kube, WIDGETS, keep)) as reflector:
        await asyncio.wait_for(reflector.synced.wait(), 5)
        await kube.create(WIDGETS, widget("b"), "default")
        await eventually(lambda: "b" in mirror)
        assert [("managedFields" in o["metadata"]) for o in mirror.values()] == [False, False]
        # A controller that sends its cached copy back (PUT) does not erase who owns what.
        mirror["a"]["spec"]["size"] = 5
        await kube.replace(WIDGETS, mirror["a"])
    live = await kube.get(WIDGETS, "a", "default")
    assert live["spec"]["size"] == 5
    assert [m["operation"] for m in live["metadata"]["managedFields"]] == ["Update"]
    assert "f:size" in live["metadata"]["managedFields"][0]["fieldsV1"]["f:spec"]


async def test_a_watch_too_old_to_resume_lists_again_and_loses_no_deletion(
    server: ApiServer, kube: KubeClient, tmp_path: Path
) -> None:
    await install_widgets(kube)
    for name in ("a", "b"):
        await kube.create(WIDGETS, widget(name), "default")
    seen = Seen()
    async with (
        behind_proxy(server, tmp_path) as (proxy, through_proxy),
        reflecting(Reflector(through_proxy, WIDGETS, seen, timeout_seconds=1)) as reflector,
    ):
        await asyncio.wait_for(reflector.synced.wait(), 5)
        proxy.away = True
        # The watch in progress ends within a second; its successor waits in the proxy
        # while b goes, c comes, and the history that would have told of it is compacted.
        await asyncio.sleep(1.5)
        await kube.delete(WIDGETS, "b", "default")
        await kube.create(WIDGETS, widget("c"), "default")
        await asyncio.sleep(1.5)
        proxy.away = False
        await eventually(lambda: ("DELETED", "b", 1) in seen.events, timeout=15)
        await eventually(lambda: (None, "c", 1) in seen.events)
    assert proxy.widget_listings() == 2
    assert seen.events[:2] == [(None, "a", 1), (None, "b", 1)]
    assert ("DELETED", "b", 1) in seen.events and (None, "a", 1) in seen.events[2:]


async def test_a_kind_installed_later_is_found_at_its_preferred_version(
    kube: KubeClient,
) -> None:
    seen = Seen()
    unversioned = replace(WIDGETS, version="")
    async with reflecting(Reflector(kube, unversioned, seen, absent_poll=0.1)) as reflector:
        await asyncio.sleep(0.5)
        assert not reflector.synced.is_set(), "nothing to list before the kind exists"
        await install_widgets(kube)
        await kube.create(WIDGETS, widget("a"), "default")
        await eventually(lambda: bool(seen.events), timeout=10)
    assert seen.events[0][1:] == ("a", 1) and seen.events[0][0] in (None, "ADDED")


async def test_watches_cut_short_are_backed_off_not_spun() -> None:
    """An API (a proxy, say) that ends every watch at once with nothing in it: Arges' real
    server never does, so a few lines of aiohttp stand in for one."""
    watches = 0

    async def answer(request: web.Request) -> web.Response:
        nonlocal watches
        if request.query.get("watch") == "1":
            watches += 1
            return web.Response(content_type="application/json")
        return web.json_response({"items": [], "metadata": {"resourceVersion": "7"}})

    app = web.Application()
    app.router.add_get(WIDGETS.path(), answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with (
            KubeClient(Connection(server=f"http://127.0.0.1:{port}")) as kube,
            reflecting(Reflector(kube, WIDGETS, Seen(), max_backoff=1.0)) as reflector,
        ):
            await asyncio.wait_for(reflector.synced.wait(), 5)
            await asyncio.sleep(2.0)
    finally:
        await runner.cleanup()
    # Backed off 0.5 s, then 1 s: a spinning reflector would have asked hundreds of times.
    assert 2 <= watches <= 5, watches


@pytest.mark.parametrize("forget", [True, False], ids=["dashboard", "controllers"])
async def test_a_kind_no_longer_served_hands_its_objects_over_as_deleted_if_asked(
    server: ApiServer, kube: KubeClient, tmp_path: Path, forget: bool
) -> None:
    """The CRD goes while the reflector is away, so no watch tells of its objects' deletion:
    the 404 that follows does, for the dashboard (which would otherwise show them for ever);
    the controllers' reflectors keep them, as client-go's do."""
    await install_widgets(kube)
    for name in ("a", "b"):
        await kube.create(WIDGETS, widget(name), "default")
    seen = Seen()
    async with (
        behind_proxy(server, tmp_path) as (proxy, through_proxy),
        reflecting(
            Reflector(
                through_proxy,
                WIDGETS,
                seen,
                timeout_seconds=1,
                absent_poll=0.2,
                forget_unserved=forget,
            )
        ) as reflector,
    ):
        await asyncio.wait_for(reflector.synced.wait(), 5)
        proxy.away = True
        await asyncio.sleep(1.5)
        await kube.delete(CRDS, WIDGET_CRD["metadata"]["name"])

        async def unserved() -> bool:
            return await kube.preferred_version(WIDGETS.group) is None

        await eventually(unserved, what="widgets no longer served")
        proxy.away = False
        # The first listing, then at least two more answered 404 (the watch's 404 first).
        await eventually(
            lambda: proxy.widget_listings() >= 3, timeout=15, what="listings after the 404"
        )
        if forget:
            await eventually(lambda: len(seen.events) == 4)
    assert seen.events[:2] == [(None, "a", 1), (None, "b", 1)]
    if forget:
        assert sorted(seen.events[2:]) == [("DELETED", "a", 1), ("DELETED", "b", 1)]
    else:
        assert seen.events[2:] == []


async def test_the_dashboards_informer_mirrors_trims_and_empties_with_the_kind(
    kube: KubeClient,
) -> None:
    await install_widgets(kube)
    for name in ("a", "b", "c", "d"):
        await kube.create(WIDGETS, widget(name), "default")
    changes: list[str] = []

    def newest_two(objects: dict[str, Any]) -> list[str]:
        return sorted(objects)[:-2]

    informer = Informer(
        kube, WIDGETS, lambda res: changes.append(res.plural), newest_two, forget_unserved=True
    )
    informer.reflector.absent_poll = 0.1
    task = asyncio.create_task(informer.run())
    try:
        await asyncio.wait_for(informer.reflector.synced.wait(), 5)
        assert sorted(informer.objects) == ["default/c", "default/d"]
        assert informer.objects["default/d"]["kind"] == "Widget", "list items get their kind"
        await kube.create(WIDGETS, widget("e"), "default")
        await kube.delete(WIDGETS, "d", "default")
        # c made way for e; d went: a forgotten object does not come back on its own.
        await eventually(lambda: sorted(informer.objects) == ["default/e"])
        await kube.delete(CRDS, WIDGET_CRD["metadata"]["name"])
        await eventually(lambda: not informer.objects, what="the mirror emptied")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert set(changes) == {"widgets"} and len(changes) >= 8


async def test_a_handler_added_late_gets_what_is_held_then_every_change(
    kube: KubeClient,
) -> None:
    await install_widgets(kube)
    for name in ("a", "bad"):
        await kube.create(WIDGETS, widget(name), "default")
    informer = Informer(kube, WIDGETS)
    task = asyncio.create_task(informer.run())
    try:
        await asyncio.wait_for(informer.reflector.synced.wait(), 5)
        late, failing = Seen(), Seen(fail_on="bad")
        remove = informer.add_handler(late)
        informer.add_handler(failing)
        assert sorted(late.events) == [(None, "a", 1), (None, "bad", 1)]
        await kube.patch(WIDGETS, "bad", {"spec": {"size": 2}}, "default")
        await kube.create(WIDGETS, widget("b"), "default")
        await eventually(lambda: len(late.events) == 4)
        assert late.events[2:] == [("MODIFIED", "bad", 2), ("ADDED", "b", 1)]
        assert failing.events == [(None, "a", 1), ("ADDED", "b", 1)], "past its own failures"
        assert sorted(informer.objects) == ["default/a", "default/b", "default/bad"]
        remove()
        await kube.delete(WIDGETS, "a", "default")
        await eventually(lambda: ("DELETED", "a", 1) in failing.events)
        assert len(late.events) == 4, "a removed handler hears nothing more"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    with pytest.raises(ValueError):
        Informer(kube, WIDGETS, keep=lambda _objs: []).add_handler(late)


class Sizes(Controller):
    """Records each widget's size as it reconciles it."""

    name = "sizes"
    workers = 1

    def __init__(self, kube: KubeClient, cache: Cache) -> None:
        super().__init__(kube, cache)
        self.sizes: dict[str, int] = {}

    def watches(self) -> list[Watch]:
        return [Watch(WIDGETS, lambda _e, body: [(self.name, key_of(body))])]

    async def reconcile(self, key: str) -> float | None:
        body = self.cache.get(WIDGETS, key)
        if body is not None:
            self.sizes[key] = body["spec"]["size"]
        return None


async def test_the_controllers_take_a_shared_informers_changes_instead_of_watching(
    server: ApiServer, kube: KubeClient, tmp_path: Path
) -> None:
    await install_widgets(kube)
    await kube.create(WIDGETS, widget("a"), "default")
    async with behind_proxy(server, tmp_path) as (proxy, through_proxy):
        informers = Informers(through_proxy.connection, [WIDGETS], component="test-shared")
        informers.start()
        controller = Sizes(kube, Cache())
        manager = Manager(through_proxy.connection, [controller], controller.cache, None, informers)
        stop, ready = asyncio.Event(), asyncio.Event()
        run = asyncio.create_task(manager.run(stop, ready))
        try:
            await asyncio.wait_for(ready.wait(), 10)
            await kube.create(WIDGETS, widget("b", size=2), "default")
            await kube.patch(WIDGETS, "a", {"spec": {"size": 3}}, "default")
            await eventually(lambda: controller.sizes == {"default/a": 3, "default/b": 2})
            held = informers.informer(WIDGETS).objects["default/b"]
            assert controller.cache.get(WIDGETS, "default/b") is held, "one copy, not two"
            watches = [p for m, p in proxy.proxy.seen if "watch=1" in p and "widgets" in p]
            assert proxy.widget_listings() == 1 and len(watches) == 1, "the informer's alone"
        finally:
            stop.set()
            await asyncio.wait_for(run, 10)
            await informers.stop()
