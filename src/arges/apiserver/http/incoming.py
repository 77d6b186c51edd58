"""What the API handlers read of a request: aiohttp's, or one made in the process.

:class:`Incoming` is the part of an aiohttp request the handlers use (method, path, query,
headers, body); an aiohttp ``web.Request`` is one. :class:`LocalRequest` is another: a
request from a client in the API server's own process (``arges up``'s controllers, see
:meth:`arges.apiserver.server.ApiServer.local`), answered by the same handler and
middleware without HTTP in between. Watches need aiohttp's; a long list, which goes to
aiohttp's in chunks, is answered to a local request whole.
"""

from __future__ import annotations

from collections.abc import Mapping
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

    @cached_property
    def query(self) -> MultiMapping[str]:
        return MultiDictProxy(MultiDict(self.params))

    @property
    def path_qs(self) -> str:
        return str(URL.build(path=self.path, query=dict(self.params)))

    @cached_property
    def headers(self) -> Mapping[str, str]:
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
        if len(self.body) > MAX_BODY_BYTES:
            raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY_BYTES, actual_size=len(self.body))
        return self.body
