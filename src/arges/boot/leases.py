"""Address leases for full-DHCP mode: a pool, per-MAC reservations, kept on disk.

The lease table is a JSON file rewritten atomically (write, fsync, rename) on every change,
so a restart keeps every client's address. Allocation is deterministic: a client keeps its
lease; a reserved MAC gets its reservation; otherwise the lowest free pool address.
"""

from __future__ import annotations

import ipaddress
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from arges.errors import ArgesError


class PoolExhausted(ArgesError):
    """No free address is left in the pool."""


@dataclass(frozen=True)
class PoolConfig:
    """The pool ``start``..``end`` (inclusive) inside ``network``; reservations are MAC to
    address; ``lease_time`` in seconds."""

    network: str
    start: str
    end: str
    router: str | None = None
    lease_time: int = 3600
    reservations: tuple[tuple[str, str], ...] = ()


class LeaseTable:
    """Leases by MAC address (lowercase, colon-separated)."""

    def __init__(self, path: Path, config: PoolConfig) -> None:
        self.path = path
        self.config = config
        self.reserved = {mac.lower(): addr for mac, addr in config.reservations}
        self._leases: dict[str, dict[str, float | str]] = {}
        if path.exists():
            self._leases = json.loads(path.read_text())

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("w") as f:
            json.dump(self._leases, f, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(self.path)

    def address_of(self, mac: str) -> str | None:
        """The address of ``mac``'s recorded lease, expired or not, or None (``mac`` lowercase
        and colon-separated, as the table keys it)."""
        lease = self._leases.get(mac)
        return str(lease["address"]) if lease else None

    def _taken(self, now: float) -> set[str]:
        return {
            str(lease["address"])
            for lease in self._leases.values()
            if float(lease["expires"]) > now
        } | set(self.reserved.values())

    def offer(self, mac: str, now: float | None = None) -> str:
        """The address ``mac`` should get (not yet committed).

        Raises:
            PoolExhausted: when nothing is free.
        """
        now = time.time() if now is None else now
        if mac in self.reserved:
            return self.reserved[mac]
        current = self._leases.get(mac)
        if current is not None:
            return str(current["address"])
        taken = self._taken(now)
        start = ipaddress.IPv4Address(self.config.start)
        end = ipaddress.IPv4Address(self.config.end)
        for value in range(int(start), int(end) + 1):
            candidate = str(ipaddress.IPv4Address(value))
            if candidate not in taken:
                return candidate
        raise PoolExhausted(f"no free address in {self.config.start}-{self.config.end}")

    def commit(self, mac: str, address: str, now: float | None = None) -> bool:
        """Record that ``mac`` holds ``address``; False when another client holds it."""
        now = time.time() if now is None else now
        for other, lease in self._leases.items():
            if other != mac and lease["address"] == address and float(lease["expires"]) > now:
                return False
        if self.reserved.get(mac, address) != address:
            return False
        self._leases[mac] = {"address": address, "expires": now + self.config.lease_time}
        self._save()
        return True

    def release(self, mac: str) -> None:
        """Forget ``mac``'s lease (RFC 2131 DHCPRELEASE) and save the table if it had one."""
        if self._leases.pop(mac, None) is not None:
            self._save()
