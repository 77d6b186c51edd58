"""DHCP classification and replies on constructed packets, one per client type."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from scapy.layers.dhcp import BOOTP, DHCP

from arges.boot import dhcp
from arges.boot.dhcpserver import DhcpConfig, DhcpService
from arges.boot.leases import LeaseTable, PoolConfig

MAC = bytes.fromhex("525400123456")
FILES = dhcp.BootFiles("10.88.0.1", 8081)
GUID = b"\x00" + bytes(range(16))


def packet(
    message_type: int = dhcp.DISCOVER,
    *,
    vendor: bytes | None = None,
    arch: int | None = None,
    user_class: bytes | None = None,
    ipxe: bool = False,
    guid: bool = True,
    requested: str | None = None,
    ciaddr: str = "0.0.0.0",
    op: int = 1,
) -> bytes:
    options: list = [("message-type", message_type)]
    if vendor is not None:
        options.append(("vendor_class_id", vendor))
    if arch is not None:
        options.append(("pxe_client_architecture", arch.to_bytes(2, "big")))
    if guid:
        options.append(("pxe_client_machine_identifier", GUID))
    if user_class is not None:
        options.append(("user_class", user_class))
    if ipxe:
        options.append((175, b"\x01\x01\x01"))
    if requested:
        options.append(("requested_addr", requested))
    options.append("end")
    return bytes(
        BOOTP(op=op, xid=0xCAFE, flags=0x8000, ciaddr=ciaddr, chaddr=MAC + bytes(10))
        / DHCP(options=options)
    )


def options_of(data: bytes) -> dict:
    return {o[0]: o[1] for o in BOOTP(data)[DHCP].options if isinstance(o, tuple)}


CASES = [
    (
        "bios",
        packet(vendor=b"PXEClient:Arch:00000:UNDI:002001", arch=0),
        dhcp.Firmware.BIOS,
        "undionly.kpxe",
        True,
        b"PXEClient",
    ),
    (
        "uefi x64 (7)",
        packet(vendor=b"PXEClient:Arch:00007:UNDI:003016", arch=7),
        dhcp.Firmware.UEFI_X64,
        "ipxe.efi",
        True,
        b"PXEClient",
    ),
    (
        "uefi x64 (9)",
        packet(vendor=b"PXEClient:Arch:00009:UNDI:003016", arch=9),
        dhcp.Firmware.UEFI_X64,
        "ipxe.efi",
        True,
        b"PXEClient",
    ),
    (
        "uefi http",
        packet(vendor=b"HTTPClient:Arch:00016:UNDI:003001", arch=16),
        dhcp.Firmware.UEFI_X64_HTTP,
        "http://10.88.0.1:8081/tftp/ipxe.efi",
        False,
        b"HTTPClient",
    ),
    (
        "ipxe by user class",
        packet(vendor=b"PXEClient:Arch:00000:UNDI:002001", arch=0, user_class=b"iPXE"),
        dhcp.Firmware.IPXE,
        "http://10.88.0.1:8081/boot.ipxe",
        False,
        b"PXEClient",
    ),
    (
        "ipxe by option 175",
        packet(ipxe=True),
        dhcp.Firmware.IPXE,
        "http://10.88.0.1:8081/boot.ipxe",
        False,
        b"PXEClient",
    ),
]


@pytest.mark.parametrize(
    ("name", "raw", "firmware", "file", "tftp", "vendor"), CASES, ids=[c[0] for c in CASES]
)
def test_each_client_type_gets_its_boot_file(name, raw, firmware, file, tftp, vendor) -> None:
    request = dhcp.parse(raw)
    client = dhcp.classify(request)
    assert client is not None and client.firmware == firmware
    target = dhcp.boot_target(client, FILES)
    assert target == dhcp.BootTarget(file, tftp, vendor)
    reply = BOOTP(dhcp.reply(request, target, FILES, message_type=dhcp.OFFER))
    opts = options_of(bytes(reply))
    assert reply.op == 2 and reply.xid == 0xCAFE and bytes(reply.chaddr)[:6] == MAC
    assert reply.yiaddr == "0.0.0.0", "a ProxyDHCP reply never carries an address"
    assert reply.siaddr == "10.88.0.1" and reply.file.rstrip(b"\0") == file.encode()
    assert opts["message-type"] == dhcp.OFFER and opts["server_id"] == "10.88.0.1"
    assert opts["vendor_class_id"] == vendor and opts["boot-file-name"] == file.encode()
    assert opts["pxe_client_machine_identifier"] == GUID
    assert ("vendor_specific" in opts) == (
        vendor == b"PXEClient" and firmware != dhcp.Firmware.IPXE
    )
    assert ("subnet_mask" not in opts) and ("lease_time" not in opts)


@pytest.mark.parametrize(
    "raw",
    [
        packet(),
        packet(vendor=b"MSFT 5.0"),
        packet(vendor=b"PXEClient:Arch:00006:UNDI:003016", arch=6),
        packet(vendor=b"PXEClient:Arch:00011:UNDI:003016", arch=11),
    ],
    ids=["plain client", "windows", "uefi ia32", "arm64 without binaries"],
)
def test_other_clients_are_left_to_the_site_dhcp_server(raw) -> None:
    client = dhcp.classify(dhcp.parse(raw))
    assert client is None or dhcp.boot_target(client, FILES) is None


def test_arm64_is_answered_when_its_binary_is_configured() -> None:
    files = dhcp.BootFiles("10.88.0.1", arm64_binary="snp-arm64.efi")
    client = dhcp.classify(dhcp.parse(packet(vendor=b"PXEClient:Arch:00011", arch=11)))
    assert client is not None and dhcp.boot_target(client, files).file == "snp-arm64.efi"


@pytest.mark.parametrize(
    "raw", [b"", b"\x01\x02garbage", b"\x01" * 300, packet(op=2, vendor=b"PXEClient", arch=0)]
)
def test_malformed_packets_are_refused(raw) -> None:
    with pytest.raises(dhcp.Malformed):
        dhcp.parse(raw)


def proxy() -> DhcpService:
    return DhcpService(DhcpConfig("proxy", FILES, port=10067, proxy_port=14011))


def test_proxy_mode_answers_discover_on_67_and_request_on_4011_only() -> None:
    svc = proxy()
    bios = {"vendor": b"PXEClient:Arch:00000", "arch": 0}
    offer, dest = svc.handle(packet(dhcp.DISCOVER, **bios), 10067)
    assert dest == ("255.255.255.255", 68) and options_of(offer)["message-type"] == dhcp.OFFER
    assert svc.handle(packet(dhcp.REQUEST, **bios), 10067) is None, "the site server acks"
    ack, _ = svc.handle(packet(dhcp.REQUEST, ciaddr="10.88.0.150", **bios), 14011)
    assert options_of(ack)["message-type"] == dhcp.ACK
    assert svc.handle(packet(dhcp.DISCOVER), 10067) is None


def full(tmp_path: Path, **pool) -> DhcpService:
    config = PoolConfig("10.88.0.0/24", "10.88.0.100", "10.88.0.101", "10.88.0.1", **pool)
    return DhcpService(DhcpConfig("full", FILES, pool=config, lease_file=tmp_path / "leases.json"))


def test_full_mode_leases_addresses_durably(tmp_path: Path) -> None:
    svc = full(tmp_path)
    offer, _ = svc.handle(packet(dhcp.DISCOVER, vendor=b"PXEClient", arch=0), 67)
    reply = BOOTP(offer)
    assert reply.yiaddr == "10.88.0.100"
    opts = options_of(offer)
    assert opts["subnet_mask"] == "255.255.255.0" and opts["router"] == "10.88.0.1"
    assert opts["boot-file-name"] == b"undionly.kpxe"
    ack, _ = svc.handle(packet(dhcp.REQUEST, requested="10.88.0.100"), 67)
    assert options_of(ack)["message-type"] == dhcp.ACK and "boot-file-name" not in options_of(ack)
    assert (
        json.loads((tmp_path / "leases.json").read_text())["52:54:00:12:34:56"]["address"]
        == "10.88.0.100"
    )
    again = full(tmp_path)
    assert BOOTP(again.handle(packet(dhcp.DISCOVER), 67)[0]).yiaddr == "10.88.0.100"
    nak, _ = again.handle(packet(dhcp.REQUEST, requested="10.88.0.101"), 67)
    assert options_of(nak)["message-type"] == dhcp.NAK


def test_reservations_and_exhaustion(tmp_path: Path) -> None:
    table = LeaseTable(
        tmp_path / "l.json",
        PoolConfig(
            "10.88.0.0/24",
            "10.88.0.100",
            "10.88.0.100",
            reservations=(("52:54:00:00:00:09", "10.88.0.50"),),
        ),
    )
    assert table.offer("52:54:00:00:00:09") == "10.88.0.50"
    assert table.offer("52:54:00:00:00:01") == "10.88.0.100"
    assert table.commit("52:54:00:00:00:01", "10.88.0.100")
    with pytest.raises(Exception, match="no free address"):
        table.offer("52:54:00:00:00:02")
    assert not table.commit("52:54:00:00:00:02", "10.88.0.100")
    table.release("52:54:00:00:00:01")
    assert table.offer("52:54:00:00:00:02") == "10.88.0.100"
