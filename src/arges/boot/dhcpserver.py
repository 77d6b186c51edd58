"""The DHCP service: ProxyDHCP beside the site's DHCP server, or a full DHCP server.

``proxy`` mode (the default) answers network-boot clients only, with boot information only:
DHCPDISCOVER on port 67 gets a ProxyDHCP offer (broadcast, as the client has no address
yet), and the DHCPREQUEST some firmware then sends to port 4011 gets an ack (unicast back).
``full`` mode is for a provisioning network Arges owns: every client gets an address from
the pool (reservations first, leases kept on disk), and boot clients also get boot files.

Every request heard is noted in ``sightings`` (MAC, option-97 UUID, and the address it
asked the site's server for in proxy mode, or leased from Arges in full mode), which is what
the boot credentials check requesters against (:mod:`arges.access`).

Malformed packets are logged and dropped; one bad packet never stops the service. Binding
port 67 needs root; ``interface`` pins the sockets to the provisioning NIC. That NIC may
come and go while Arges runs (the lab's ``arges0`` does, with ``arges lab up`` and
``down``): the service listens once it exists and rebinds when it is recreated.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast

from arges.access.sightings import Sightings
from arges.boot import dhcp
from arges.boot.leases import LeaseTable, PoolConfig, PoolExhausted
from arges.metrics import Metrics
from arges.tasks import cancel_and_wait

log = logging.getLogger(__name__)

Mode = Literal["proxy", "full"]


@dataclass(frozen=True)
class DhcpConfig:
    """How the DHCP service runs."""

    mode: Mode
    files: dhcp.BootFiles
    interface: str | None = None
    listen: str = "0.0.0.0"
    port: int = 67
    proxy_port: int = 4011
    client_port: int = 68
    pool: PoolConfig | None = None
    lease_file: Path | None = None
    interface_poll: float = 2.0
    """Seconds between checks that ``interface`` is still the link the sockets are bound to."""
    sightings: Sightings | None = None
    """Where every request heard is noted (:mod:`arges.access.sightings`)."""


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, service: DhcpService, port: int) -> None:
        self.service = service
        self.port = port
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Python 3.11's selector datagram transport does not subclass DatagramTransport.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        try:
            answer = self.service.handle(data, self.port)
        except dhcp.Malformed as exc:
            log.info("dropped a malformed DHCP packet from %s: %s", addr[0], exc)
            return
        except Exception:
            log.exception("dropped a DHCP packet from %s that could not be handled", addr[0])
            return
        if answer is not None:
            payload, destination = answer
            if self.port == self.service.config.proxy_port:
                destination = addr
            self.transport.sendto(payload, destination)


class DhcpService:
    """The DHCP service (see the module docstring)."""

    def __init__(self, config: DhcpConfig, metrics: Metrics | None = None) -> None:
        self.config = config
        self.metrics = metrics if metrics is not None else Metrics()
        self.leases: LeaseTable | None = None
        if config.mode == "full":
            if config.pool is None or config.lease_file is None:
                raise ValueError("full DHCP mode needs a pool and a lease file")
            self.leases = LeaseTable(config.lease_file, config.pool)
        self._transports: list[asyncio.DatagramTransport] = []
        self._index: int | None = None
        self._follower: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Listen; with an ``interface`` that does not exist yet, listen once it appears.

        Raises:
            OSError: a port cannot be bound (PermissionError below 1024 without root).
        """
        interface = self.config.interface
        self._index = _interface_index(interface) if interface else None
        if interface and self._index is None:
            # Fail now on what would fail later (no root, port taken), then wait for the link.
            for sock in self._sockets(device=False):
                sock.close()
            log.warning("DHCP: interface %s does not exist yet; listening once it does", interface)
        else:
            await self._listen()
        if interface:
            self._follower = asyncio.create_task(self._follow(interface), name="dhcp-interface")

    async def stop(self) -> None:
        """Stop watching for the interface and close the DHCP sockets."""
        if self._follower is not None:
            await cancel_and_wait(self._follower)
            self._follower = None
        self._close()

    def _sockets(self, *, device: bool) -> list[socket.socket]:
        ports = [self.config.port]
        if self.config.mode == "proxy":
            ports.append(self.config.proxy_port)
        sockets: list[socket.socket] = []
        try:
            for port in ports:
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sockets.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
                if device and self.config.interface:
                    sock.setsockopt(
                        socket.SOL_SOCKET, socket.SO_BINDTODEVICE, self.config.interface.encode()
                    )
                sock.bind((self.config.listen, port))
        except OSError:
            for sock in sockets:
                sock.close()
            raise
        return sockets

    async def _listen(self) -> None:
        loop = asyncio.get_running_loop()
        sockets = self._sockets(device=True)
        for sock in sockets:
            port = sock.getsockname()[1]
            transport, _ = await loop.create_datagram_endpoint(
                functools.partial(_Protocol, self, port), sock=sock
            )
            self._transports.append(transport)
        where = f" on {self.config.interface}" if self.config.interface else ""
        ports = [s.getsockname()[1] for s in sockets]
        log.info("DHCP (%s mode) listening%s on port(s) %s", self.config.mode, where, ports)

    def _close(self) -> None:
        for transport in self._transports:
            transport.close()
        self._transports.clear()

    async def _follow(self, interface: str) -> None:
        """Rebind whenever ``interface`` appears, or is replaced by a new link of that name:
        a socket bound to a device keeps its old index and would never hear the new one."""
        while True:
            await asyncio.sleep(self.config.interface_poll)
            index = _interface_index(interface)
            if index == self._index:
                continue
            self._close()
            self._index = index
            if index is None:
                log.warning("DHCP: interface %s went away; listening once it is back", interface)
                continue
            try:
                await self._listen()
            except OSError as exc:
                log.error("DHCP: cannot listen on %s: %s; retrying", interface, exc)
                self._index = None

    def handle(self, data: bytes, port: int) -> tuple[bytes, tuple[str, int]] | None:
        """The reply to one packet received on ``port`` and where to send it, or None.

        Raises:
            dhcp.Malformed: for a packet that does not decode.
        """
        request = dhcp.parse(data)
        if self.config.sightings is not None and self.config.mode == "proxy":
            asked = request.requested_address or request.ciaddr
            self.config.sightings.record(
                request.mac, request.guid, asked if request.message_type == dhcp.REQUEST else None
            )
        client = dhcp.classify(request)
        files = self.config.files
        target = dhcp.boot_target(client, files) if client is not None else None
        if self.config.mode == "proxy":
            if target is None:
                return None
            if port == self.config.port and request.message_type == dhcp.DISCOVER:
                message_type = dhcp.OFFER
            elif port == self.config.proxy_port and request.message_type in (
                dhcp.REQUEST,
                dhcp.INFORM,
            ):
                message_type = dhcp.ACK
            else:
                return None
            payload = dhcp.reply(request, target, files, message_type=message_type)
            self.metrics.dhcp_reply("proxy", "offer" if message_type == dhcp.OFFER else "ack")
            assert client is not None
            log.info(
                "ProxyDHCP %s on port %d: %s (%s) -> %s",
                "offer" if message_type == dhcp.OFFER else "ack",
                port,
                request.mac,
                client.firmware.value,
                target.file,
            )
            return payload, self._destination(request)
        return self._full(request, target)

    def _full(
        self, request: dhcp.Request, target: dhcp.BootTarget | None
    ) -> tuple[bytes, tuple[str, int]] | None:
        assert self.leases is not None and self.config.pool is not None
        pool = self.config.pool
        files = self.config.files
        mac = request.mac
        if request.message_type == dhcp.RELEASE:
            self.leases.release(mac)
            return None
        if request.message_type not in (dhcp.DISCOVER, dhcp.REQUEST):
            return None
        if self.config.sightings is not None and request.message_type == dhcp.DISCOVER:
            self.config.sightings.record(mac, request.guid, None)
        try:
            address = self.leases.offer(mac)
        except PoolExhausted as exc:
            log.warning("DHCP: %s gets nothing: %s", mac, exc)
            return None
        lease = dhcp.Lease(address, pool.network, pool.router, pool.lease_time)
        if request.message_type == dhcp.DISCOVER:
            payload = dhcp.reply(request, target, files, message_type=dhcp.OFFER, lease=lease)
            self.metrics.dhcp_reply("full", "offer")
            return payload, self._destination(request)
        wanted = request.requested_address or (
            request.ciaddr if request.ciaddr != "0.0.0.0" else None
        )
        if wanted not in (None, address) or not self.leases.commit(mac, address):
            log.info("DHCP: NAK to %s (asked for %s, holds %s)", mac, wanted, address)
            self.metrics.dhcp_reply("full", "nak")
            return dhcp.nak(request, files.address), self._destination(request)
        log.info("DHCP: %s leases %s%s", mac, address, f" -> {target.file}" if target else "")
        if self.config.sightings is not None:
            self.config.sightings.record(mac, request.guid, address)
        payload = dhcp.reply(request, target, files, message_type=dhcp.ACK, lease=lease)
        self.metrics.dhcp_reply("full", "ack")
        return payload, self._destination(request)

    def _destination(self, request: dhcp.Request) -> tuple[str, int]:
        if request.giaddr != "0.0.0.0":
            return request.giaddr, self.config.port
        if request.ciaddr != "0.0.0.0":
            return request.ciaddr, self.config.client_port
        return "255.255.255.255", self.config.client_port


def _interface_index(name: str) -> int | None:
    try:
        return socket.if_nametoindex(name)
    except OSError:
        return None
