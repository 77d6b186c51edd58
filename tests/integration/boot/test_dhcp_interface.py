"""ProxyDHCP pinned to a provisioning link that appears, and is recreated, while it runs.

``arges up --dhcp-interface arges0`` starts before ``arges lab up`` creates arges0, and the
lab's ``down`` and ``up`` replace the link (a new ifindex) while Arges keeps running.
A veth pair stands for the link: PXE requests go in at one end, Arges listens on the other.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
from collections.abc import Iterator

import pytest
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from arges.boot import dhcp
from arges.boot.dhcpserver import DhcpConfig, DhcpService

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="creating links needs root"),
]

SERVICE_LINK, CLIENT_LINK = f"argt{os.getpid() % 10000}s", f"argt{os.getpid() % 10000}c"
SERVER_PORT, PROXY_PORT, CLIENT_PORT = 20067, 24011, 20068


def ip(*argv: str) -> None:
    subprocess.run(["ip", *argv], check=True, capture_output=True)


def create_link() -> None:
    ip("link", "add", SERVICE_LINK, "type", "veth", "peer", "name", CLIENT_LINK)
    ip("addr", "add", "10.251.0.1/30", "dev", SERVICE_LINK)
    for link in (SERVICE_LINK, CLIENT_LINK):
        ip("link", "set", link, "up")


def delete_link() -> None:
    subprocess.run(["ip", "link", "del", SERVICE_LINK], capture_output=True, check=False)


@pytest.fixture
def link() -> Iterator[None]:
    delete_link()
    try:
        yield
    finally:
        delete_link()


def discover(xid: int) -> BOOTP:
    return BOOTP(
        op=1, xid=xid, flags=0x8000, chaddr=bytes.fromhex("525400aabbcc") + bytes(10)
    ) / DHCP(
        options=[
            ("message-type", dhcp.DISCOVER),
            ("vendor_class_id", b"PXEClient:Arch:00007:UNDI:003000"),
            ("pxe_client_architecture", b"\x00\x07"),
            "end",
        ]
    )


async def offered(xid: int) -> bool:
    """Broadcast a PXE DHCPDISCOVER from the client end, from 0.0.0.0 as firmware does (a raw
    socket: the link has no address of its own); True when a ProxyDHCP offer comes back."""
    frame = (
        Ether(src="52:54:00:aa:bb:cc", dst="ff:ff:ff:ff:ff:ff")
        / IP(src="0.0.0.0", dst="255.255.255.255")
        / UDP(sport=CLIENT_PORT, dport=SERVER_PORT)
        / discover(xid)
    )
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003)) as sock:
        sock.bind((CLIENT_LINK, 0))
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.sock_sendall(sock, bytes(frame))
        try:
            async with asyncio.timeout(1):
                while True:
                    packet = Ether(await loop.sock_recv(sock, 4096))
                    if UDP in packet and packet[UDP].dport == CLIENT_PORT:
                        # scapy dissects BOOTP on ports 67 and 68 only.
                        reply = BOOTP(bytes(packet[UDP].payload))
                        if reply.op == 2 and reply.xid == xid:
                            return bytes(reply.file).rstrip(b"\0") == b"ipxe.efi"
        except TimeoutError:
            return False


async def until_offered(xid: int, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await offered(xid):
        assert asyncio.get_running_loop().time() < deadline, "no ProxyDHCP offer on the link"


async def test_dhcp_waits_for_its_interface_and_follows_it_when_recreated(link: None) -> None:
    service = DhcpService(
        DhcpConfig(
            mode="proxy",
            files=dhcp.BootFiles("10.251.0.1", 8081),
            interface=SERVICE_LINK,
            port=SERVER_PORT,
            proxy_port=PROXY_PORT,
            client_port=CLIENT_PORT,
            interface_poll=0.2,
        )
    )
    await service.start()
    try:
        create_link()
        await until_offered(1)
        delete_link()
        await asyncio.sleep(0.5)
        create_link()
        await until_offered(2)
    finally:
        await service.stop()
