"""Leader election on a ``coordination.k8s.io/v1`` Lease, as client-go's ``leaderelection`` does it.

Candidates share one Lease. Its spec is the election record: ``holderIdentity``,
``leaseDurationSeconds``, ``acquireTime``, ``renewTime`` (MicroTime) and ``leaseTransitions``.
Each attempt (:meth:`LeaderElector.try_acquire_or_renew`) follows client-go's
``tryAcquireOrRenew``:

1. read the Lease; create it, holding it, when there is none;
2. when its record differs from the one last observed, note it and the local time of the
   observation (clocks are never compared across machines: a lease is valid until the local
   observation time plus its ``leaseDurationSeconds``);
3. a lease held by another candidate and still valid is left alone;
4. otherwise write the record, holding it, with the resourceVersion just read (a concurrent
   writer makes it a 409 and the attempt fails): ``acquireTime`` and ``leaseTransitions`` are
   kept by a renewing holder, and a new holder counts one more transition.

:meth:`LeaderElector.acquire` retries every ``retry_period`` (jittered by up to 20%, as
client-go's ``JitterUntil``) until it holds the lease; :meth:`LeaderElector.hold` renews it
every ``retry_period`` and returns as soon as a renewal has not succeeded for
``renew_deadline`` seconds, which is shorter than ``lease_duration``: a leader that cannot
renew stops leading before anyone else may take over. :meth:`LeaderElector.release` gives the
lease up on a clean stop (empty holder, ``leaseDurationSeconds: 1``), so a successor need not
wait for it to expire.

With the defaults (10 s lease, 7 s renew deadline, 1 s retries), a candidate takes over at
most about 12 s after the leader dies: the leader's last renewal is observed within a retry,
expires 10 s later, and is noticed at the next retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import random
import socket
import time
import uuid
from dataclasses import dataclass
from typing import Any

from arges.kube.client import KubeClient
from arges.kube.errors import AlreadyExists, Conflict, KubeError, NotFound
from arges.kube.resources import LEASES

log = logging.getLogger(__name__)

JITTER = 0.2


@dataclass(frozen=True)
class ElectionConfig:
    """Where the Lease is and how long it lasts (seconds)."""

    namespace: str
    name: str = "arges"
    lease_duration: float = 10.0
    renew_deadline: float = 7.0
    retry_period: float = 1.0

    def __post_init__(self) -> None:
        if not self.retry_period < self.renew_deadline < self.lease_duration:
            raise ValueError("leader election needs retry_period < renew_deadline < lease_duration")


def new_identity() -> str:
    """A candidate's identity: the host name (a pod's name) and a random suffix, as
    controller-runtime makes them, so two processes on one host never share one."""
    return f"{socket.gethostname()}_{uuid.uuid4()}"


def micro_time(when: dt.datetime) -> str:
    """Kubernetes' MicroTime: RFC 3339 with microseconds, in UTC."""
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    """One candidate of the election (see the module docstring)."""

    def __init__(self, kube: KubeClient, config: ElectionConfig, identity: str) -> None:
        self.kube = kube
        self.config = config
        self.identity = identity
        self._observed: dict[str, Any] = {}
        self._observed_at = 0.0

    @property
    def leader(self) -> str:
        """The holder as last observed ("" when nobody holds the lease)."""
        return str(self._observed.get("holderIdentity") or "")

    @property
    def is_leader(self) -> bool:
        return self.leader == self.identity

    def _valid(self, now: float) -> bool:
        duration = float(self._observed.get("leaseDurationSeconds") or 0)
        return self._observed_at + duration > now

    def _record(self, now: dt.datetime, previous: dict[str, Any] | None) -> dict[str, Any]:
        record: dict[str, Any] = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": round(self.config.lease_duration),
            "acquireTime": micro_time(now),
            "renewTime": micro_time(now),
            "leaseTransitions": 0,
        }
        if previous is not None:
            transitions = int(previous.get("leaseTransitions") or 0)
            if self.is_leader:
                record["acquireTime"] = previous.get("acquireTime") or record["acquireTime"]
                record["leaseTransitions"] = transitions
            else:
                record["leaseTransitions"] = transitions + 1
        return record

    async def try_acquire_or_renew(self) -> bool:
        """One attempt to take or keep the lease; True when this candidate holds it.

        Raises:
            KubeError: the API could not be read or written (other than losing a race).
        """
        config = self.config
        now = dt.datetime.now(dt.UTC)
        try:
            lease = await self.kube.get(LEASES, config.name, config.namespace)
        except NotFound:
            record = self._record(now, None)
            body = {"metadata": {"name": config.name}, "spec": record}
            try:
                await self.kube.create(LEASES, body, config.namespace)
            except AlreadyExists:
                return False
            self._observe(record)
            return True
        spec = lease.get("spec") or {}
        if spec != self._observed:
            self._observe(spec)
        if self.leader and not self.is_leader and self._valid(time.monotonic()):
            return False
        record = self._record(now, spec)
        lease["spec"] = record
        try:
            await self.kube.replace(LEASES, lease)
        except Conflict:
            return False
        self._observe(record)
        return True

    def _observe(self, record: dict[str, Any]) -> None:
        holder = record.get("holderIdentity") or ""
        if holder != self.leader:
            what = f"held by {holder}" if holder else "free"
            log.info("leader election %s: %s", self.config.name, what)
        self._observed = dict(record)
        self._observed_at = time.monotonic()

    async def _attempt(self, within: float) -> bool:
        try:
            async with asyncio.timeout(within):
                return await self.try_acquire_or_renew()
        except (KubeError, TimeoutError) as exc:
            log.info("leader election %s: %s", self.config.name, exc or "timed out")
            return False

    async def acquire(self) -> None:
        """Return once this candidate holds the lease (retrying for as long as it takes)."""
        period = self.config.retry_period
        while True:
            if await self._attempt(self.config.renew_deadline):
                break
            await asyncio.sleep(period * (1 + random.uniform(0, JITTER)))
        log.info("leader election %s: %s is the leader", self.config.name, self.identity)

    async def hold(self) -> None:
        """Renew the lease every ``retry_period``; return once it is lost, that is when no
        renewal has succeeded for ``renew_deadline`` seconds or another holder has it."""
        config = self.config
        renewed = time.monotonic()
        while True:
            await asyncio.sleep(config.retry_period)
            left = renewed + config.renew_deadline - time.monotonic()
            if left <= 0:
                break
            if await self._attempt(left):
                renewed = time.monotonic()
            elif self.leader and not self.is_leader:
                break
        log.error("leader election %s: %s lost the lease", config.name, self.identity)

    async def release(self) -> None:
        """Give the lease up, if held, so a successor takes over at once (client-go's
        ``ReleaseOnCancel``); best effort: failing, the lease simply expires."""
        if not self.is_leader:
            return
        now = micro_time(dt.datetime.now(dt.UTC))
        with contextlib.suppress(KubeError, TimeoutError):
            async with asyncio.timeout(self.config.renew_deadline):
                lease = await self.kube.get(LEASES, self.config.name, self.config.namespace)
                if (lease.get("spec") or {}).get("holderIdentity") != self.identity:
                    return
                lease["spec"] = {
                    "leaseDurationSeconds": 1,
                    "acquireTime": now,
                    "renewTime": now,
                    "leaseTransitions": int(self._observed.get("leaseTransitions") or 0),
                }
                await self.kube.replace(LEASES, lease)
                self._observe(lease["spec"])
                log.info("leader election %s: released", self.config.name)
