"""What the API handlers read of a request: aiohttp's, or one made in the process.

:class:`Incoming` is the part of an aiohttp request the handlers use (method, path, query,
headers, body); an aiohttp ``web.Request`` is one. :class:`LocalRequest` is another: a
request from a client in the API server's own process (``arges up``'s controllers, see
:meth:`arges.apiserver.server.ApiServer.local`), answered by the same handler and
middleware without HTTP in between. A local watch streams its events to a
:class:`LocalStream` (:meth:`arges.apiserver.server.ApiServer.local_watch`); a long list,
which goes to aiohttp's in chunks, is answered to a local request whole.
"""

from __future__ import annotations

import asyncio
import collections
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Protocol

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy, MultiDict, MultiDictProxy, MultiMapping
from yarl import URL

from arges.apiserver.http.params import MAX_BODY_BYTES


class Incoming(Protocol):
    """A request as the handlers read it (aiohttp's ``BaseRequest`` names)."""

    @property
    def method(self) -> str: ...

    @property
    def path(self) -> str: ...

    @property
    def path_qs(self) -> str: ...

    @property
    def query(self) -> MultiMapping[str]: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def content_type(self) -> str: ...

    @property
    def content_length(self) -> int | None: ...

    @property
    def remote(self) -> str | None: ...

    async def read(self) -> bytes: ...


_PLAIN_PATH = re.compile(r"[A-Za-z0-9._~/-]*")
"""A path of unreserved characters and slashes: the same once quoted (RFC 3986, 2.3)."""


@dataclass(frozen=True)
class LocalRequest:
    """A request made in the API server's process: ``path`` without its query, ``params``
    its query, ``header_values`` the headers as a client would send them (``Authorization``
    among them), ``body`` the bytes sent.

    :meth:`read` refuses a body over the API's limit, as aiohttp does (413).
    """

    method: str
    path: str
    params: Mapping[str, str] = field(default_factory=dict)
    header_values: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    stream: LocalStream | None = None
    """Where a watch's events go (None: the request is not a watch)."""

    @cached_property
    def query(self) -> MultiMapping[str]:
        """The query parameters, as aiohttp's ``Request.query`` gives them."""
        return MultiDictProxy(MultiDict(self.params))

    @property
    def path_qs(self) -> str:
        if not self.params and _PLAIN_PATH.fullmatch(self.path):
            # Nothing to quote: what yarl would give, without building a URL (the audit
            # log's requestURI of every local write).
            return self.path
        return str(URL.build(path=self.path, query=dict(self.params)))

    @cached_property
    def headers(self) -> Mapping[str, str]:
        """The headers, case-insensitive, as aiohttp's ``Request.headers`` gives them."""
        return CIMultiDictProxy(CIMultiDict(self.header_values))

    @property
    def content_type(self) -> str:
        raw = self.headers.get("Content-Type", "")
        return raw.split(";", 1)[0].strip().lower() or "application/octet-stream"

    @property
    def content_length(self) -> int | None:
        return len(self.body)

    @property
    def remote(self) -> str | None:
        return ""

    async def read(self) -> bytes:
        """The body; 413 (``HTTPRequestEntityTooLarge``) past :data:`MAX_BODY_BYTES`."""
        if len(self.body) > MAX_BODY_BYTES:
            raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY_BYTES, actual_size=len(self.body))
        return self.body


LOCAL_STREAM_CHUNKS = 64
"""Chunks (each one or more watch events) a local stream holds for a reader that is behind;
the writer then waits, as a socket's sender waits for the receiver's window."""


class LocalStream:
    r"""The body of a streamed answer (a watch) to a request from the API server's process:
    the chunks the handler writes, in order, to one reader in the same event loop.

    The writer (:func:`arges.apiserver.http.watching.serve_watch`) calls :meth:`start`, then
    :meth:`write` for each chunk and :meth:`write_eof`; the reader iterates (``async for``)
    until the end, and :meth:`close`\ s it when it goes away, after which :meth:`write` raises
    :class:`ConnectionResetError`, as a socket whose reader left does.
    """

    def __init__(self, limit: int = LOCAL_STREAM_CHUNKS) -> None:
        self.limit = limit
        self.started = asyncio.Event()
        self._chunks: collections.deque[bytes] = collections.deque()
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._ended = False
        self._closed = False
        self._on_close: Callable[[], object] | None = None

    def start(self) -> None:
        """The answer is a stream (its status 200 and the chunks to come)."""
        self.started.set()

    async def write(self, data: bytes) -> None:
        """Queue ``data`` for the reader, waiting while it holds :attr:`limit` chunks.

        Raises:
            ConnectionResetError: the reader closed the stream.
        """
        while len(self._chunks) >= self.limit and not self._closed:
            self._writable.clear()
            await self._writable.wait()
        if self._closed:
            raise ConnectionResetError("the local reader closed the watch")
        self._chunks.append(data)
        self._readable.set()

    async def write_eof(self, data: bytes = b"") -> None:
        """Queue ``data`` (when any) and end the stream."""
        if data:
            await self.write(data)
        self.end()

    def end(self) -> None:
        """No more chunks: the reader gets those queued, then the end."""
        self._ended = True
        self._readable.set()

    def when_closed(self, callback: Callable[[], object]) -> None:
        """Call ``callback`` when the reader closes the stream (the server ends the watch)."""
        self._on_close = callback

    def close(self) -> None:
        """The reader is gone: drop what is queued, refuse what comes, and say so."""
        if self._closed:
            return
        self._closed = self._ended = True
        self._chunks.clear()
        self._readable.set()
        self._writable.set()
        if self._on_close is not None:
            self._on_close()

    def __aiter__(self) -> LocalStream:
        return self

    async def __anext__(self) -> bytes:
        while not self._chunks:
            if self._ended:
                raise StopAsyncIteration
            self._readable.clear()
            await self._readable.wait()
        chunk = self._chunks.popleft()
        self._writable.set()
        return chunk
