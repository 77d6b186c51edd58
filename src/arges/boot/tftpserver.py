"""The TFTP service: transfers on a thread of their own, driven by one ``epoll`` loop.

The protocol (RFC 1350, options from RFC 2347, 2348 and 2349) and what is refused are those of
:mod:`arges.boot.tftp`; this module runs it for a boot storm:

- **Its own thread.** A storm is tens of thousands of packets a second; on the loop that
  serves the API and runs the controllers it delayed both (``/readyz`` p99 60 ms and more) and
  was delayed by them. Here nothing else runs on TFTP's thread, and file reads and path
  resolution, which block, block only TFTP.
- **One ``epoll`` loop, no asyncio.** Each transfer's socket is registered with the thread's
  ``epoll``; an ACK is read with ``recvfrom_into`` into one shared buffer and the next block
  sent with ``sendto`` from the same call. With asyncio each packet also went through a
  datagram transport, a handle and a timer handle created and cancelled: in
  ``benchmarks/bootstorm.py``'s 1,000-client storm Arges' process spent 1.4-1.6 s of CPU to
  dnsmasq's 0.7-0.9 s and its p99 was 1.1-1.6x dnsmasq's; with this loop 0.9 s and 0.86-1.04x
  (same runs, back to back).
- **One timer heap for every transfer.** A packet sent moves its transfer's deadline, an
  attribute; the heap holds at most an entry per transfer and its due entries are checked
  once per turn of the loop (an entry that finds its deadline moved on is pushed again for it).
- **Packets sent as they are.** DATA packets of files in memory are cut once per block size
  and shared by every transfer (:meth:`~arges.boot.tftpfiles.Source.packets`).
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
  kernel's ``rmem_max``) so they queue instead of being dropped, they are read up to 512 per
  turn, up to ``max_transfers`` run at once (each is a socket: the open-files limit is raised
  as ``arges up`` does), and a request beyond that is dropped, which the client's
  retransmission retries. One address may run ``max_transfers_per_client`` of them:
  firmware reads one file at a time, and a host that asks for many and never acknowledges
  (each transfer held for up to 25 minutes with ``timeout 255``) must not take the slots of
  the machines booting.

Each transfer has its own socket (its transfer ID, RFC 1350 section 4); a packet from another
address gets error 5 (unknown transfer ID) and does not disturb it.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import os
import select
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

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
"""How long a stop waits for the TFTP thread to end."""
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

    Up to ``BATCH`` per turn: in a storm a turn also serves every transfer whose ACK came in,
    and reading one request per turn (as asyncio's datagram transport does) left a thousand
    requests waiting seconds in the socket until a third of 1,000 clients gave up.
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
        server = self.server
        try:
            request = parse_request(data)
            running = server.running(addr)
            if running is not None and running.request == request:
                # The client asked again before our first answer reached it (or the
                # request waited in the burst's queue): the running transfer answers it,
                # where a second transfer to the same port would send a second stream of
                # blocks it cannot tell apart.
                return
            path = resolve(server.root, request.filename)
        except Refused as exc:
            log.info("TFTP: refused %s: %s", addr[0], exc.message)
            if len(data) >= 2 and data[1] in (RRQ, WRQ):
                server.metrics.tftp_transfers.labels("refused").inc()
                with contextlib.suppress(OSError):
                    self.sock.sendto(error_packet(exc.code, exc.message), addr)
            return
        server.begin(request, path, addr)


class _Transfer:
    """One read: sends a packet, waits for its ACK, sends the next (see the module docstring)."""

    __slots__ = (
        "blksize",
        "block",
        "closed",
        "counted",
        "deadline",
        "entry",
        "expected",
        "final",
        "packet",
        "packets",
        "path",
        "peer",
        "request",
        "sends",
        "server",
        "sock",
        "source",
        "timeout",
    )

    def __init__(
        self,
        server: TftpServer,
        request: ReadRequest,
        path: Path,
        peer: tuple[str, int],
        sock: socket.socket,
    ) -> None:
        self.server = server
        self.request = request
        self.path = path
        self.peer = peer
        self.sock = sock
        self.source: Source | None = None
        self.packets: Sequence[bytes] | None = None
        """The file's DATA packets when it is in memory (else blocks are read one by one)."""
        self.blksize = DEFAULT_BLKSIZE
        self.timeout: float | None = None
        """The ``timeout`` the client negotiated (seconds), if any."""
        self.block = 0
        """The block last sent (0: the OACK)."""
        self.expected = 0
        """The block number its ACK carries (``block`` modulo 65536)."""
        self.final = False
        self.packet = b""
        self.sends = 0
        self.deadline = 0.0
        """When the packet last sent is sent again (``time.monotonic``)."""
        self.entry: list[Any] | None = None
        """This transfer's entry in the server's timer heap, if it has one."""
        self.closed = False
        self.counted = False
        """Whether the server counts it among its peer's transfers (until it ends)."""

    def start(self) -> None:
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
        self.packets = self.source.packets(self.blksize)
        if "timeout" in accepted:
            self.timeout = float(accepted["timeout"])
        if accepted:
            self._send(oack_packet(accepted))
        else:
            self._next()

    def readable(self) -> None:
        """A packet for this transfer's socket: one per readiness (lock-step has one)."""
        buffer = self.server.buffer
        try:
            length, addr = self.sock.recvfrom_into(buffer)
        except OSError:
            return  # nothing after all, or an ICMP error: the retransmission timer decides
        if addr != self.peer:
            with contextlib.suppress(OSError):
                self.sock.sendto(error_packet(UNKNOWN_TID, "unknown transfer ID"), addr)
            return
        if length < 4:
            return
        opcode, number = _HEADER.unpack_from(buffer)
        if opcode == ACK and number == self.expected:
            if self.final:
                self._complete()
            else:
                self._next()
        elif opcode == ERROR:
            log.info(
                "TFTP: %s aborted the transfer: %s",
                self.peer[0],
                bytes(buffer[4:length]).rstrip(b"\x00").decode("ascii", "replace"),
            )
            self.server.metrics.tftp_transfers.labels("aborted").inc()
            self.close()
        # Anything else (a duplicate ACK above all) is ignored: answering duplicates would
        # double every later packet (the "Sorcerer's Apprentice" bug, RFC 1123 4.2.3.1).

    def _complete(self) -> None:
        size = self.source.size if self.source else 0
        log.info("TFTP: sent %s (%d bytes) to %s", self.request.filename, size, self.peer[0])
        self.server.completed(size)
        self.close()

    def _next(self) -> None:
        block = self.block
        packets = self.packets
        if packets is not None:
            packet = packets[block]
            self.final = block + 1 == len(packets)
        else:
            assert self.source is not None
            try:
                chunk = self.source.read(block * self.blksize, self.blksize)
            except OSError as exc:
                log.warning("TFTP: cannot read %s: %s", self.path, exc)
                self._abort(0, "cannot read the file")
                return
            self.final = len(chunk) < self.blksize
            packet = _HEADER.pack(DATA, (block + 1) & 0xFFFF) + chunk
        self.block = block + 1
        self.expected = (block + 1) & 0xFFFF
        self._send(packet)

    def _send(self, packet: bytes) -> None:
        self.packet = packet
        self.sends = 1
        try:  # noqa: SIM105 (contextlib.suppress is a context manager per packet)
            self.sock.sendto(packet, self.peer)
        except OSError:
            pass  # a full send buffer lost it: it is sent again at the deadline
        server = self.server
        timeout = self.timeout
        self.deadline = server.now + (server.default_timeout if timeout is None else timeout)
        entry = self.entry
        if entry is None or self.deadline < entry[0]:
            server.schedule(self)  # else its entry, due earlier, finds the deadline moved on

    def expired(self) -> None:
        """The deadline passed: send the packet again, or give up after ``retries``."""
        server = self.server
        if self.sends > server.retries:
            log.info("TFTP: %s stopped answering at block %d", self.peer[0], self.block)
            server.metrics.tftp_transfers.labels("timeout").inc()
            self.close()
            return
        self.sends += 1
        server.metrics.tftp_retransmissions.inc()
        with contextlib.suppress(OSError):
            self.sock.sendto(self.packet, self.peer)
        wait = retransmit_wait(self.sends, self.timeout, server.default_timeout, server.max_timeout)
        self.deadline = server.now + wait
        server.schedule(self)

    def _abort(self, code: int, message: str) -> None:
        with contextlib.suppress(OSError):
            self.sock.sendto(error_packet(code, message), self.peer)
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.server.ended(self)
        if self.source is not None:
            self.source.close()
            self.source = None
        self.packets = None


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
        self.buffer = bytearray(65536)
        """Where the transfers' packets are received, one at a time (on the TFTP thread)."""
        self.now = time.monotonic()
        """The TFTP thread's clock, read once per turn of its loop."""
        self._thread: threading.Thread | None = None
        self._epoll: select.epoll | None = None
        self._wake = -1
        self._stopping = False
        self._listener: _Listener | None = None
        self._handlers: dict[int, Callable[[], None]] = {}
        """What reads each registered descriptor (the listener and every transfer)."""
        self._transfers: dict[tuple[str, int], _Transfer] = {}
        """Running transfers by peer address."""
        self._per_client: Counter[str] = Counter()
        """Running transfers by peer host."""
        self._timers: list[list[Any]] = []
        """Heap of [deadline, sequence, transfer]: at most one entry per transfer."""
        self._sequence = 0
        self._completed = 0
        self._completed_bytes = 0

    async def start(self) -> None:
        """Bind the port and start serving on the TFTP thread.

        Raises:
            OSError: the port cannot be bound (taken, or 69 without the privilege).
        """
        # The boot address only, bound even before it exists (arges.boot.sockets).
        sock = sockets.bound(socket.SOCK_DGRAM, self.host, self.port)
        try:
            _enlarge_receive_buffer(sock, LISTEN_BUFFER)
            sock.setblocking(False)
            epoll = select.epoll()
        except OSError:
            sock.close()
            raise
        raise_open_files_limit()
        self.port = sock.getsockname()[1]
        self._epoll = epoll
        self._wake = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._stopping = False
        self._listener = _Listener(self, sock)
        self._handlers = {sock.fileno(): self._listener.readable, self._wake: self._woken}
        epoll.register(sock.fileno(), select.EPOLLIN)
        epoll.register(self._wake, select.EPOLLIN)
        self._thread = threading.Thread(target=self._run, name="arges-tftp", daemon=True)
        self._thread.start()
        log.info("TFTP serving %s on %s:%d", self.root, self.host, self.port)

    async def stop(self) -> None:
        """Serve the packets already received, then end every transfer and the TFTP thread."""
        thread = self._thread
        if thread is None:
            return
        with contextlib.suppress(OSError):
            os.eventfd_write(self._wake, 1)
        await asyncio.to_thread(thread.join, STOP_SECONDS)
        if thread.is_alive():
            log.warning("TFTP: the thread did not stop in %.0f s", STOP_SECONDS)
            return
        self._thread = None

    def _woken(self) -> None:
        with contextlib.suppress(OSError):
            os.eventfd_read(self._wake)
        self._stopping = True

    def _run(self) -> None:
        """The TFTP thread: wait for packets or the next deadline, serve them, until stopped."""
        assert self._epoll is not None
        poll = self._epoll.poll
        handlers = self._handlers
        timers = self._timers
        try:
            # The loop ends after the turn that reads stop()'s wake (its handler sets the
            # flag), not as soon as stop() is called: a packet that arrived before stop() (a
            # final ACK) is among that turn's events, so its transfer is served and counted
            # rather than cut off unseen.
            while not self._stopping:
                wait = max(0.0, timers[0][0] - time.monotonic()) if timers else -1.0
                try:
                    events = poll(wait)
                except InterruptedError:
                    continue
                self.now = now = time.monotonic()
                for fd, _ in events:
                    handler = handlers.get(fd)
                    if handler is None:
                        continue  # closed by an earlier event of this turn
                    try:
                        handler()
                    except Exception:
                        log.exception("TFTP: a packet could not be handled")
                if timers and timers[0][0] <= now:
                    self._expire(now)
                self._count()
        finally:
            self._shut()

    def _expire(self, now: float) -> None:
        timers = self._timers
        while timers and timers[0][0] <= now:
            entry = heapq.heappop(timers)
            transfer: _Transfer = entry[2]
            if transfer.entry is not entry or transfer.closed:
                continue
            transfer.entry = None
            if transfer.deadline > now:
                self.schedule(transfer)  # a packet was sent since: wait for its deadline
                continue
            try:
                transfer.expired()
            except Exception:
                log.exception("TFTP: a retransmission failed")

    def schedule(self, transfer: _Transfer) -> None:
        """Give ``transfer`` a heap entry at its deadline (on the TFTP thread)."""
        self._sequence += 1
        entry: list[Any] = [transfer.deadline, self._sequence, transfer]
        transfer.entry = entry
        heapq.heappush(self._timers, entry)

    def completed(self, size: int) -> None:
        """A transfer of ``size`` bytes completed: counted, published once per turn."""
        self._completed += 1
        self._completed_bytes += size

    def _count(self) -> None:
        if self._completed:
            self.metrics.tftp_transfers.labels("complete").inc(self._completed)
            self.metrics.tftp_sent_bytes.inc(self._completed_bytes)
            self._completed = self._completed_bytes = 0

    def _shut(self) -> None:
        for transfer in list(self._transfers.values()):
            transfer.close()
        self._count()
        if self._listener is not None:
            self._listener.sock.close()
            self._listener = None
        self._handlers.clear()
        self._timers.clear()
        if self._epoll is not None:
            self._epoll.close()
            self._epoll = None
        if self._wake >= 0:
            os.close(self._wake)
            self._wake = -1

    def running(self, peer: tuple[str, int]) -> _Transfer | None:
        """The transfer running to ``peer``, if any."""
        return self._transfers.get(peer)

    @property
    def transfers(self) -> int:
        """How many transfers are running."""
        return len(self._transfers)

    def begin(self, request: ReadRequest, path: Path, peer: tuple[str, int]) -> None:
        """Start a transfer of ``path`` to ``peer`` from a new socket (on the TFTP thread),
        ending the one running to ``peer`` (the listener answers a repeated request with it)."""
        running = self._transfers.get(peer)
        if running is not None:  # another request than the running one's: the client moved on
            running.close()
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
            assert self._epoll is not None
            self._epoll.register(sock.fileno(), select.EPOLLIN)
        except OSError as exc:
            sock.close()
            log.warning("TFTP: no socket for a transfer to %s: %s", peer[0], exc)
            return
        transfer = _Transfer(self, request, path, peer, sock)
        self._transfers[peer] = transfer
        self._per_client[peer[0]] += 1
        transfer.counted = True
        self._handlers[sock.fileno()] = transfer.readable
        transfer.start()

    def ended(self, transfer: _Transfer) -> None:
        """Forget ``transfer`` and close its socket (called by its ``close``)."""
        if self._transfers.get(transfer.peer) is transfer:
            del self._transfers[transfer.peer]
        # Counted until it ends, also when a newer transfer to its peer replaced it above.
        if transfer.counted:
            transfer.counted = False
            host = transfer.peer[0]
            self._per_client[host] -= 1
            if self._per_client[host] <= 0:
                del self._per_client[host]
        fd = transfer.sock.fileno()
        if fd >= 0:
            self._handlers.pop(fd, None)
            if self._epoll is not None:
                with contextlib.suppress(OSError):
                    self._epoll.unregister(fd)
        transfer.sock.close()


def _enlarge_receive_buffer(sock: socket.socket, size: int) -> None:
    """Ask for a ``size``-byte receive buffer: forced with CAP_NET_ADMIN, else as much as the
    kernel allows unprivileged (``net.core.rmem_max``)."""
    force = getattr(socket, "SO_RCVBUFFORCE", 33)
    try:
        sock.setsockopt(socket.SOL_SOCKET, force, size)
    except OSError:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
