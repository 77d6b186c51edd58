"""A read-only TFTP server (RFC 1350) with option negotiation (RFC 2347, 2348, 2349).

It serves the iPXE binaries to PXE firmware. Each transfer runs on its own UDP socket (its
transfer ID) as an asyncio task, so many transfers proceed at once; lost packets are
retransmitted after the negotiated ``timeout`` (RFC 2349, default 1 s), up to ``retries``.
Options: ``blksize`` 8..65464 (RFC 2348), ``tsize`` (answered with the file size) and
``timeout`` 1..255 s; unknown options are ignored, as RFC 2347 says.

Refused with a TFTP error, never served: writes (it is read-only), absolute paths, paths
with ``..``, and directories that resolve outside the root (a symlink in the root that
names a file is followed: see :func:`resolve`). Malformed packets are logged and dropped
without disturbing transfers in progress.

Not tftpy: the maintained Python TFTP library writes uploads into the served directory,
joins absolute paths onto the root instead of refusing them, ignores RFC 2349's timeout,
and runs a blocking loop in a thread; adapting it meant patching its internal states.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from arges.boot import sockets
from arges.errors import ArgesError
from arges.metrics import Metrics

log = logging.getLogger(__name__)

RRQ, WRQ, DATA, ACK, ERROR, OACK = 1, 2, 3, 4, 5, 6
NOT_FOUND, ACCESS_VIOLATION, ILLEGAL, UNKNOWN_TID, BAD_OPTION = 1, 2, 4, 5, 8
DEFAULT_BLKSIZE = 512
MIN_BLKSIZE, MAX_BLKSIZE = 8, 65464


class Refused(ArgesError):
    """A request that gets a TFTP ERROR packet: ``code`` and message."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class ReadRequest:
    """A parsed RRQ: file name, mode and options (lowercased names)."""

    filename: str
    mode: str
    options: dict[str, str]


def parse_request(data: bytes) -> ReadRequest:
    """Decode a request packet.

    Raises:
        Refused: for a write request, or a packet that is not a well-formed request.
    """
    if len(data) < 4:
        raise Refused(ILLEGAL, "packet too short")
    (opcode,) = struct.unpack("!H", data[:2])
    if opcode == WRQ:
        raise Refused(ACCESS_VIOLATION, "this TFTP server is read-only")
    if opcode != RRQ:
        raise Refused(ILLEGAL, f"expected a read request, got opcode {opcode}")
    fields = data[2:].split(b"\x00")
    if len(fields) < 3 or fields[-1] != b"":
        raise Refused(ILLEGAL, "malformed read request")
    try:
        parts = [f.decode("ascii") for f in fields[:-1]]
    except UnicodeDecodeError as exc:
        raise Refused(ILLEGAL, "file name and options must be ASCII") from exc
    filename, mode, rest = parts[0], parts[1].lower(), parts[2:]
    if mode not in ("octet", "netascii"):
        raise Refused(ILLEGAL, f"unsupported mode {mode!r}")
    if len(rest) % 2:
        raise Refused(ILLEGAL, "options must come in name/value pairs")
    options = {rest[i].lower(): rest[i + 1] for i in range(0, len(rest), 2)}
    return ReadRequest(filename, mode, options)


def resolve(root: Path, filename: str) -> Path:
    """The file ``filename`` names under ``root`` (``/`` and ``\\`` both separate).

    The name cannot leave the root: no absolute paths, no ``..``, no directory that
    resolves outside it. A symlink in the root that names a file is followed wherever it
    points, because whoever owns the root put it there: Debian's ``ipxe`` package ships
    ``/usr/lib/ipxe/ipxe.efi`` as a link to ``/boot/ipxe.efi``.

    Raises:
        Refused: for absolute paths, ``..``, directories outside the root, and names that
            are not files.
    """
    if not filename or filename.startswith(("/", "\\")):
        raise Refused(ACCESS_VIOLATION, "absolute paths are not served")
    parts = filename.replace("\\", "/").split("/")
    if ".." in parts:
        raise Refused(ACCESS_VIOLATION, "'..' is not allowed in paths")
    base = root.resolve()
    directory = base.joinpath(*parts[:-1]).resolve()
    if directory != base and base not in directory.parents:
        raise Refused(ACCESS_VIOLATION, "path leaves the served directory")
    path = (directory / parts[-1]).resolve()
    if not parts[-1] or not path.is_file():
        raise Refused(NOT_FOUND, f"{filename}: file not found")
    return path


def negotiate(options: dict[str, str], size: int) -> dict[str, str]:
    """The options to acknowledge (OACK); empty means plain RFC 1350.

    Raises:
        Refused: for option values out of range (error 8).
    """
    accepted: dict[str, str] = {}
    if "blksize" in options:
        try:
            blksize = int(options["blksize"])
        except ValueError as exc:
            raise Refused(BAD_OPTION, "blksize must be a number") from exc
        if blksize < MIN_BLKSIZE:
            raise Refused(BAD_OPTION, f"blksize {blksize} is below {MIN_BLKSIZE}")
        accepted["blksize"] = str(min(blksize, MAX_BLKSIZE))
    if "tsize" in options:
        accepted["tsize"] = str(size)
    if "timeout" in options:
        try:
            timeout = int(options["timeout"])
        except ValueError as exc:
            raise Refused(BAD_OPTION, "timeout must be a number") from exc
        if not 1 <= timeout <= 255:
            raise Refused(BAD_OPTION, f"timeout {timeout} is outside 1..255")
        accepted["timeout"] = str(timeout)
    return accepted


def error_packet(code: int, message: str) -> bytes:
    return struct.pack("!HH", ERROR, code) + message.encode("ascii", "replace") + b"\x00"


def oack_packet(options: dict[str, str]) -> bytes:
    body = b"".join(k.encode() + b"\x00" + v.encode() + b"\x00" for k, v in options.items())
    return struct.pack("!H", OACK) + body


class _Listener(asyncio.DatagramProtocol):
    def __init__(self, server: TftpServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Python 3.11's selector datagram transport does not subclass DatagramTransport.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        try:
            request = parse_request(data)
            path = resolve(self.server.root, request.filename)
        except Refused as exc:
            log.info("TFTP: refused %s: %s", addr[0], exc.message)
            if len(data) >= 2 and data[1] in (RRQ, WRQ):
                self.server.metrics.tftp_transfers.labels("refused").inc()
                self.transport.sendto(error_packet(exc.code, exc.message), addr)
            return
        self.server.begin(request, path, addr)


class _Channel(asyncio.DatagramProtocol):
    """One transfer's socket: keeps packets from the peer, rejects strangers."""

    def __init__(self, peer: tuple[str, int]) -> None:
        self.peer = peer
        self.inbox: asyncio.Queue[bytes] = asyncio.Queue(maxsize=64)
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Python 3.11's selector datagram transport does not subclass DatagramTransport.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if addr != self.peer:
            assert self.transport is not None
            self.transport.sendto(error_packet(UNKNOWN_TID, "unknown transfer ID"), addr)
            return
        if not self.inbox.full():
            self.inbox.put_nowait(data)


class TftpServer:
    """Serves the files under ``root`` (see the module docstring) on ``host`` (the boot
    address: never every address, see :mod:`arges.boot.sockets`)."""

    def __init__(
        self,
        root: Path,
        host: str,
        port: int = 69,
        *,
        retries: int = 5,
        default_timeout: float = 1.0,
        max_transfers: int = 256,
        metrics: Metrics | None = None,
    ) -> None:
        self.root = root
        self.metrics = metrics if metrics is not None else Metrics()
        self.host = host
        self.port = port
        self.retries = retries
        self.default_timeout = default_timeout
        self.max_transfers = max_transfers
        self._listener: asyncio.DatagramTransport | None = None
        self._transfers: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._listener, _ = await loop.create_datagram_endpoint(
            lambda: _Listener(self), sock=sockets.bound(socket.SOCK_DGRAM, self.host, self.port)
        )
        self.port = self._listener.get_extra_info("sockname")[1]
        log.info("TFTP serving %s on %s:%d", self.root, self.host, self.port)

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        for task in list(self._transfers):
            task.cancel()
        await asyncio.gather(*self._transfers, return_exceptions=True)

    def begin(self, request: ReadRequest, path: Path, peer: tuple[str, int]) -> None:
        if len(self._transfers) >= self.max_transfers:
            log.warning(
                "TFTP: %d transfers running, dropping a request from %s",
                len(self._transfers),
                peer[0],
            )
            return
        task = asyncio.create_task(self._transfer(request, path, peer))
        self._transfers.add(task)
        task.add_done_callback(self._transfers.discard)

    async def _transfer(self, request: ReadRequest, path: Path, peer: tuple[str, int]) -> None:
        loop = asyncio.get_running_loop()
        transport, channel = await loop.create_datagram_endpoint(
            lambda: _Channel(peer), sock=sockets.bound(socket.SOCK_DGRAM, self.host, 0)
        )
        try:
            data = await asyncio.to_thread(path.read_bytes)
            try:
                accepted = negotiate(request.options, len(data))
            except Refused as exc:
                self.metrics.tftp_transfers.labels("refused").inc()
                transport.sendto(error_packet(exc.code, exc.message), peer)
                return
            blksize = int(accepted.get("blksize", DEFAULT_BLKSIZE))
            timeout = float(accepted.get("timeout", self.default_timeout))
            if accepted and not await self._exchange(
                transport, channel, peer, oack_packet(accepted), 0, timeout
            ):
                return
            block = 1
            offset = 0
            while True:
                chunk = data[offset : offset + blksize]
                packet = struct.pack("!HH", DATA, block & 0xFFFF) + chunk
                if not await self._exchange(transport, channel, peer, packet, block, timeout):
                    return
                offset += blksize
                block += 1
                if len(chunk) < blksize:
                    log.info("TFTP: sent %s (%d bytes) to %s", request.filename, len(data), peer[0])
                    self.metrics.tftp_transfers.labels("complete").inc()
                    self.metrics.tftp_sent_bytes.inc(len(data))
                    return
        finally:
            transport.close()

    async def _exchange(
        self,
        transport: asyncio.DatagramTransport,
        channel: _Channel,
        peer: tuple[str, int],
        packet: bytes,
        block: int,
        wait: float,
    ) -> bool:
        """Send ``packet`` until ``block`` is acknowledged; False when the peer gave up."""
        for attempt in range(self.retries + 1):
            if attempt:
                self.metrics.tftp_retransmissions.inc()
            transport.sendto(packet, peer)
            deadline = asyncio.get_running_loop().time() + wait
            while (remaining := deadline - asyncio.get_running_loop().time()) > 0:
                try:
                    reply = await asyncio.wait_for(channel.inbox.get(), remaining)
                except TimeoutError:
                    break
                if len(reply) < 4:
                    continue
                opcode, number = struct.unpack("!HH", reply[:4])
                if opcode == ERROR:
                    log.info(
                        "TFTP: %s aborted the transfer: %s",
                        peer[0],
                        reply[4:].rstrip(b"\x00").decode("ascii", "replace"),
                    )
                    self.metrics.tftp_transfers.labels("aborted").inc()
                    return False
                if opcode == ACK and number == block & 0xFFFF:
                    return True
        log.info("TFTP: %s stopped answering at block %d", peer[0], block)
        self.metrics.tftp_transfers.labels("timeout").inc()
        return False
