"""Who may do what on the provisioning network: boot credentials checked against the store.

One :class:`BootGuard` serves the boot HTTP port's endpoints:

- ``/ipxe`` (:meth:`BootGuard.vet`, :meth:`BootGuard.issue`): before anything is minted or
  spent for a UUID, the requester must be plausibly that server's firmware: the NIC it
  names must be one of the server's (once its inventory is known), and where Arges runs
  DHCP, DHCP must have seen that NIC ask from this very address (and send this UUID, when
  it sent one). Then a credential is minted for the boot; the caller records its hash on
  the Server before answering, so one that is minted but never recorded is never handed
  out (the server asks again and gets another).
- ``/configdata`` and ``/agent/v1/*`` (:meth:`BootGuard.verify`): the credential must be
  the current one of that UUID, for that purpose, unexpired, unspent, and come from an
  address it is bound to (:func:`arges.access.credentials.allowed`).

Every refusal looks the same from outside (403, nothing said about why or whether the UUID
exists); inside, it is logged once per client and window (:class:`RefusalLog`) and, when
the Server exists, recorded as an Event on it (``BootRefused``, ``ConfigRefused``,
``AgentRefused``) with the requester's address, at most once a minute per server and
address; and counted in ``arges_boot_refusals_total`` (by endpoint, 403 or 429).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from arges.access import credentials
from arges.access.limits import CLIENTS, RateLimiter, RefusalLog
from arges.access.sightings import Sightings
from arges.api.server import BootCredential, CredentialPurpose, DhcpSighting, Server
from arges.errors import ArgesError
from arges.kube.client import KubeClient
from arges.kube.errors import NotFound
from arges.kube.resources import SERVERS
from arges.metrics import Metrics
from arges.wire import server_name

log = logging.getLogger("arges.access")

EVENT_INTERVAL = 60.0
"""Seconds between two refusal Events for the same server and requester."""


class Refused(ArgesError):
    """A request that is answered 403; ``reason`` is for the log and the Event only."""

    def __init__(self, reason: str, server: dict[str, Any] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.server = server


@dataclass(frozen=True)
class Verified:
    """A request whose credential checked out.

    ``server`` is the Server as read (None: a signed credential of a server that does not
    exist yet, see :mod:`arges.access.credentials`); ``patch`` the status fields recording
    this use (a new record for a first use of a signed credential), for the caller's write.
    """

    server: dict[str, Any] | None
    patch: dict[str, Any] | None


def server_macs(server: Server) -> set[str]:
    """The MAC addresses of the server's NICs, from its inventory."""
    hardware = server.status.hardware
    if hardware is None:
        return set()
    return {nic.mac.lower() for nic in hardware.network.interfaces if nic.mac}


def replacing(record: BootCredential) -> dict[str, Any]:
    """``record`` as a merge-patch value that replaces the previous record entirely."""
    value: dict[str, Any] = record.model_dump(by_alias=True, mode="json")
    return value


class BootGuard:
    """Credentials, rate limits and refusals of the boot HTTP port (see the module docstring).

    ``sightings``: what Arges' DHCP saw (None without DHCP); ``vet_dhcp``: whether ``/ipxe``
    requires DHCP to have seen the requester (true whenever Arges runs DHCP).
    """

    def __init__(
        self,
        kube: KubeClient,
        sightings: Sightings | None = None,
        *,
        vet_dhcp: bool = False,
        limiter: RateLimiter | None = None,
        refusals: RefusalLog | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.kube = kube
        self.metrics = metrics if metrics is not None else Metrics()
        self.sightings = sightings
        self.vet_dhcp = vet_dhcp and sightings is not None
        self.signer = credentials.Signer.random()
        self.limiter = limiter or RateLimiter()
        self.refusals = refusals or RefusalLog()
        self._events: OrderedDict[tuple[str, str, str], float] = OrderedDict()

    def admit(self, client: str, what: str) -> bool:
        """Whether ``client`` is within its rate for ``what`` (else: answer 429). Every
        request also sums up the refusal windows that are over (see :class:`RefusalLog`)."""
        self.refusals.flush(self.refusals.clock())
        if self.limiter.allow(client):
            return True
        self.refusals.limited(client, what)
        self.metrics.boot_refusals.labels(what, "429").inc()
        return False

    # /ipxe

    def vet(
        self, server: Server | None, uuid: str, mac: str, client: str
    ) -> tuple[str | None, DhcpSighting | None]:
        """Why ``client`` may not boot as ``uuid`` from NIC ``mac`` (None when it may), and
        what DHCP saw of that NIC (see the module docstring)."""
        macs = server_macs(server) if server is not None else set()
        if macs and mac not in macs:
            return f"the NIC {mac or '(none named)'} is not one of the server's", None
        sighting = self.sightings.of(mac) if self.sightings is not None and mac else None
        seen = None
        if sighting is not None:
            seen = DhcpSighting(
                mac=sighting.mac,
                uuid=sighting.uuids[0] if sighting.uuids else "",
                address=sighting.address(),
            )
        if not self.vet_dhcp:
            return None, seen
        if sighting is None:
            return f"DHCP saw no recent request from {mac or 'the NIC'}", None
        if sighting.uuids and uuid not in sighting.uuids:
            return f"DHCP saw {mac} send UUID {sighting.uuids[0]}", seen
        if sighting.addresses and client not in sighting.addresses:
            return f"DHCP saw {mac} use {', '.join(sorted(sighting.addresses))}", seen
        if not sighting.addresses and not sighting.uuids:
            return f"DHCP saw {mac} name neither an address nor a UUID", seen
        return None, seen

    def issue(
        self,
        server: Server | None,
        uuid: str,
        purpose: CredentialPurpose,
        client: str,
        mac: str,
        seen: DhcpSighting | None,
        now: dt.datetime,
        *,
        addresses: list[str] | None = None,
    ) -> tuple[str, dict[str, Any] | None]:
        """A credential for this boot, and the status patch recording it (None for a server
        that does not exist yet: its credential is signed, see
        :mod:`arges.access.credentials`); ``addresses`` it is bound to default to
        ``client``. The patch must be written before the credential is handed out."""
        if server is None:
            return self.signer.sign(purpose, uuid, client, now), None
        token = credentials.mint()
        record = credentials.record(
            token, purpose, client, now, mac=mac, dhcp=seen, addresses=addresses
        )
        return token, {"bootCredential": replacing(record)}

    # /configdata, /agent/v1/*

    async def verify(
        self,
        uuid: str,
        token: str,
        purposes: tuple[CredentialPurpose, ...],
        client: str,
        *,
        signed: bool = False,
        bound: bool = True,
    ) -> Verified:
        """Check a request's credential (see the module docstring); ``signed``: whether a
        signed credential of a server that does not exist yet may register it; ``bound``:
        whether the request must come from the machine (False for a BMC fetching the agent
        ISO that holds the credential: its address is not the server's, and is not
        recorded).

        Raises:
            Refused: it does not work (the caller answers 403 and calls :meth:`refused`).
            KubeError: the Server cannot be read.
        """
        if not credentials.well_formed(token):
            raise Refused("no credential" if not token else "a malformed credential")
        # Anything but a Server name is no server, and is not looked up.
        if server_name(uuid) != uuid:
            raise Refused("no such server")
        now = dt.datetime.now(dt.UTC)
        try:
            body = await self.kube.get(SERVERS, uuid)
        except NotFound:
            first = self.signer.verify(token, "agent", uuid, client, now) if signed else None
            if first is None:
                raise Refused("no such server") from None
            record = credentials.record(token, "agent", client, now, issued=first)
            return Verified(None, {"bootCredential": replacing(record)})
        server = Server.from_json(body)
        current = server.status.boot_credential
        first = self.signer.verify(token, "agent", uuid, client, now) if signed else None
        if first is not None and (current is None or current.issued <= first):
            # Created (from an asset list, say) after /ipxe signed the credential.
            record = credentials.record(token, "agent", client, now, issued=first)
            return Verified(body, {"bootCredential": replacing(record)})
        reason = credentials.refusal(current, token, purposes, now)
        if reason is not None:
            raise Refused(reason, body)
        assert current is not None
        if not bound:
            return Verified(body, None)
        if not credentials.allowed(current, client, self._seen(server, current)):
            raise Refused(f"{client} is not an address of this boot", body)
        return Verified(body, credentials.used(current, client, now))

    def _seen(self, server: Server, current: BootCredential) -> set[str]:
        if self.sightings is None:
            return set()
        macs = server_macs(server) | {current.mac} | ({current.dhcp.mac} if current.dhcp else set())
        return self.sightings.addresses({m for m in macs if m}, current.issued)

    async def refused(
        self, what: str, event: str, uuid: str, client: str, refusal: Refused
    ) -> None:
        """Log ``refusal`` of ``what`` (aggregated per client) and, when the Server exists,
        record Event ``event`` on it (at most once a minute per server and requester)."""
        self.refusals.refused(client, what, uuid, refusal.reason)
        self.metrics.boot_refusals.labels(what, "403").inc()
        if refusal.server is None:
            return
        key = (uuid, client, event)
        now = time.monotonic()
        last = self._events.pop(key, None)
        self._events[key] = now if last is None or now - last >= EVENT_INTERVAL else last
        while len(self._events) > CLIENTS:
            self._events.popitem(last=False)
        if last is not None and now - last < EVENT_INTERVAL:
            return
        await self.kube.event(
            refusal.server,
            event,
            f"{what} refused to {client or 'an unknown address'}: {refusal.reason}",
            type="Warning",
        )
