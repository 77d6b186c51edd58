"""The stream a local watch writes its events to (``LocalStream``): in order, bounded, and
refusing its writer once the reader has gone, as a socket does."""

from __future__ import annotations

import asyncio

import pytest

from arges.apiserver.http.incoming import LocalStream


async def test_chunks_arrive_in_order_then_the_end() -> None:
    stream = LocalStream()
    stream.start()
    await stream.write(b"a\n")
    await stream.write_eof(b"b\n")
    assert stream.started.is_set()
    assert [chunk async for chunk in stream] == [b"a\n", b"b\n"]


async def test_a_writer_ahead_of_its_reader_waits() -> None:
    stream = LocalStream(limit=2)
    await stream.write(b"1")
    await stream.write(b"2")
    third = asyncio.ensure_future(stream.write(b"3"))
    await asyncio.sleep(0.01)
    assert not third.done(), "the stream holds at most its limit"
    assert await anext(stream) == b"1"
    await asyncio.wait_for(third, 1)
    stream.end()
    assert [chunk async for chunk in stream] == [b"2", b"3"]


async def test_a_closed_stream_refuses_its_writer_and_says_so() -> None:
    stream = LocalStream(limit=1)
    closed: list[bool] = []
    stream.when_closed(lambda: closed.append(True))
    await stream.write(b"1")
    waiting = asyncio.ensure_future(stream.write(b"2"))
    await asyncio.sleep(0)
    stream.close()
    stream.close()
    with pytest.raises(ConnectionResetError):
        await waiting
    with pytest.raises(ConnectionResetError):
        await stream.write(b"3")
    assert closed == [True], "told once"
    assert [chunk async for chunk in stream] == [], "what was queued is dropped"
