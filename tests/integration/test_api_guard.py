"""The API port under connection hoarding: per-client limits, answered as kube answers
overload (429, ``Retry-After``, kube-apiserver's in-flight limit answer), without harm to kubectl (#23)."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from arges import netguard
from arges.apiserver.server import ApiServer
from tests.integration.conftest import Api, Cluster, api_session, eventually, start_server

PER_CLIENT = 4


@pytest.fixture
async def guarded(tmp_path: Path) -> AsyncIterator[Cluster]:
    data = tmp_path / "data"
    server = await start_server(data, connections_per_client=PER_CLIENT)
    token = (data / "pki" / "admin.token").read_text().strip()
    async with api_session(data) as session:
        yield Cluster(server, Api(session, server.url, token), tmp_path)
    await server.stop()


Held = list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]


async def _hold(server: ApiServer, count: int) -> Held:
    """``count`` TLS connections that send nothing and stay open."""
    tls = ssl.create_default_context(cafile=str(server.data_dir / "pki" / "ca.crt"))
    return [await asyncio.open_connection("127.0.0.1", server.port, ssl=tls) for _ in range(count)]


async def _release(held: Held) -> None:
    for _, writer in held:
        writer.close()
        await writer.wait_closed()


async def test_connections_beyond_the_per_client_limit_get_kubes_429(
    guarded: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    held = await _hold(guarded.server, PER_CLIENT)
    # The client's pooled connection is not among them: a fresh one for each request.
    for _ in range(3):
        async with guarded.api.session.get(
            f"{guarded.server.url}/version",
            headers={**guarded.api.headers, "Connection": "close"},
        ) as resp:
            body = await resp.text()
            assert (resp.status, resp.headers["Retry-After"]) == (429, "1")
            assert resp.headers["Content-Type"] == "text/plain; charset=utf-8"
        # kube-apiserver's answer over its in-flight limits, word for word.
        assert body == "Too many requests, please try again later.\n"
    refusals = [r for r in caplog.records if "too many open connections" in r.getMessage()]
    assert len(refusals) == 3
    await _release(held)

    async def served() -> bool:
        status, _ = await guarded.api.get("/api/v1/namespaces/default")
        return status == 200

    await eventually(served, what="a request once the held connections are closed")


async def test_kubectl_waits_out_a_429_and_succeeds(guarded: Cluster) -> None:
    held = await _hold(guarded.server, PER_CLIENT)
    kubectl = asyncio.create_task(guarded.kubectl("get", "namespace", "default", "-o", "name"))
    limits = guarded.server.limits
    assert limits is not None
    await eventually(lambda: limits.refused, what="kubectl's first connection refused")
    await _release(held)
    result = await kubectl
    assert result.out.strip() == "namespace/default"


async def test_an_excess_connection_that_sends_nothing_is_closed(
    guarded: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(netguard, "REFUSAL_WAIT", 0.2)
    held = await _hold(guarded.server, PER_CLIENT + 1)
    excess, _ = held[-1]
    assert await asyncio.wait_for(excess.read(), 10) == b""
    await _release(held)
