"""What Arges' DHCP service saw: recent requests by hardware address, kept in memory.

Every DHCP request that reaches the DHCP or ProxyDHCP socket is noted, network-boot client
or not (Talos' and the agent's own DHCP are not): the hardware address, the SMBIOS UUID of
option 97 when sent, and the address the client leased from Arges (full mode) or asked the
site's server for (option 50 in its broadcast DHCPREQUEST; ``ciaddr`` when renewing). The
boot credentials use them two ways (:mod:`arges.access.guard`): ``/ipxe`` mints a credential
only for a requester whose address DHCP saw that NIC use, and a credential is accepted from
an address DHCP saw one of the server's NICs lease after it was minted, which is how a
Talos that leased another address than its firmware did still gets its config.

Bounded (the most recently seen ``limit`` hardware addresses, a few addresses each) and
forgotten after ``window``: a flood of forged requests costs memory once, not for ever.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field

WINDOW = dt.timedelta(minutes=30)
LIMIT = 4096
ADDRESSES_PER_MAC = 4


def decode_guid(raw: bytes | None) -> tuple[str, ...]:
    """The SMBIOS UUID in a DHCP option 97 value (type 0, then 16 bytes), in both byte
    orders firmware uses: as a GUID (first three fields little-endian, what iPXE and EDK2
    send and what dmidecode prints) first, then as 16 big-endian bytes; () when malformed."""
    if raw is None:
        return ()
    body = raw[1:] if len(raw) == 17 and raw[0] == 0 else raw
    if len(body) != 16:
        return ()
    return (str(uuid.UUID(bytes_le=body)), str(uuid.UUID(bytes=body)))


@dataclass
class Sighting:
    """One hardware address: the UUID(s) it sent, the addresses it used and when."""

    mac: str
    uuids: tuple[str, ...] = ()
    addresses: dict[str, dt.datetime] = field(default_factory=dict)
    seen: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))

    def address(self) -> str:
        """The address used last ("" when none was seen)."""
        return max(self.addresses, key=lambda a: self.addresses[a], default="")


class Sightings:
    """The recent sightings (see the module docstring)."""

    def __init__(self, *, window: dt.timedelta = WINDOW, limit: int = LIMIT) -> None:
        self.window = window
        self.limit = limit
        self._by_mac: OrderedDict[str, Sighting] = OrderedDict()

    def record(
        self, mac: str, guid: bytes | None, address: str | None, now: dt.datetime | None = None
    ) -> None:
        """Note a DHCP request from ``mac`` (``guid``: option 97; ``address``: leased or
        asked for, None when the request names none)."""
        now = now or dt.datetime.now(dt.UTC)
        mac = mac.lower()
        sighting = self._by_mac.pop(mac, None) or Sighting(mac)
        sighting.seen = now
        uuids = decode_guid(guid)
        if uuids:
            sighting.uuids = uuids
        if address and address != "0.0.0.0":
            sighting.addresses[address] = now
            while len(sighting.addresses) > ADDRESSES_PER_MAC:
                del sighting.addresses[min(sighting.addresses, key=sighting.addresses.__getitem__)]
        self._by_mac[mac] = sighting
        while len(self._by_mac) > self.limit:
            self._by_mac.popitem(last=False)

    def of(self, mac: str, now: dt.datetime | None = None) -> Sighting | None:
        """The sighting of ``mac`` if it was seen within the window."""
        now = now or dt.datetime.now(dt.UTC)
        sighting = self._by_mac.get(mac.lower())
        if sighting is None or now - sighting.seen > self.window:
            return None
        return sighting

    def addresses(self, macs: set[str], since: dt.datetime) -> set[str]:
        """Addresses any of ``macs`` used at or after ``since``."""
        out: set[str] = set()
        for mac in macs:
            sighting = self._by_mac.get(mac.lower())
            if sighting is not None:
                out |= {a for a, when in sighting.addresses.items() if when >= since}
        return out
