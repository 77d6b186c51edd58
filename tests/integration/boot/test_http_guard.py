"""The boot HTTP port under hostile load: slow heads and connection hoarding (#23)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from arges.boot.http import BootHttp, HttpConfig


@pytest.fixture
async def boot() -> AsyncIterator[BootHttp]:
    # /boot.ipxe needs neither a decider nor assets.
    none: Any = None
    http = BootHttp(
        HttpConfig(
            "127.0.0.1",
            0,
            header_timeout=0.5,
            connections_per_client=3,
            connections=5,
        ),
        none,
        none,
    )
    await http.start()
    yield http
    await http.stop()


async def _chain_script(http: BootHttp) -> int:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{http.port}/boot.ipxe") as resp,
    ):
        assert "#!ipxe" in await resp.text()
        return resp.status


async def test_a_request_head_that_never_ends_is_cut_off(boot: BootHttp) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", boot.port)
    writer.write(b"GET /boot.ipxe HTTP/1.1\r\nHost: x\r\n")
    await writer.drain()
    # The server closes the connection (EOF) instead of holding it.
    assert await asyncio.wait_for(reader.read(), 10) == b""
    writer.close()
    assert await _chain_script(boot) == 200


async def test_connections_beyond_the_per_client_limit_are_refused(boot: BootHttp) -> None:
    held = [await asyncio.open_connection("127.0.0.1", boot.port) for _ in range(3)]
    reader, writer = await asyncio.open_connection("127.0.0.1", boot.port)
    answer = await asyncio.wait_for(reader.read(), 10)
    assert answer.startswith(b"HTTP/1.1 503 ")
    writer.close()
    assert boot.limits.refused == 1
    assert sum(boot.limits.open.values()) == 3
    for _, w in held:
        w.close()
        await w.wait_closed()

    async def released() -> bool:
        return not boot.limits.open

    for _ in range(100):
        if await released():
            break
        await asyncio.sleep(0.05)
    assert await _chain_script(boot) == 200


async def test_a_file_name_no_file_can_have_is_not_found(boot: BootHttp) -> None:
    # Found by the fuzz run: a NUL byte made path resolution raise (a 500 and a traceback).
    async with aiohttp.ClientSession() as session:
        for name in ("%00", "a%00b", "q/" * 3000):
            async with session.get(f"http://127.0.0.1:{boot.port}/tftp/{name}") as resp:
                assert resp.status == 404, name
