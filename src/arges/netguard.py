"""Guards for the plane's TCP servers against hostile load: connection limits and log floods.

:class:`GuardedSite` is an aiohttp ``TCPSite`` that counts open connections per client
address and in all, and refuses the excess before aiohttp allocates anything for it: 1,100
slow connections from one host must not take the process's file descriptors from the API,
TFTP and the other clients. The refusal is a complete HTTP response that closes the
connection: written at once (the boot port's one-line ``503``), or, with
``refuse_after_request``, once the client has sent the first bytes of its request (the API
port's ``429``: an HTTP client reading an answer before it asked may take it for a stray
response on an idle connection, as Go's does, instead of the refusal it is).

The time a client may take to send a request's head is aiohttp's own ``keepalive_timeout``,
which it arms when a connection opens and after each response, and which closes a
connection still waiting for a complete head (aiohttp 3.10+).

:class:`OncePerInterval` is a logging filter that lets one record per cause (logger, message
template, exception type) through per interval, and says how many it held back when the
next one passes, so a storm of identical failures writes a line a minute, not 200,000
tracebacks.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import socket
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)

_REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 5\r\n"
    b"Content-Length: 0\r\n\r\n"
)


REFUSAL_WAIT = 5.0
"""Seconds an over-limit connection may take to start its request (``refuse_after_request``)."""
LINGER = 1.0
"""Seconds a refused connection is read (and the reading discarded) after its answer, so that
the rest of a request still arriving does not make the close a reset that loses the answer."""


OPEN_FILES = 65536
"""The open-files limit ``arges up`` asks for (the soft limit, up to the hard one)."""


def raise_open_files_limit(wanted: int = OPEN_FILES) -> int:
    """Raise this process's soft ``RLIMIT_NOFILE`` to ``wanted`` (or the hard limit, if lower)
    and return it: the default soft limit, 1,024 on many systems, is what 1,100 slow clients
    exhausted, taking the API, TFTP and kubectl down with the boot port. Never lowers it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft


class ConnectionLimits:
    """Open connections per client address (at most ``per_client``) and in all (``total``)."""

    def __init__(self, per_client: int, total: int) -> None:
        self.per_client = per_client
        self.total = total
        self.open: Counter[str] = Counter()
        self.refused = 0

    def admit(self, peer: str) -> bool:
        """Count a new connection from ``peer``; False (and not counted) when over a limit."""
        if self.open[peer] >= self.per_client or self.open.total() >= self.total:
            self.refused += 1
            return False
        self.open[peer] += 1
        return True

    def release(self, peer: str) -> None:
        """Forget a connection :meth:`admit` counted."""
        self.open[peer] -= 1
        if self.open[peer] <= 0:
            del self.open[peer]


class _Guarded(asyncio.Protocol):
    """Stands between the transport and aiohttp's handler, which it only wakes when the
    connection is admitted."""

    def __init__(
        self, inner: asyncio.Protocol, limits: ConnectionLimits, refusal: bytes, after_request: bool
    ) -> None:
        self.inner = inner
        self.limits = limits
        self.refusal = refusal
        self.after_request = after_request
        self.peer: str | None = None
        self.refusing: asyncio.BaseTransport | None = None
        self.answered = False
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        address = transport.get_extra_info("peername")
        peer = str(address[0]) if isinstance(address, tuple) else "-"
        if not self.limits.admit(peer):
            log.warning("refused a connection from %s: too many open connections", peer)
            if self.after_request:
                self.refusing = transport
                self.timer = asyncio.get_running_loop().call_later(REFUSAL_WAIT, transport.close)
                return
            if isinstance(transport, asyncio.WriteTransport):
                transport.write(self.refusal)
            transport.close()
            return
        self.peer = peer
        self.inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.peer is None:
            return
        self.limits.release(self.peer)
        self.peer = None
        self.inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.peer is not None:
            self.inner.data_received(data)
            return
        transport = self.refusing
        if transport is None or self.answered:
            return
        self.answered = True
        if isinstance(transport, asyncio.WriteTransport):
            transport.write(self.refusal)
        if self.timer is not None:
            self.timer.cancel()
        self.timer = asyncio.get_running_loop().call_later(LINGER, transport.close)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.peer is not None else None

    def pause_writing(self) -> None:
        if self.peer is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.peer is not None:
            self.inner.resume_writing()


class GuardedSite(web.TCPSite):
    """A ``TCPSite`` whose connections pass :class:`ConnectionLimits` first."""

    def __init__(
        self,
        runner: web.BaseRunner,
        *args: Any,
        limits: ConnectionLimits,
        sock: socket.socket | None = None,
        refusal: bytes = _REFUSAL,
        refuse_after_request: bool = False,
        **kw: Any,
    ):
        """``sock``: an already bound, listening socket to serve (host and port are then
        only its names), as the boot port binds its own (:mod:`arges.boot.sockets`).
        ``refusal``: the complete HTTP response an over-limit connection gets (by default a
        ``503``), at once or, with ``refuse_after_request``, when its request begins."""
        super().__init__(runner, *args, **kw)
        self.limits = limits
        self.refusal = refusal
        self.refuse_after_request = refuse_after_request
        self._listening = sock

    async def start(self) -> None:
        """Listen as ``TCPSite.start`` does, with each connection guarded."""
        await super(web.TCPSite, self).start()
        server = self._runner.server
        assert server is not None
        limits, refusal, after_request = self.limits, self.refusal, self.refuse_after_request

        def factory() -> asyncio.Protocol:
            return _Guarded(server(), limits, refusal, after_request)

        loop = asyncio.get_running_loop()
        if self._listening is not None:
            self._server = await loop.create_server(
                factory, sock=self._listening, ssl=self._ssl_context, backlog=self._backlog
            )
        else:
            self._server = await loop.create_server(
                factory,
                self._host,
                self._port,
                ssl=self._ssl_context,
                backlog=self._backlog,
                reuse_address=self._reuse_address,
                reuse_port=self._reuse_port,
            )
        sockets = self._server.sockets
        self._bound_port = sockets[0].getsockname()[1] if sockets else self._port


SUMMARISED = "arges_summarised"
"""The log record attribute saying its emitter limits it already (see OncePerInterval)."""


class OncePerInterval(logging.Filter):
    """Let one record per cause through every ``interval`` seconds (see the module docstring).

    A cause is the logger, the message template and the exception's type; records below
    ``WARNING`` are never held back, nor records logged with ``extra={SUMMARISED: True}``
    (their emitter already limits them per client, e.g. the refusal log of
    :mod:`arges.access.limits`, whose lines differ by client under one template).
    """

    def __init__(self, interval: float = 60.0, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.interval = interval
        self.clock = clock
        self._last: dict[tuple[str, str, str], float] = {}
        self._held: Counter[tuple[str, str, str]] = Counter()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or getattr(record, SUMMARISED, False):
            return True
        exc = record.exc_info[0].__name__ if record.exc_info and record.exc_info[0] else ""
        cause = (record.name, str(record.msg), exc)
        now = self.clock()
        last = self._last.get(cause)
        if last is not None and now - last < self.interval:
            self._held[cause] += 1
            return False
        if len(self._last) > 10_000:
            self._last.clear()
        self._last[cause] = now
        held = self._held.pop(cause, 0)
        if held:
            record.msg = f"{record.msg} ({held} more like this in the last {self.interval:.0f}s)"
        return True
