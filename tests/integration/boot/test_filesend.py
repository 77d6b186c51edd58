"""File bodies sent from the sender's thread: whole, in ranges, and clients that go away or
stop reading cost nothing afterwards."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from arges.boot.filesend import FILE_SENDER, FileSender, file_response

SIZE = 48 * 2**20


@pytest.fixture
def big(tmp_path: Path) -> Path:
    path = tmp_path / "initrd"
    path.write_bytes(os.urandom(SIZE))
    return path


async def serve(path: Path, sender: FileSender) -> tuple[web.AppRunner, str]:
    async def handler(request: web.Request) -> web.StreamResponse:
        return file_response(request, path)

    app = web.Application()
    app[FILE_SENDER] = sender
    app.add_routes([web.get("/initrd", handler), web.get("/ping", pong)])
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


async def pong(request: web.Request) -> web.Response:
    return web.Response(text="pong")


@pytest.fixture
async def sender() -> AsyncIterator[FileSender]:
    files = FileSender(stall=0.5)
    files.start()
    yield files
    files.stop()


def open_fds() -> int:
    return sum(1 for _ in Path("/proc/self/fd").iterdir())


async def settled(sender: FileSender) -> None:
    for _ in range(200):
        if sender.active == 0:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{sender.active} transfers still open")


async def test_bodies_arrive_whole_and_in_ranges(big: Path, sender: FileSender) -> None:
    runner, base = await serve(big, sender)
    try:
        data = big.read_bytes()
        async with aiohttp.ClientSession() as s:
            bodies = []
            for _ in range(3):
                async with s.get(f"{base}/initrd") as r:
                    bodies.append(await r.read())
            async with s.get(f"{base}/initrd", headers={"Range": "bytes=1000-2000999"}) as r:
                assert r.status == 206
                part = await r.read()
            async with s.head(f"{base}/initrd") as r:
                assert r.headers["Content-Length"] == str(SIZE)
        assert all(b == data for b in bodies)
        assert part == data[1000:2001000]
        await settled(sender)
    finally:
        await runner.cleanup()


async def test_a_client_that_goes_away_mid_body_leaves_nothing_open(
    big: Path, sender: FileSender
) -> None:
    runner, base = await serve(big, sender)
    try:
        before = open_fds()
        host, port = base.removeprefix("http://").split(":")
        for _ in range(5):
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(b"GET /initrd HTTP/1.1\r\nHost: x\r\n\r\n")
            await reader.readexactly(4096)
            writer.transport.abort()
        await settled(sender)
        async with aiohttp.ClientSession() as s, s.get(f"{base}/ping") as r:
            assert await r.text() == "pong"
        await asyncio.sleep(0.1)
        assert open_fds() <= before
    finally:
        await runner.cleanup()


async def test_a_client_that_stops_reading_is_dropped(big: Path, sender: FileSender) -> None:
    runner, base = await serve(big, sender)
    try:
        host, port = base.removeprefix("http://").split(":")
        raw = socket.create_connection((host, int(port)))
        raw.sendall(b"GET /initrd HTTP/1.1\r\nHost: x\r\n\r\n")
        # It reads nothing more: the sender gives up after its stall (0.5 s) and closes.
        await asyncio.sleep(0.2)
        assert sender.active == 1
        await settled(sender)

        def drain() -> tuple[int, bool]:
            raw.settimeout(5.0)
            got = 0
            try:
                while chunk := raw.recv(1 << 20):
                    got += len(chunk)
            except ConnectionResetError:
                pass
            except TimeoutError:
                return got, False
            return got, True

        got, closed = await asyncio.to_thread(drain)
        raw.close()
        assert closed and got < SIZE
        async with aiohttp.ClientSession() as s, s.get(f"{base}/ping") as r:
            assert await r.text() == "pong"
    finally:
        await runner.cleanup()


async def test_without_a_running_sender_aiohttp_sends_the_body(big: Path) -> None:
    runner, base = await serve(big, FileSender())
    try:
        async with aiohttp.ClientSession() as s, s.get(f"{base}/initrd") as r:
            assert await r.read() == big.read_bytes()
    finally:
        await runner.cleanup()
