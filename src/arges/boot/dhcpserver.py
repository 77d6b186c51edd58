"""The DHCP service: ProxyDHCP beside the site's DHCP server, or a full DHCP server.

``proxy`` mode (the default) answers network-boot clients only, with boot information only:
DHCPDISCOVER on port 67 gets a ProxyDHCP offer (broadcast, as the client has no address
yet), and the DHCPREQUEST some firmware then sends to port 4011 gets an ack (unicast back).
``full`` mode is for a provisioning network Arges owns: every client gets an address from
the pool (reservations first, leases kept on disk), and boot clients also get boot files.

Malformed packets are logged and dropped; one bad packet never stops the service. Binding
port 67 needs root; ``interface`` pins the sockets to the provisioning NIC.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast

from arges.boot import dhcp
from arges.boot.leases import LeaseTable, PoolConfig, PoolExhausted

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

    def __init__(self, config: DhcpConfig) -> None:
        self.config = config
        self.leases: LeaseTable | None = None
        if config.mode == "full":
            if config.pool is None or config.lease_file is None:
                raise ValueError("full DHCP mode needs a pool and a lease file")
            self.leases = LeaseTable(config.lease_file, config.pool)
        self._transports: list[asyncio.DatagramTransport] = []

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        ports = [self.config.port]
        if self.config.mode == "proxy":
            ports.append(self.config.proxy_port)
        for port in ports:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            if self.config.interface:
                sock.setsockopt(
                    socket.SOL_SOCKET, socket.SO_BINDTODEVICE, self.config.interface.encode()
                )
            sock.bind((self.config.listen, port))
            transport, _ = await loop.create_datagram_endpoint(
                functools.partial(_Protocol, self, port), sock=sock
            )
            self._transports.append(transport)
        log.info("DHCP (%s mode) listening on port(s) %s", self.config.mode, ports)

    async def stop(self) -> None:
        for transport in self._transports:
            transport.close()
        self._transports.clear()

    def handle(self, data: bytes, port: int) -> tuple[bytes, tuple[str, int]] | None:
        """The reply to one packet received on ``port`` and where to send it, or None.

        Raises:
            dhcp.Malformed: for a packet that does not decode.
        """
        request = dhcp.parse(data)
        client = dhcp.classify(request)
        files = self.config.files
        target = dhcp.boot_target(client, files) if client is not None else None
        if self.config.mode == "proxy":
            if target is None:
                return None
            if port == self.config.port and request.message_type == dhcp.DISCOVER:
                payload = dhcp.reply(request, target, files, message_type=dhcp.OFFER)
            elif port == self.config.proxy_port and request.message_type in (
                dhcp.REQUEST,
                dhcp.INFORM,
            ):
                payload = dhcp.reply(request, target, files, message_type=dhcp.ACK)
            else:
                return None
            assert client is not None
            log.info("ProxyDHCP: %s (%s) -> %s", request.mac, client.firmware.value, target.file)
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
        try:
            address = self.leases.offer(mac)
        except PoolExhausted as exc:
            log.warning("DHCP: %s gets nothing: %s", mac, exc)
            return None
        lease = dhcp.Lease(address, pool.network, pool.router, pool.lease_time)
        if request.message_type == dhcp.DISCOVER:
            payload = dhcp.reply(request, target, files, message_type=dhcp.OFFER, lease=lease)
            return payload, self._destination(request)
        wanted = request.requested_address or (
            request.ciaddr if request.ciaddr != "0.0.0.0" else None
        )
        if wanted not in (None, address) or not self.leases.commit(mac, address):
            log.info("DHCP: NAK to %s (asked for %s, holds %s)", mac, wanted, address)
            return dhcp.nak(request, files.address), self._destination(request)
        log.info("DHCP: %s leases %s%s", mac, address, f" -> {target.file}" if target else "")
        payload = dhcp.reply(request, target, files, message_type=dhcp.ACK, lease=lease)
        return payload, self._destination(request)

    def _destination(self, request: dhcp.Request) -> tuple[str, int]:
        if request.giaddr != "0.0.0.0":
            return request.giaddr, self.config.port
        if request.ciaddr != "0.0.0.0":
            return request.ciaddr, self.config.client_port
        return "255.255.255.255", self.config.client_port
