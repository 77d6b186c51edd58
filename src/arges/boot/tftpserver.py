"""The TFTP service: transfers on a thread and event loop of their own.

The protocol (RFC 1350, options from RFC 2347, 2348 and 2349) and what is refused are those of
:mod:`arges.boot.tftp`; this module runs it for a boot storm:

- **Its own thread and event loop.** A storm is tens of thousands of packets a second; on the
  loop that serves the API and runs the controllers it delayed both (``/readyz`` p99 60 ms and
  more) and was delayed by them. Here nothing else runs on TFTP's loop, and file reads and
  path resolution, which block, block only TFTP.
- **One callback per packet.** Each transfer is a datagram protocol: an ACK arrives, the next
  block goes out from ``datagram_received``, and one timer handle retransmits, up to
  ``retries`` times. No task, queue or ``wait_for`` per packet.
- **Retransmission backs off** (:func:`retransmit_wait`). After the ``timeout`` a client
  negotiated (RFC 2349) the wait is that, fixed; otherwise it starts at ``default_timeout``
  (1 s) and doubles with each retransmission of a packet up to ``max_timeout`` (8 s), as
  RFC 1123 section 4.2.3.2 asks of TFTP (an adaptive timeout with exponential backoff) and
  dnsmasq does. In a storm ACKs are late because the clients or the link are saturated; a
  fixed 1 s retransmission added a duplicate of every late packet to that load, and giving
  up after 6 s of silence failed a third of 1,000 clients that dnsmasq, patient for about
  30 s, all served.
- **Files from** :class:`~arges.boot.tftpfiles.FileCache`: small hot files from memory, large
  ones streamed a block at a time.
- **Room for the burst.** A thousand read requests arrive at once on one socket: its receive
  buffer is enlarged (``SO_RCVBUFFORCE`` with the privilege, else ``SO_RCVBUF`` up to the
  kernel's ``rmem_max``) so they queue instead of being dropped, up to ``max_transfers`` run
  at once (each is a socket: the open-files limit is raised as ``arges up`` does), and a
  request beyond that is dropped, which the client's retransmission retries. One address
  may run ``max_transfers_per_client`` of them: firmware reads one file at a time, and a
  host that asks for many and never acknowledges (each transfer held for up to 25 minutes
  with ``timeout 255``) must not take the slots of the machines booting.

Each transfer has its own socket (its transfer ID, RFC 1350 section 4); a packet from another
address gets error 5 (unknown transfer ID) and does not disturb it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, cast

from arges.boot import sockets
from arges.boot.tftp import (
    ACK,
    DATA,
    DEFAULT_BLKSIZE,
    ERROR,
    RRQ,
    UNKNOWN_TID,
    WRQ,
    ReadRequest,
    Refused,
    error_packet,
    negotiate,
    oack_packet,
    parse_request,
    resolve,
)
from arges.boot.tftpfiles import FileCache, Source
from arges.metrics import Metrics
from arges.netguard import raise_open_files_limit

log = logging.getLogger(__name__)

_HEADER = struct.Struct("!HH")
STOP_SECONDS = 10.0
"""How long a stop waits for each of its steps on the TFTP thread."""
LISTEN_BUFFER = 8 << 20
"""Receive buffer asked for the listening socket: room for a few thousand queued requests."""


def retransmit_wait(sends: int, negotiated: float | None, first: float, cap: float) -> float:
    """Seconds to wait for the answer to a packet sent ``sends`` times (1: the first send):
    the client's ``negotiated`` timeout (RFC 2349) when it gave one, else ``first`` doubled
    with each retransmission, at most ``cap`` (see the module docstring)."""
    if negotiated is not None:
        return negotiated
    return float(min(first * 2 ** (sends - 1), cap))


class _Listener:
    """The requests on port 69, each read as soon as the socket is readable, all at once.

    Not a datagram transport: asyncio's reads one datagram per readiness, that is one
    request per turn of the loop, and in a storm a turn also serves every transfer whose ACK
    came in. A thousand requests then waited seconds in the socket, clients retransmitted
    them, and a third of 1,000 clients gave up before their first answer.
    """

    BATCH = 512
    """Requests read per readiness at most (the rest on the next turn)."""

    def __init__(self, server: TftpServer, sock: socket.socket) -> None:
        self.server = server
        self.sock = sock

    def readable(self) -> None:
        for _ in range(self.BATCH):
            try:
                data, addr = self.sock.recvfrom(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("TFTP: receiving a request failed: %s", exc)
                return
            self.received(data, addr)

    def received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            request = parse_request(data)
            path = resolve(self.server.root, request.filename)
        except Refused as exc:
            log.info("TFTP: refused %s: %s", addr[0], exc.message)
            if len(data) >= 2 and data[1] in (RRQ, WRQ):
                self.server.metrics.tftp_transfers.labels("refused").inc()
                with contextlib.suppress(OSError):
                    self.sock.sendto(error_packet(exc.code, exc.message), addr)
            return
        self.server.begin(request, path, addr)


class _Transfer(asyncio.DatagramProtocol):
    """One read: sends a packet, waits for its ACK, sends the next (see the module docstring)."""

    def __init__(self, server: TftpServer, request: ReadRequest, path: Path, peer: Any) -> None:
        self.server = server
        self.request = request
        self.path = path
        self.peer: tuple[str, int] = peer
        self.transport: asyncio.DatagramTransport | None = None
        self.source: Source | None = None
        self.blksize = DEFAULT_BLKSIZE
        self.timeout: float | None = None
        """The ``timeout`` the client negotiated (seconds), if any."""
        self.block = 0
        """The block number the peer must acknowledge next (0: the OACK)."""
        self.final = False
        self.packet = b""
        self.sends = 0
        self.timer: asyncio.TimerHandle | None = None
        self.counted = False
        """Whether the server counts it among its peer's transfers (until it ends)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        try:
            self.source = self.server.files.open(self.path)
            accepted = negotiate(self.request.options, self.source.size)
        except Refused as exc:
            self.server.metrics.tftp_transfers.labels("refused").inc()
            self._abort(exc.code, exc.message)
            return
        except OSError as exc:
            log.warning("TFTP: cannot read %s: %s", self.path, exc)
            self._abort(0, "cannot read the file")
            return
        self.blksize = int(accepted.get("blksize", DEFAULT_BLKSIZE))
        if "timeout" in accepted:
            self.timeout = float(accepted["timeout"])
        if accepted:
            self._send(oack_packet(accepted))
        else:
            self._next()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if addr != self.peer:
            transport.sendto(error_packet(UNKNOWN_TID, "unknown transfer ID"), addr)
            return
        if len(data) < 4:
            return
        opcode, number = _HEADER.unpack_from(data)
        if opcode == ERROR:
            log.info(
                "TFTP: %s aborted the transfer: %s",
                self.peer[0],
                data[4:].rstrip(b"\x00").decode("ascii", "replace"),
            )
            self.server.metrics.tftp_transfers.labels("aborted").inc()
            self._close()
        elif opcode == ACK and number == self.block & 0xFFFF:
            if self.final:
                log.info(
                    "TFTP: sent %s (%d bytes) to %s",
                    self.request.filename,
                    self.source.size if self.source else 0,
                    self.peer[0],
                )
                self.server.metrics.tftp_transfers.labels("complete").inc()
                self.server.metrics.tftp_sent_bytes.inc(self.source.size if self.source else 0)
                self._close()
            else:
                self._next()
        # Anything else (a duplicate ACK above all) is ignored: answering duplicates would
        # double every later packet (the "Sorcerer's Apprentice" bug, RFC 1123 4.2.3.1).

    def _next(self) -> None:
        assert self.source is not None
        self.block += 1
        try:
            chunk = self.source.read((self.block - 1) * self.blksize, self.blksize)
        except OSError as exc:
            log.warning("TFTP: cannot read %s: %s", self.path, exc)
            self._abort(0, "cannot read the file")
            return
        self.final = len(chunk) < self.blksize
        self._send(_HEADER.pack(DATA, self.block & 0xFFFF) + chunk)

    def _send(self, packet: bytes) -> None:
        assert self.transport is not None
        self.packet = packet
        self.sends = 1
        self.transport.sendto(packet, self.peer)
        self._arm()

    def _arm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        server = self.server
        wait = retransmit_wait(self.sends, self.timeout, server.default_timeout, server.max_timeout)
        self.timer = asyncio.get_running_loop().call_later(wait, self._expired)

    def _expired(self) -> None:
        self.timer = None
        if self.transport is None or self.transport.is_closing():
            return
        if self.sends > self.server.retries:
            log.info("TFTP: %s stopped answering at block %d", self.peer[0], self.block)
            self.server.metrics.tftp_transfers.labels("timeout").inc()
            self._close()
            return
        self.sends += 1
        self.server.metrics.tftp_retransmissions.inc()
        self.transport.sendto(self.packet, self.peer)
        self._arm()

    def _abort(self, code: int, message: str) -> None:
        assert self.transport is not None
        self.transport.sendto(error_packet(code, message), self.peer)
        self._close()

    def _close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.source is not None:
            self.source.close()
            self.source = None
        self.server.ended(self)

    def error_received(self, exc: Exception) -> None:
        """An ICMP error for this peer (port unreachable): the retransmission timer decides."""


class TftpServer:
    """Serves the files under ``root`` (see the module docstring and :mod:`arges.boot.tftp`).

    ``retries`` retransmissions of a packet follow the first send, each after the timeout the
    client negotiated, else after ``default_timeout`` seconds doubled with each one up to
    ``max_timeout`` (so by default a client silent for 1+2+4+8+8+8 = 31 s is given up).
    """

    def __init__(
        self,
        root: Path,
        host: str = "0.0.0.0",
        port: int = 69,
        *,
        retries: int = 5,
        default_timeout: float = 1.0,
        max_timeout: float = 8.0,
        max_transfers: int = 4096,
        max_transfers_per_client: int = 16,
        files: FileCache | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.root = root
        self.metrics = metrics if metrics is not None else Metrics()
        self.host = host
        self.port = port
        self.retries = retries
        self.default_timeout = default_timeout
        self.max_timeout = max_timeout
        self.max_transfers = max_transfers
        self.max_transfers_per_client = max_transfers_per_client
        self.files = files or FileCache()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._listener: _Listener | None = None
        self._transfers: dict[tuple[str, int], _Transfer] = {}
        """Running transfers by peer address."""
        self._per_client: Counter[str] = Counter()
        """Running transfers by peer host."""

    async def start(self) -> None:
        """Bind the port and start serving on the TFTP thread.

        Raises:
            OSError: the port cannot be bound (taken, or 69 without the privilege).
        """
        # The boot address only, bound even before it exists (arges.boot.sockets).
        sock = sockets.bound(socket.SOCK_DGRAM, self.host, self.port)
        try:
            _enlarge_receive_buffer(sock, LISTEN_BUFFER)
        except OSError:
            sock.close()
            raise
        raise_open_files_limit()
        self.port = sock.getsockname()[1]
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()
            loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="arges-tftp", daemon=True)
        self._thread.start()
        await asyncio.to_thread(ready.wait)
        listener = _Listener(self, sock)

        async def listen() -> None:
            loop.add_reader(sock, listener.readable)

        await self._call(listen)
        self._listener = listener
        log.info("TFTP serving %s on %s:%d", self.root, self.host, self.port)

    async def stop(self) -> None:
        """Stop listening, end every transfer, and stop the TFTP thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return

        async def shut() -> None:
            if self._listener is not None:
                asyncio.get_running_loop().remove_reader(self._listener.sock)
                self._listener.sock.close()
                self._listener = None
            for transfer in list(self._transfers.values()):
                transfer._close()
            await asyncio.sleep(0)

        # Each step bounded, and the loop stopped whatever the first did: a stop must end.
        with contextlib.suppress(RuntimeError, TimeoutError):
            await asyncio.wait_for(self._call(shut), STOP_SECONDS)
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(loop.stop)
        await asyncio.to_thread(thread.join, STOP_SECONDS)
        if thread.is_alive():
            log.warning("TFTP: the thread did not stop in %.0f s", STOP_SECONDS)
        self._loop = self._thread = None

    async def _call(self, make: Callable[[], Any]) -> Any:
        """Run the coroutine ``make()`` returns on the TFTP loop; its result, here."""
        assert self._loop is not None

        async def run() -> Any:
            return await make()

        future: Future[Any] = asyncio.run_coroutine_threadsafe(run(), self._loop)
        return await asyncio.wrap_future(future)

    @property
    def transfers(self) -> int:
        """How many transfers are running."""
        return len(self._transfers)

    def begin(self, request: ReadRequest, path: Path, peer: tuple[str, int]) -> None:
        """Start a transfer of ``path`` to ``peer`` from a new socket (on the TFTP loop)."""
        running = self._transfers.get(peer)
        if running is not None:
            if running.request == request:
                # The client asked again before our first answer reached it (or the
                # request waited in the burst's queue): the running transfer answers it,
                # where a second transfer to the same port would send a second stream of
                # blocks it cannot tell apart.
                return
            running._close()  # the client moved on to another file
        if len(self._transfers) >= self.max_transfers:
            log.warning(
                "TFTP: %d transfers running, dropping a request from %s",
                len(self._transfers),
                peer[0],
            )
            return
        if self._per_client[peer[0]] >= self.max_transfers_per_client:
            log.warning(
                "TFTP: %s runs %d transfers already, dropping its request",
                peer[0],
                self._per_client[peer[0]],
            )
            return
        # Not sockets.bound: SO_REUSEADDR on port 0 may hand two transfers one port.
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.bind((self.host, 0))
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            log.warning("TFTP: no socket for a transfer to %s: %s", peer[0], exc)
            return
        transfer = _Transfer(self, request, path, peer)
        self._transfers[peer] = transfer
        self._per_client[peer[0]] += 1
        transfer.counted = True
        assert self._loop is not None
        self._loop.create_task(self._open(transfer, sock))

    async def _open(self, transfer: _Transfer, sock: socket.socket) -> None:
        assert self._loop is not None
        try:
            await self._loop.create_datagram_endpoint(lambda: transfer, sock=sock)
        except OSError as exc:
            sock.close()
            self.ended(transfer)
            log.warning("TFTP: cannot start a transfer to %s: %s", transfer.peer[0], exc)

    def ended(self, transfer: _Transfer) -> None:
        """Forget ``transfer``: it closed, or could not start."""
        if self._transfers.get(transfer.peer) is transfer:
            del self._transfers[transfer.peer]
        # Counted until it ends, also when a newer transfer to its peer replaced it above.
        if transfer.counted:
            transfer.counted = False
            host = transfer.peer[0]
            self._per_client[host] -= 1
            if self._per_client[host] <= 0:
                del self._per_client[host]


def _enlarge_receive_buffer(sock: socket.socket, size: int) -> None:
    """Ask for a ``size``-byte receive buffer: forced with CAP_NET_ADMIN, else as much as the
    kernel allows unprivileged (``net.core.rmem_max``)."""
    force = getattr(socket, "SO_RCVBUFFORCE", 33)
    try:
        sock.setsockopt(socket.SOL_SOCKET, force, size)
    except OSError:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
