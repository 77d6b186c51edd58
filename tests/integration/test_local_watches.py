"""Watches from the API server's own process (``ApiServer.local_watch``): the events a client
in ``arges up`` gets without HTTP are the ones it gets over HTTP, refusals raise alike, and a
watch ends as one over a socket does."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest

from arges.kube.client import MERGE, KubeClient
from arges.kube.connection import Connection, from_kubeconfig
from arges.kube.errors import KubeError
from arges.kube.resources import Resource
from tests.integration.conftest import Cluster, eventually

CONFIG_MAPS = Resource("", "v1", "configmaps", "ConfigMap", namespaced=True)
MISSING = Resource("example.com", "v1", "gizmos", "Gizmo", namespaced=True)


def connections(cluster: Cluster) -> dict[str, Connection]:
    """Over HTTP (the local socket) and locally."""
    over_http = replace(
        from_kubeconfig(cluster.server.kubeconfig_path), unix_socket=cluster.server.socket_path
    )
    return {"over-http": over_http, "locally": replace(over_http, local=cluster.server)}


async def collect(
    kube: KubeClient, resource_version: str, count: int, **options: Any
) -> list[tuple[str, Any]]:
    """The first ``count`` events (bookmarks left out) of a watch of ConfigMaps."""
    events: list[tuple[str, Any]] = []
    watch = kube.watch(CONFIG_MAPS, resource_version, timeout_seconds=30, **options)
    try:
        async with asyncio.timeout(10):
            async for event in watch:
                if event["type"] != "BOOKMARK":
                    events.append((event["type"], event["object"]))
                if len(events) == count:
                    break
    finally:
        await watch.aclose()
    return events


async def test_a_local_watch_gets_the_events_a_watch_over_http_gets(cluster: Cluster) -> None:
    _, listed = await cluster.api.request("GET", "/api/v1/namespaces/default/configmaps")
    start = listed["metadata"]["resourceVersion"]
    cm = "/api/v1/namespaces/default/configmaps"
    writes = [
        ("POST", cm, {"metadata": {"name": "w", "labels": {"app": "a"}}}),
        ("PATCH", f"{cm}/w", {"data": {"k": "v"}}),
        # It leaves the selection: a selected watch sees it DELETED.
        ("PATCH", f"{cm}/w", {"metadata": {"labels": {"app": "b"}}}),
        ("DELETE", f"{cm}/w", None),
    ]
    for method, path, body in writes:
        kind = MERGE if method == "PATCH" else "application/json"
        status, answer = await cluster.api.request(method, path, body, content_type=kind)
        assert status < 300, answer
    seen: dict[str, list[list[tuple[str, Any]]]] = {}
    for name, connection in connections(cluster).items():
        async with KubeClient(connection) as kube:
            seen[name] = [
                await collect(kube, start, 4),
                await collect(kube, start, 3, label_selector="app=a"),
            ]
    assert [t for t, _ in seen["locally"][0]] == ["ADDED", "MODIFIED", "MODIFIED", "DELETED"]
    assert [t for t, _ in seen["locally"][1]] == ["ADDED", "MODIFIED", "DELETED"]
    assert seen["locally"] == seen["over-http"]


@pytest.mark.parametrize(
    ("resource", "version", "token"),
    [
        (CONFIG_MAPS, "0", False),
        (MISSING, "0", True),
        (CONFIG_MAPS, "not-a-version", True),
    ],
    ids=["unauthorized", "not served", "bad resourceVersion"],
)
async def test_a_refused_local_watch_raises_as_over_http(
    cluster: Cluster, resource: Resource, version: str, token: bool
) -> None:
    refusals: list[tuple[type[KubeError], int, str]] = []
    for connection in connections(cluster).values():
        if not token:
            connection = replace(connection, token="wrong")
        async with KubeClient(connection) as kube:
            with pytest.raises(KubeError) as refused:
                async for _ in kube.watch(resource, version):
                    pass
        refusals.append((type(refused.value), refused.value.code, refused.value.message))
    assert refusals[0] == refusals[1]
    assert refusals[0][1] in (400, 401, 404)


def watching(cluster: Cluster) -> float:
    gauge = cluster.server.metrics.api_watches.labels("", "configmaps")
    value: float = gauge._value.get()
    return value


async def test_a_local_watch_ends_on_the_server_when_its_reader_goes(cluster: Cluster) -> None:
    async with KubeClient(connections(cluster)["locally"]) as kube:
        watch = kube.watch(CONFIG_MAPS, "0")
        first = asyncio.ensure_future(anext(watch))
        await eventually(lambda: watching(cluster) == 1, what="the watch being served")
        await cluster.api.request(
            "POST", "/api/v1/namespaces/default/configmaps", {"metadata": {"name": "one"}}
        )
        assert (await first)["type"] == "ADDED"
        await watch.aclose()
        await eventually(lambda: watching(cluster) == 0, what="the server's watch ended")
        assert not cluster.server._handler.watches


async def test_a_local_watch_ends_when_the_server_stops(cluster: Cluster) -> None:
    async with KubeClient(connections(cluster)["locally"]) as kube:

        async def drain() -> int:
            count = 0
            async for _ in kube.watch(CONFIG_MAPS, "0"):
                count += 1
            return count

        reading = asyncio.ensure_future(drain())
        await eventually(lambda: watching(cluster) == 1, what="the watch being served")
        await cluster.server.stop()
        async with asyncio.timeout(5):
            assert await reading == 0, "the stream ended, as a socket closed by the server"
