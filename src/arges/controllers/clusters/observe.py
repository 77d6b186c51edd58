"""What the members' Talos APIs say: one observation per member, reused for a while.

An observation is the member's Talos version (Version), boot time (SystemStat) and
services (ServiceList), or that its API did not answer. Observations are kept for
``probe_interval`` seconds per membership (a new binding uid is a new member), so a busy
cluster does not call every node at every reconcile; a roll-out step forgets the member's
observation, so what happens next is seen at once.

etcd's health, asked only before a control plane's roll-out step, is what Talos checks
before an upgrade (``etcd.ValidateForUpgrade``): every member started, and every member's
status (EtcdStatus, asked of its own node) without errors.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from dataclasses import dataclass

from arges.talos.api import Service, TalosApi
from arges.talos.errors import TalosApiError


@dataclass(frozen=True)
class Observation:
    """One look at a member's Talos API (``at``): whether it ``answers``, and if so its
    Talos ``version``, ``boot_time`` and ``services``; ``error`` says why it did not."""

    at: dt.datetime
    answers: bool
    version: str | None = None
    boot_time: int | None = None
    services: tuple[Service, ...] = ()
    error: str | None = None

    def healthy(self, *, etcd: bool) -> bool:
        """Whether it answers and no service is unhealthy; with ``etcd`` (a control plane of
        a bootstrapped cluster), its etcd service must also be running and healthy."""
        if not self.answers:
            return False
        if any(s.healthy is False for s in self.services):
            return False
        if etcd:
            return any(s.id == "etcd" and s.healthy is True for s in self.services)
        return True

    def problem(self, *, etcd: bool) -> str:
        """Why it is not healthy ("" when it is)."""
        if not self.answers:
            return self.error or "its Talos API does not answer"
        bad = [f"{s.id}: {s.message or 'unhealthy'}" for s in self.services if s.healthy is False]
        if bad:
            return "; ".join(bad)
        if etcd and not any(s.id == "etcd" and s.healthy is True for s in self.services):
            return "etcd is not running healthy yet"
        return ""


@dataclass(frozen=True)
class Talos:
    """The Talos API of a cluster's members: a client with the admin credentials, and the
    port apid listens on."""

    api: TalosApi
    port: int


class Observer:
    """Observations per membership (see the module docstring)."""

    def __init__(self, probe_interval: float) -> None:
        self.probe_interval = probe_interval
        self._seen: dict[str, tuple[float, Observation]] = {}

    def forget(self, member: str) -> None:
        """Look at ``member`` afresh next time (its binding uid, or its name)."""
        self._seen.pop(member, None)

    async def observe(self, talos: Talos, members: dict[str, str | None]) -> dict[str, Observation]:
        """An observation of each member (key, usually the binding uid -> its address; no
        address: it does not answer), fresh or at most ``probe_interval`` seconds old."""
        keys = list(members)
        found = await asyncio.gather(*(self._one(talos, k, members[k]) for k in keys))
        return dict(zip(keys, found, strict=True))

    async def _one(self, talos: Talos, key: str, address: str | None) -> Observation:
        now = dt.datetime.now(dt.UTC)
        if address is None:
            return Observation(now, False, error="no address is known for its Talos API")
        seen = self._seen.get(key)
        if seen is not None and time.monotonic() - seen[0] < self.probe_interval:
            return seen[1]
        try:
            version = await talos.api.version(address, talos.port)
            boot_time, services = await asyncio.gather(
                talos.api.boot_time(address, talos.port),
                talos.api.services(address, talos.port),
            )
            found = Observation(now, True, version, boot_time, tuple(services))
        except TalosApiError as exc:
            found = Observation(now, False, error=str(exc))
        self._seen[key] = (time.monotonic(), found)
        return found

    def drop_except(self, keys: set[str]) -> None:
        """Forget members that are gone."""
        for key in [k for k in self._seen if k not in keys]:
            del self._seen[key]


async def etcd_problem(talos: Talos, control_planes: dict[str, str]) -> str | None:
    """Why etcd is not healthy (None: every member started and without errors), asked of
    the control planes (name -> address) that answer."""
    members = None
    errors: list[str] = []
    statuses: dict[int, tuple[str, tuple[str, ...]]] = {}
    for name, address in sorted(control_planes.items()):
        try:
            if members is None:
                members = await talos.api.etcd_members(address, talos.port)
            status = await talos.api.etcd_status(address, talos.port)
        except TalosApiError as exc:
            errors.append(f"{name}: {exc.message}")
            continue
        statuses[status.member_id] = (name, status.errors)
    if members is None:
        return "; ".join(errors) or "no control plane answers"
    for member in members:
        if not member.started:
            return f"member {member.id:016x} is not started"
        if member.id not in statuses:
            return f"member {member.hostname or f'{member.id:016x}'} does not answer"
        name, problems = statuses[member.id]
        if problems:
            return f"member {member.hostname} ({name}): {'; '.join(problems)}"
    return None
