"""Requests from the API server's own process (``ApiServer.local``): the controllers of
``arges up`` are answered by the same handler, audit and metrics as over HTTP, without it."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp.http import SERVER_SOFTWARE

from arges.kube.client import CONCURRENCY, MERGE, KubeClient
from arges.kube.connection import from_kubeconfig
from arges.kube.errors import AlreadyExists, Conflict, Invalid, NotFound
from arges.kube.resources import Resource
from tests.integration.conftest import Cluster, eventually

CM = "/api/v1/namespaces/default/configmaps"
CONFIG_MAPS = Resource("", "v1", "configmaps", "ConfigMap", namespaced=True)
JSON = {"Content-Type": "application/json"}
VOLATILE = ("uid", "resourceVersion", "creationTimestamp", "time")


async def over_http(
    cluster: Cluster, method: str, path: str, headers: dict[str, str], body: bytes | None
) -> tuple[int, Any]:
    """The same request over the API server's local socket, as the controllers sent it."""
    socket = cluster.server.socket_path
    assert socket is not None
    async with (
        aiohttp.ClientSession(connector=aiohttp.UnixConnector(str(socket))) as session,
        session.request(method, "http://localhost" + path, data=body, headers=headers) as resp,
    ):
        return resp.status, json.loads(await resp.read())


async def locally(
    cluster: Cluster, method: str, path: str, headers: dict[str, str], body: bytes | None
) -> tuple[int, Any]:
    status, raw = await cluster.server.local(method, path, {}, headers, body)
    return status, json.loads(raw)


def steady(value: Any, name: str) -> Any:
    """``value`` without what differs between two objects made alike (their name too)."""
    if isinstance(value, dict):
        return {k: steady(v, name) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [steady(v, name) for v in value]
    return value.replace(name, "NAME") if isinstance(value, str) else value


@pytest.mark.parametrize(
    ("method", "path", "body", "auth", "code"),
    [
        ("POST", CM, {"metadata": {"name": "NAME"}, "data": {"k": "v"}}, True, 201),
        ("POST", CM, {"metadata": {"name": "Not_A_Name"}}, True, 422),
        ("GET", f"{CM}/NAME", None, True, 200),
        ("GET", f"{CM}/none-such", None, True, 404),
        ("GET", f"{CM}/NAME", None, False, 401),
        ("PATCH", f"{CM}/NAME", {"data": {"k": "w"}}, True, 200),
        ("PATCH", f"{CM}/NAME", {"metadata": {"resourceVersion": "1"}}, True, 409),
        ("POST", "/api/v1/namespaces/none-such/configmaps", {"metadata": {"name": "x"}}, True, 404),
        ("DELETE", f"{CM}/NAME", None, True, 200),
    ],
)
async def test_a_local_call_is_answered_as_over_http(
    cluster: Cluster, method: str, path: str, body: Any, auth: bool, code: int
) -> None:
    answers = []
    for name, send in (("over-http", over_http), ("locally", locally)):
        # Both as KubeClient sends them (the User-Agent names the field manager).
        headers = {"User-Agent": SERVER_SOFTWARE}
        if auth:
            headers["Authorization"] = f"Bearer {cluster.server.token}"
        if body is not None:
            headers["Content-Type"] = MERGE if method == "PATCH" else "application/json"
        if method != "POST" or "NAME" not in json.dumps(body):
            # Each way works on an object of its own, made alike beforehand.
            await cluster.api.request("POST", CM, {"metadata": {"name": name}, "data": {"k": "v"}})
        raw = orjson.dumps(body).replace(b"NAME", name.encode()) if body is not None else None
        status, answer = await send(cluster, method, path.replace("NAME", name), headers, raw)
        assert status == code, answer
        answers.append(steady(answer, name))
    assert answers[0] == answers[1]


async def test_local_calls_are_counted_and_audited(cluster: Cluster) -> None:
    def created() -> float:
        return cluster.server.metrics.api_requests.labels(
            "create", "", "configmaps", "201"
        )._value.get()

    before = created()
    headers = {"Authorization": f"Bearer {cluster.server.token}", **JSON}
    body = orjson.dumps({"metadata": {"name": "audited"}, "data": {"k": "v"}})
    status, _ = await cluster.server.local("POST", CM, {"fieldManager": "me"}, headers, body)
    assert status == 201 and created() == before + 1
    log = cluster.server.data_dir / "audit" / "audit.log"
    [event] = [e for e in map(json.loads, log.read_text().splitlines()) if "audited" in str(e)]
    assert (event["verb"], event["objectRef"]["name"]) == ("create", "audited")
    assert event["requestURI"] == f"{CM}?fieldManager=me"
    _, stored = await cluster.api.request("GET", f"{CM}/audited")
    assert stored["metadata"]["managedFields"][0]["manager"] == "me"


async def test_a_write_whose_caller_is_cancelled_is_finished(cluster: Cluster) -> None:
    # As over HTTP, where the server goes on with a request whose client went away.
    headers = {"Authorization": f"Bearer {cluster.server.token}", **JSON}
    body = orjson.dumps({"metadata": {"name": "kept"}})
    call = asyncio.ensure_future(cluster.server.local("POST", CM, {}, headers, body))
    await asyncio.sleep(0)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call

    async def stored() -> bool:
        status, _ = await cluster.api.request("GET", f"{CM}/kept")
        return status == 200

    await eventually(stored, what="the create finished")


async def test_a_kube_client_with_the_local_api_raises_as_over_http(cluster: Cluster) -> None:
    connection = from_kubeconfig(cluster.server.kubeconfig_path)
    connection = replace(connection, unix_socket=cluster.server.socket_path, local=cluster.server)
    async with KubeClient(connection) as kube:
        created = await kube.create(CONFIG_MAPS, {"metadata": {"name": "c"}}, "default")
        with pytest.raises(AlreadyExists):
            await kube.create(CONFIG_MAPS, {"metadata": {"name": "c"}}, "default")
        with pytest.raises(NotFound):
            await kube.get(CONFIG_MAPS, "none-such", "default")
        with pytest.raises(Invalid):
            await kube.create(CONFIG_MAPS, {"metadata": {"name": "Not_A_Name"}}, "default")
        stale = {"metadata": {"resourceVersion": "1"}, "data": {"k": "v"}}
        with pytest.raises(Conflict):
            await kube.patch(CONFIG_MAPS, "c", stale, "default")
        got = await kube.get(CONFIG_MAPS, "c", "default")
        assert got["metadata"]["uid"] == created["metadata"]["uid"]
        assert [c["metadata"]["name"] for c in await kube.list(CONFIG_MAPS, "default")] == ["c"]


async def test_a_burst_of_local_calls_is_queued_as_http_requests_are(cluster: Cluster) -> None:
    # Every server booting at once: at most a connection pool's worth in flight, the rest
    # wait their turn instead of all being answered at once, every answer in memory.
    inflight = peak = 0

    class Counted:
        async def local(self, *call: Any) -> tuple[int, bytes]:
            nonlocal inflight, peak
            inflight += 1
            peak = max(peak, inflight)
            try:
                return await cluster.server.local(*call)
            finally:
                inflight -= 1

        local_watch = cluster.server.local_watch

    connection = replace(from_kubeconfig(cluster.server.kubeconfig_path), local=Counted())
    async with KubeClient(connection) as kube:
        # Writes, which run in tasks of their own (a read is answered in its caller's).
        bad = {"metadata": {"name": "Not_A_Name"}}
        writes = [kube.create(CONFIG_MAPS, bad, "default") for _ in range(3 * CONCURRENCY)]
        answers = await asyncio.gather(*writes, return_exceptions=True)
    assert all(isinstance(a, Invalid) for a in answers)
    assert peak == CONCURRENCY


async def test_a_stopped_server_answers_local_calls_503(cluster: Cluster) -> None:
    await cluster.server.stop()
    status, raw = await cluster.server.local("GET", CM, {}, {}, None)
    assert (status, json.loads(raw)["reason"]) == (503, "ServiceUnavailable")


async def test_a_components_writes_are_owned_and_audited_under_its_name(cluster: Cluster) -> None:
    # As client-go's User-Agent names a controller's binary: kube-apiserver makes the part
    # before its first '/' the field manager of a write that names none.
    connection = from_kubeconfig(cluster.server.kubeconfig_path)
    local = replace(connection, unix_socket=cluster.server.socket_path, local=cluster.server)
    async with (
        KubeClient(local, component="arges") as plane,
        KubeClient(connection, component="arges-cli") as cli,
    ):
        await plane.create(
            CONFIG_MAPS, {"metadata": {"name": "by-plane"}, "data": {"a": "1"}}, "default"
        )
        await cli.create(
            CONFIG_MAPS, {"metadata": {"name": "by-cli"}, "data": {"a": "1"}}, "default"
        )
        await plane.patch(CONFIG_MAPS, "by-cli", {"data": {"b": "2"}}, "default")
        by_plane = await cli.get(CONFIG_MAPS, "by-plane", "default")
        by_cli = await cli.get(CONFIG_MAPS, "by-cli", "default")
    assert [e["manager"] for e in by_plane["metadata"]["managedFields"]] == ["arges"]
    assert sorted(e["manager"] for e in by_cli["metadata"]["managedFields"]) == [
        "arges",
        "arges-cli",
    ]
    log = cluster.server.data_dir / "audit" / "audit.log"
    agents = {
        e["objectRef"]["name"]: e["userAgent"]
        for e in map(json.loads, log.read_text().splitlines())
        if e["verb"] == "create" and e["objectRef"].get("name", "").startswith("by-")
    }
    assert agents["by-plane"].startswith("arges/v") and agents["by-cli"].startswith("arges-cli/v")
