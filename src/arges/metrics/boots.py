"""The recent network boots, in memory: what the dashboard shows as boot activity.

Bounded whatever arrives: the last ``RECENT`` boots overall, and the last ``PER_SERVER`` of
each of at most ``SERVERS`` UUIDs (the UUID comes from the booting machine, so the oldest
is forgotten first when more appear).
"""

from __future__ import annotations

import datetime as dt
from collections import OrderedDict, deque
from dataclasses import dataclass

RECENT = 200
PER_SERVER = 10
SERVERS = 4096


@dataclass(frozen=True)
class BootRecord:
    """One answer of ``/ipxe``: when, to whom, for which firmware, and what it was given."""

    time: dt.datetime
    uuid: str
    mac: str
    client: str
    firmware: str
    decision: str
    """agent, target, disk, not-ready, or unavailable (the API could not be read)."""
    reason: str


class BootLog:
    """The recent boots (see the module docstring)."""

    def __init__(self) -> None:
        self._recent: deque[BootRecord] = deque(maxlen=RECENT)
        self._by_server: OrderedDict[str, deque[BootRecord]] = OrderedDict()

    def add(self, record: BootRecord) -> None:
        """Remember ``record``."""
        self._recent.append(record)
        if not record.uuid:
            return
        per = self._by_server.pop(record.uuid, None) or deque(maxlen=PER_SERVER)
        per.append(record)
        self._by_server[record.uuid] = per
        while len(self._by_server) > SERVERS:
            self._by_server.popitem(last=False)

    def recent(self, limit: int = RECENT) -> list[BootRecord]:
        """The last ``limit`` boots, newest first."""
        return list(reversed(self._recent))[:limit]

    def of(self, uuid: str) -> list[BootRecord]:
        """The last boots of one server, newest first."""
        return list(reversed(self._by_server.get(uuid, ())))

    def last(self, uuid: str) -> BootRecord | None:
        """The last boot of one server, if it booted since Arges started."""
        per = self._by_server.get(uuid)
        return per[-1] if per else None
