"""File bodies sent from a thread of their own, so a boot storm's downloads leave the event loop.

aiohttp's :class:`~aiohttp.web.FileResponse` sends a body with ``loop.sendfile``: every
chunk is a ``sendfile(2)`` call on the event loop's thread, and a storm of 500 machines
fetching a kernel and an initrd is thousands of them, each copying up to a socket buffer's
worth. That loop also serves the API and runs the controllers: in
``benchmarks/bootstorm.py``'s storm ``/readyz`` took up to 233 ms at p99 (1.4-5.5 ms idle).
TFTP left the loop for the same reason (:mod:`arges.boot.tftpserver`).

- :class:`FileSender` is one thread driving every transfer with one ``epoll``: a transfer
  is a duplicate of the connection's socket, a duplicate of the open file, an offset and a
  count; each time the socket is writable it gets ``sendfile(2)`` calls up to ``chunk``
  bytes. The thread owns both duplicates and closes them when the transfer ends, so a
  handler cancelled mid-body (its client went away) and the file closed behind it can never
  make the thread send from a descriptor since reused for another file.
- A client that stops reading is dropped after ``stall`` seconds without progress, instead
  of holding its connection for ever.
- :class:`SentFileResponse` is aiohttp's ``FileResponse`` (its ``Range``, conditional
  requests and headers unchanged) whose body goes through a :class:`FileSender`; a compressed
  body, a connection without a socket, or a sender not running goes aiohttp's own way.
  :func:`file_response` makes one with the sender of the request's application
  (:data:`FILE_SENDER`).

The ``sendfile(2)`` calls release the GIL, so the event loop runs while the kernel copies.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import logging
import os
import select
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter

from arges.errors import ArgesError

log = logging.getLogger(__name__)

STALL = 60.0
"""Seconds a transfer may go without sending a byte before it is dropped."""
CHUNK = 1 << 20
"""Bytes sent to one connection per turn of the thread's loop, so one fast client cannot
keep the thread from the others."""


class TransferStalled(ArgesError, ConnectionResetError):
    """The client took no bytes for ``stall`` seconds: the connection is dropped."""


@dataclass(eq=False)
class _Transfer:
    sock: int
    """A duplicate of the connection's socket, non-blocking as the original."""
    file: int
    """A duplicate of the open file's descriptor."""
    offset: int
    count: int
    loop: asyncio.AbstractEventLoop
    done: asyncio.Future[None]
    progress: float
    """When the transfer last sent a byte (``time.monotonic()``)."""
    cancelled: bool = False


class FileSender:
    """One thread sending file bodies to sockets (see the module docstring).

    ``stall``: seconds without progress before a transfer fails with
    :class:`TransferStalled`; ``chunk``: bytes per connection per turn.
    """

    def __init__(self, *, stall: float = STALL, chunk: int = CHUNK) -> None:
        self.stall = stall
        self.chunk = chunk
        self._lock = threading.Lock()
        self._incoming: collections.deque[_Transfer] = collections.deque()
        self._transfers: dict[int, _Transfer] = {}
        self._cancelled: collections.deque[_Transfer] = collections.deque()
        self._thread: threading.Thread | None = None
        self._epoll: select.epoll | None = None
        self._wake_r = self._wake_w = -1
        self._stopping = False

    def start(self) -> None:
        """Start the thread (idempotent)."""
        if self._thread is not None:
            return
        self._stopping = False
        self._epoll = select.epoll()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._epoll.register(self._wake_r, select.EPOLLIN)
        self._thread = threading.Thread(target=self._run, name="arges-boot-files", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread; transfers still running fail with ``ConnectionResetError``."""
        thread = self._thread
        if thread is None:
            return
        self._stopping = True
        self._wake()
        thread.join()
        self._thread = None
        assert self._epoll is not None
        self._epoll.close()
        os.close(self._wake_r)
        os.close(self._wake_w)
        with self._lock:
            left = [*self._incoming, *self._transfers.values()]
            self._incoming.clear()
            self._transfers.clear()
        for transfer in left:
            self._finish(transfer, ConnectionResetError("the boot HTTP service stopped"))

    @property
    def running(self) -> bool:
        """Whether the thread runs (between :meth:`start` and :meth:`stop`)."""
        return self._thread is not None

    @property
    def active(self) -> int:
        """Transfers in progress."""
        with self._lock:
            return len(self._incoming) + len(self._transfers)

    async def send(self, sock: socket.socket, file: IO[Any], offset: int, count: int) -> None:
        """Send ``count`` bytes of ``file`` from ``offset`` to ``sock`` (non-blocking, open)
        from the sender's thread; returns when all were sent.

        Raises ``ConnectionResetError`` (:class:`TransferStalled` for a client that stopped
        reading) or another ``OSError`` from ``sendfile(2)``; a file shorter than ``count``
        raises ``ConnectionResetError`` too, as the promised length can no longer be kept.
        Cancelled, the transfer stops and its descriptors are closed by the thread.
        """
        if self._thread is None:
            raise ConnectionResetError("the boot HTTP service is not running")
        loop = asyncio.get_running_loop()
        transfer = _Transfer(
            sock=os.dup(sock.fileno()),
            file=os.dup(file.fileno()),
            offset=offset,
            count=count,
            loop=loop,
            done=loop.create_future(),
            progress=time.monotonic(),
        )
        with self._lock:
            self._incoming.append(transfer)
        self._wake()
        try:
            await transfer.done
        except asyncio.CancelledError:
            transfer.cancelled = True
            with self._lock:
                self._cancelled.append(transfer)
            self._wake()
            raise

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._wake_w, b"\0")

    def _run(self) -> None:
        epoll = self._epoll
        assert epoll is not None
        checked = time.monotonic()
        while not self._stopping:
            try:
                events = epoll.poll(1.0)
            except InterruptedError:
                continue
            for fd, _ in events:
                if fd == self._wake_r:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self._wake_r, 4096)
                    continue
                transfer = self._transfers.get(fd)
                if transfer is not None:
                    self._pump(transfer)
            self._admit(epoll)
            with self._lock:
                cancelled = list(self._cancelled)
                self._cancelled.clear()
            for transfer in cancelled:
                if transfer.sock in self._transfers:
                    self._end(transfer, None)
            now = time.monotonic()
            if now - checked >= 1.0:
                checked = now
                self._sweep(now)

    def _admit(self, epoll: select.epoll) -> None:
        while True:
            with self._lock:
                if not self._incoming:
                    return
                transfer = self._incoming.popleft()
                self._transfers[transfer.sock] = transfer
            epoll.register(transfer.sock, select.EPOLLOUT)
            self._pump(transfer)

    def _sweep(self, now: float) -> None:
        for transfer in list(self._transfers.values()):
            if now - transfer.progress > self.stall:
                self._end(
                    transfer,
                    TransferStalled(
                        f"the client took no bytes for {self.stall:.0f} s: connection dropped"
                    ),
                )

    def _pump(self, transfer: _Transfer) -> None:
        try:
            self._send(transfer)
        except Exception as exc:  # the thread serves every other transfer: it must go on
            log.exception("sending a file body failed")
            self._end(transfer, exc)

    def _send(self, transfer: _Transfer) -> None:
        if transfer.cancelled:
            self._end(transfer, None)
            return
        budget = self.chunk
        while transfer.count > 0 and budget > 0:
            try:
                sent = os.sendfile(
                    transfer.sock, transfer.file, transfer.offset, min(transfer.count, budget)
                )
            except BlockingIOError:
                return
            except InterruptedError:
                continue
            except OSError as exc:
                if exc.errno == errno.EAGAIN:
                    return
                self._end(transfer, exc)
                return
            if sent == 0:
                self._end(transfer, ConnectionResetError("the file ended before its length"))
                return
            transfer.offset += sent
            transfer.count -= sent
            budget -= sent
            transfer.progress = time.monotonic()
        if transfer.count == 0:
            self._end(transfer, None)

    def _end(self, transfer: _Transfer, error: BaseException | None) -> None:
        with self._lock:
            self._transfers.pop(transfer.sock, None)
        assert self._epoll is not None
        with contextlib.suppress(OSError):
            self._epoll.unregister(transfer.sock)
        self._finish(transfer, error)

    @staticmethod
    def _finish(transfer: _Transfer, error: BaseException | None) -> None:
        for fd in (transfer.sock, transfer.file):
            with contextlib.suppress(OSError):
                os.close(fd)

        def settle() -> None:
            if transfer.done.done():
                return
            if error is None:
                transfer.done.set_result(None)
            else:
                transfer.done.set_exception(error)

        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
            transfer.loop.call_soon_threadsafe(settle)


class SentFileResponse(web.FileResponse):
    """aiohttp's ``FileResponse`` whose body goes through ``sender`` (see the module
    docstring); ``path`` and the keyword arguments are ``FileResponse``'s."""

    def __init__(self, path: str | Path, sender: FileSender, **kwargs: Any) -> None:
        super().__init__(path, **kwargs)
        self._sender = sender

    async def _sendfile(
        self, request: web.BaseRequest, fobj: IO[Any], offset: int, count: int
    ) -> AbstractStreamWriter:
        transport = request.transport
        sock = transport.get_extra_info("socket") if transport is not None else None
        if self.compression or sock is None or not self._sender.running:
            return await super()._sendfile(request, fobj, offset, count)
        writer = await web.StreamResponse.prepare(self, request)
        assert writer is not None and transport is not None
        # The head is written as the response is prepared; the body must follow it, so the
        # thread starts once the transport holds none of it: with a high-water mark of 0,
        # aiohttp's flow control makes drain() wait for exactly that.
        low, high = transport.get_write_buffer_limits()
        transport.set_write_buffer_limits(high=0, low=0)
        try:
            await writer.drain()
        finally:
            transport.set_write_buffer_limits(high=high, low=low)
        if transport.is_closing():
            raise ConnectionResetError("Connection lost")
        try:
            await self._sender.send(sock, fobj, offset, count)
        except OSError:
            # The body is cut short: only closing the connection tells the client so.
            transport.close()
            raise
        await web.StreamResponse.write_eof(self)
        return writer


FILE_SENDER = web.AppKey("file_sender", FileSender)
"""Where an application keeps the :class:`FileSender` its handlers' file bodies go through."""


def file_response(request: web.Request, path: Path, **kwargs: Any) -> web.FileResponse:
    """A ``FileResponse`` for ``path`` (keyword arguments as ``FileResponse``'s) whose body goes
    through the application's :data:`FILE_SENDER`, or aiohttp's own where it has none."""
    sender = request.app.get(FILE_SENDER)
    if sender is None:
        return web.FileResponse(path, **kwargs)
    return SentFileResponse(path, sender, **kwargs)
