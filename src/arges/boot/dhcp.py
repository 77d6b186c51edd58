"""DHCP for network boot, as pure functions: parse a request, classify the client, build a reply.

Packets are decoded and encoded with scapy's BOOTP/DHCP layers (a well-kept codec that knows
the PXE options by name); this module decides what to say.

Who gets an answer (``classify``): clients whose vendor class (option 60) starts with
``PXEClient`` (PXE firmware, architecture in option 93) or ``HTTPClient`` (UEFI HTTP boot),
and iPXE (user class ``iPXE`` in option 77, or its option 175). Everyone else is not a
network-boot client and is ignored, so the site's DHCP server keeps its job.

What they get (``boot_target``):

========================  =====================================================
BIOS PXE (arch 0)          ``undionly.kpxe`` over TFTP
UEFI x86-64 PXE (7, 9)     ``ipxe.efi`` (or ``snponly.efi``) over TFTP
UEFI x86-64 HTTP (16)      ``http://<arges>:<port>/tftp/ipxe.efi``
UEFI arm64 PXE/HTTP (11/19) the arm64 binary, only when one is configured
iPXE (any architecture)    ``http://<arges>:<port>/boot.ipxe``
========================  =====================================================

ProxyDHCP replies (PXE 2.1, section 2.2.2) carry boot information only, never an address
(``yiaddr`` 0.0.0.0): option 60 ``PXEClient`` (``HTTPClient`` for HTTP boot), the server
identifier, the boot file in ``file`` and option 67, ``siaddr``/option 66 for TFTP, the
client's GUID (option 97) echoed, and PXE option 43 sub-option 6 = 8 ("use the boot file,
skip boot server discovery"). Full-DHCP replies add an address, mask, router and lease time.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from enum import Enum
from typing import Any

from scapy.layers.dhcp import BOOTP, DHCP

from arges.errors import ArgesError

log = logging.getLogger(__name__)

DISCOVER, OFFER, REQUEST, DECLINE, ACK, NAK, RELEASE, INFORM = 1, 2, 3, 4, 5, 6, 7, 8
MIN_LENGTH = 240
"""BOOTP header (236 bytes) plus the DHCP magic cookie."""
PXE_SKIP_DISCOVERY = b"\x06\x01\x08\xff"
"""Option 43: PXE_DISCOVERY_CONTROL (6) = 8, then END: boot the file named in this reply."""


class Firmware(Enum):
    """What kind of network-boot client sent a request."""

    BIOS = "bios"
    UEFI_X64 = "uefi-x64"
    UEFI_X64_HTTP = "uefi-x64-http"
    UEFI_ARM64 = "uefi-arm64"
    UEFI_ARM64_HTTP = "uefi-arm64-http"
    IPXE = "ipxe"


ARCHITECTURES = {
    0: Firmware.BIOS,
    7: Firmware.UEFI_X64,
    9: Firmware.UEFI_X64,
    11: Firmware.UEFI_ARM64,
    16: Firmware.UEFI_X64_HTTP,
    19: Firmware.UEFI_ARM64_HTTP,
}
"""Option 93 values (RFC 4578, IANA "Processor Architecture Types") Arges can boot."""


class Malformed(ArgesError, ValueError):
    """A packet that is not a well-formed DHCP request (dropped, and logged)."""


@dataclass(frozen=True)
class Request:
    """The parts of a DHCP request that boot decisions use."""

    message_type: int
    xid: int
    flags: int
    mac: str
    ciaddr: str
    giaddr: str
    vendor_class: bytes
    user_class: bytes
    architecture: int | None
    guid: bytes | None
    ipxe: bool
    requested_address: str | None
    packet: BOOTP


@dataclass(frozen=True)
class Client:
    """A classified network-boot client."""

    firmware: Firmware
    request: Request


@dataclass(frozen=True)
class BootTarget:
    """Where a client's next stage comes from: a TFTP file name (with the TFTP server in
    ``siaddr``) or an HTTP URL; ``vendor_class`` is what the reply's option 60 says."""

    file: str
    tftp: bool
    vendor_class: bytes


@dataclass(frozen=True)
class BootFiles:
    """The boot files offered, and where Arges listens."""

    address: str
    http_port: int = 8081
    uefi_binary: str = "ipxe.efi"
    bios_binary: str = "undionly.kpxe"
    arm64_binary: str | None = None

    def url(self, path: str) -> str:
        """The boot HTTP URL of ``path`` (which starts with ``/``) at this boot address."""
        return f"http://{self.address}:{self.http_port}{path}"


def _options(packet: BOOTP) -> dict[Any, Any]:
    out: dict[Any, Any] = {}
    for item in packet[DHCP].options:
        if isinstance(item, tuple) and len(item) >= 2:
            out[item[0]] = item[1] if len(item) == 2 else item[1:]
    return out


def parse(data: bytes) -> Request:
    """Decode a DHCP request.

    Raises:
        Malformed: for anything that is not a BOOTREQUEST carrying DHCP options.
    """
    if len(data) < MIN_LENGTH:
        raise Malformed(f"{len(data)} bytes is shorter than a DHCP packet")
    try:
        packet = BOOTP(data)
        if not packet.haslayer(DHCP) or packet.op != 1:
            raise Malformed("not a BOOTREQUEST with DHCP options")
        opts = _options(packet)
        arch_raw = opts.get("pxe_client_architecture")
        architecture = (
            int.from_bytes(arch_raw[:2], "big")
            if isinstance(arch_raw, bytes) and len(arch_raw) >= 2
            else None
        )
        message_type = opts.get("message-type")
        if not isinstance(message_type, int):
            raise Malformed("no DHCP message type")
        guid = opts.get("pxe_client_machine_identifier")
        user_class = opts.get("user_class", b"")
        requested = opts.get("requested_addr")
        return Request(
            message_type=message_type,
            xid=int(packet.xid),
            flags=int(packet.flags),
            mac=bytes(packet.chaddr)[:6].hex(":"),
            ciaddr=str(packet.ciaddr),
            giaddr=str(packet.giaddr),
            vendor_class=_bytes(opts.get("vendor_class_id", b"")),
            user_class=_bytes(user_class),
            architecture=architecture,
            guid=guid if isinstance(guid, bytes) else None,
            ipxe=175 in opts or _bytes(user_class).rstrip(b"\x00").endswith(b"iPXE"),
            requested_address=str(requested) if requested else None,
            packet=packet,
        )
    except Malformed:
        raise
    except Exception as exc:
        raise Malformed(f"undecodable: {exc}") from exc


def _bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    return b""


def classify(request: Request) -> Client | None:
    """The kind of network-boot client, or None for clients Arges must leave alone."""
    if request.ipxe:
        return Client(Firmware.IPXE, request)
    vendor = request.vendor_class
    if not vendor.startswith((b"PXEClient", b"HTTPClient")):
        return None
    firmware = ARCHITECTURES.get(request.architecture if request.architecture is not None else 0)
    if firmware is None:
        return None
    if vendor.startswith(b"HTTPClient") and firmware == Firmware.UEFI_X64:
        firmware = Firmware.UEFI_X64_HTTP
    return Client(firmware, request)


def boot_target(client: Client, files: BootFiles) -> BootTarget | None:
    """What ``client`` should load next (see the module docstring), or None when Arges has
    nothing for its architecture."""
    fw = client.firmware
    if fw is Firmware.IPXE:
        return BootTarget(files.url("/boot.ipxe"), tftp=False, vendor_class=b"PXEClient")
    if fw is Firmware.BIOS:
        return BootTarget(files.bios_binary, tftp=True, vendor_class=b"PXEClient")
    if fw is Firmware.UEFI_X64:
        return BootTarget(files.uefi_binary, tftp=True, vendor_class=b"PXEClient")
    if fw is Firmware.UEFI_X64_HTTP:
        return BootTarget(files.url(f"/tftp/{files.uefi_binary}"), False, b"HTTPClient")
    if files.arm64_binary is None:
        return None
    if fw is Firmware.UEFI_ARM64:
        return BootTarget(files.arm64_binary, tftp=True, vendor_class=b"PXEClient")
    return BootTarget(files.url(f"/tftp/{files.arm64_binary}"), False, b"HTTPClient")


@dataclass(frozen=True)
class Lease:
    """An address handed out in full-DHCP mode, with the network's parameters."""

    address: str
    network: str
    router: str | None
    lease_time: int


def reply(
    request: Request,
    target: BootTarget | None,
    files: BootFiles,
    *,
    message_type: int,
    lease: Lease | None = None,
) -> bytes:
    """The encoded reply: ProxyDHCP (boot information only) when ``lease`` is None, a full
    DHCP offer or ack otherwise; without ``target`` (full mode, a client that is not booting
    from the network) it carries no boot information."""
    options: list[Any] = [("message-type", message_type), ("server_id", files.address)]
    if target is not None:
        options.append(("vendor_class_id", target.vendor_class))
    if lease is not None:
        net = ipaddress.IPv4Network(lease.network)
        options += [("subnet_mask", str(net.netmask)), ("lease_time", lease.lease_time)]
        if lease.router:
            options.append(("router", lease.router))
    if target is not None:
        if request.guid is not None:
            options.append(("pxe_client_machine_identifier", request.guid))
        if target.tftp:
            options.append(("tftp_server_name", files.address.encode()))
        options.append(("boot-file-name", target.file.encode()))
        if target.vendor_class == b"PXEClient" and not request.ipxe:
            options.append(("vendor_specific", PXE_SKIP_DISCOVERY))
    options.append("end")
    packet = BOOTP(
        op=2,
        xid=request.xid,
        flags=request.flags,
        ciaddr=request.ciaddr,
        yiaddr=lease.address if lease is not None else "0.0.0.0",
        siaddr=files.address,
        giaddr=request.giaddr,
        chaddr=bytes(request.packet.chaddr),
        file=target.file.encode()[:128] if target is not None else b"",
    ) / DHCP(options=options)
    return bytes(packet)


def nak(request: Request, server: str) -> bytes:
    """A DHCPNAK (full-DHCP mode: the requested address is not the client's)."""
    packet = BOOTP(
        op=2,
        xid=request.xid,
        flags=request.flags,
        giaddr=request.giaddr,
        chaddr=bytes(request.packet.chaddr),
    ) / DHCP(options=[("message-type", NAK), ("server_id", server), "end"])
    return bytes(packet)
