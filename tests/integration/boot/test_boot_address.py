"""The boot HTTP and TFTP ports listen on the boot address they are given, not on every
address of the host (here: 127.0.0.1 answers, 127.0.0.2, the same loopback device, does not),
and start even when that address is not configured yet."""

from __future__ import annotations

import asyncio
import socket
import struct
from pathlib import Path

import aiohttp
import pytest

from arges.access.guard import BootGuard
from arges.boot.decider import KubeBootDecider
from arges.boot.http import BootHttp, HttpConfig
from arges.boot.tftp import DATA, RRQ
from arges.boot.tftpserver import TftpServer
from arges.plane import ManagementPlane

UNCONFIGURED = "192.0.2.77"
"""TEST-NET-1: an address no interface of the test host has."""


async def test_boot_http_answers_on_its_address_only(
    plane: ManagementPlane, tmp_path: Path
) -> None:
    assert plane.kube is not None
    guard = BootGuard(plane.kube)
    http = BootHttp(
        HttpConfig("127.0.0.1", 0, tftp_root=tmp_path),
        KubeBootDecider(plane.kube, guard),
        plane.assets,
        admission=guard,
    )
    await http.start()
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{http.port}/boot.ipxe") as resp:
                assert resp.status == 200
            with pytest.raises(aiohttp.ClientConnectorError):
                await session.get(f"http://127.0.0.2:{http.port}/boot.ipxe")
    finally:
        await http.stop()
    later = BootHttp(
        HttpConfig(UNCONFIGURED, 0, tftp_root=tmp_path), KubeBootDecider(plane.kube, guard),
        plane.assets, admission=guard,
    )  # fmt: skip
    await later.start()
    await later.stop()


def read_request(address: str, port: int, *, connected: bool = False) -> bytes:
    """A TFTP read request for ``ipxe.efi`` to ``address:port``, and the first answer (which
    comes from another port, the transfer's own); ``connected``: a socket connected to
    ``address:port``, to which an ICMP port unreachable is an error."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        request = struct.pack("!H", RRQ) + b"ipxe.efi\x00octet\x00"
        if connected:
            sock.connect((address, port))
            sock.send(request)
        else:
            sock.sendto(request, (address, port))
        return sock.recv(1024)


async def test_tftp_answers_on_its_address_only(tmp_path: Path) -> None:
    (tmp_path / "ipxe.efi").write_bytes(b"x" * 100)
    server = TftpServer(tmp_path, "127.0.0.1", 0)
    await server.start()
    try:
        answer = await asyncio.to_thread(read_request, "127.0.0.1", server.port)
        assert struct.unpack("!H", answer[:2])[0] == DATA
        with pytest.raises(ConnectionRefusedError):
            await asyncio.to_thread(read_request, "127.0.0.2", server.port, connected=True)
    finally:
        await server.stop()
    later = TftpServer(tmp_path, UNCONFIGURED, 0)
    await later.start()
    await later.stop()
