"""The discovery endpoint (``/agent/v1/...`` on the boot HTTP port), server side.

``register`` creates the Server named by the lowercase SMBIOS UUID (``spec.accepted`` from
``--auto-accept-servers``), or refreshes its inventory, addresses and ``lastSeen`` (Sidero
froze the inventory at first sight; here a re-registration updates it). A new Server comes
with what the Server controller would write next: its protection finalizer, and (unbound)
``inUse`` and ``isClean`` false. ``report`` records heartbeats and outcomes: a successful
wipe makes an accepted, unbound server clean; a target install marks its ServerBinding
``Installed``. Both answer the next :class:`~arges.wire.Instruction` (see
:mod:`arges.metal.agent`).

Every request carries the credential ``/ipxe`` minted for the server's current boot
(``Authorization: Bearer``, from the agent's ``arges.token=`` kernel argument; the
target Environment's installed report carries its ``talos.config=`` URL's ``token=``).
Registrations, heartbeats and wipe reports need that boot's ``agent`` credential; installed
reports its ``config`` one, and spend it. Anything else is refused with 403 and nothing
written (see :mod:`arges.access.guard`), so only a wipe report from the server's own agent,
in its current boot, ever makes a server clean. A server's first registration may use the
signed credential ``/ipxe`` gave it before it existed. A registration that would change an
accepted server's identity (its NICs, its serial number, or a boot from a NIC it does not
have) is refused with 409 and recorded as condition ``Identity`` (False, ``Changed``); to
take the new identity, un-accept the server, let it register, and accept it again.

Everything received is validated before anything is written: body size, JSON types (strict:
no strings for numbers), a UUID that is well formed, not a placeholder, and equal to the
inventory's SMBIOS UUID, addresses that parse, bounded list lengths. Handlers keep no state
per client and at most ``concurrency`` requests work at once (the rest get 503 with
Retry-After), more than a few a second from one address get 429, so a flood of
registrations cannot grow memory without bound.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import logging
import re
from dataclasses import dataclass
from typing import Any

from aiohttp import StreamReader, web
from pydantic import TypeAdapter, ValidationError

from arges.access.guard import BootGuard, Refused
from arges.api.base import ConditionStatus, Time
from arges.api.binding import INSTALLED, ServerBinding
from arges.api.server import PROTECTION_FINALIZER, CredentialPurpose, HardwareInformation, Server
from arges.errors import ArgesError
from arges.kube.client import KubeClient
from arges.kube.errors import AlreadyExists, KubeError, NotFound
from arges.kube.resources import SERVER_BINDINGS, SERVERS
from arges.metal.agent import SEEN_EVERY, instruct, seen_due
from arges.metal.conditions import condition_patch, find, is_true
from arges.metal.stage import WIPE, clean_after_wipe, stays_clean
from arges.wire import MAX_BODY_BYTES, PHASES, REGISTER_PATH, REPORT_PATH, WipeMode, server_name

log = logging.getLogger(__name__)

MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
PLACEHOLDER_UUIDS = frozenset(
    {
        "00000000-0000-0000-0000-000000000000",
        "ffffffff-ffff-ffff-ffff-ffffffffffff",
        "03000200-0400-0500-0006-000700080009",
    }
)
"""UUIDs firmware reports when none was programmed (the last one is a well-known AMI
default); many machines would share them, so they cannot name a Server."""
IDENTITY = "Identity"
"""Server condition: False (``Changed``) while registrations would change its identity."""
LIMITS = {"processors": 64, "modules": 512, "devices": 256, "interfaces": 256, "addresses": 64}


class BadRegistration(ArgesError, ValueError):
    """Input the endpoint refuses (HTTP 400), with a message for the agent's log."""


class IdentityChanged(ArgesError):
    """A registration that would change an accepted server's identity (HTTP 409)."""


@dataclass(frozen=True)
class DiscoveryConfig:
    """Settings of the endpoint: ``--auto-accept-servers``, the wipe mode, how many requests
    work at once, and how often an unchanged report writes ``lastSeen``."""

    auto_accept: bool = False
    wipe_mode: WipeMode = "fast"
    concurrency: int = 16
    seen_every: float = SEEN_EVERY
    """Seconds between ``lastSeen`` writes of reports that write nothing else
    (:func:`arges.metal.agent.seen_due`)."""


BODY_SECONDS = 10.0
"""How long a request's body may take to arrive once it holds one of the endpoint's slots."""


async def _read_body(stream: StreamReader, limit: int) -> bytes:
    """The body from ``stream``, up to ``limit`` bytes: ``read(n)`` answers with what has
    arrived so far, so a body that comes in several segments is read until it ends.

    Raises ``ConnectionResetError`` when the client goes away first.
    """
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = await stream.read(limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


class DiscoveryApi:
    """The handlers; mount with :meth:`routes`."""

    def __init__(self, kube: KubeClient, config: DiscoveryConfig, guard: BootGuard) -> None:
        self.kube = kube
        self.config = config
        self.guard = guard
        self._slots = asyncio.Semaphore(config.concurrency)

    def routes(self) -> list[web.RouteDef]:
        """The agent's two routes: registration and reports."""
        return [web.post(REGISTER_PATH, self.register), web.post(REPORT_PATH, self.report)]

    async def register(self, request: web.Request) -> web.Response:
        """The agent's registration (:class:`arges.wire.Registration`), behind the boot
        credential check and rate limits; answered with its next
        :class:`arges.wire.Instruction`."""
        return await self._guarded(request, self._register)

    async def report(self, request: web.Request) -> web.Response:
        """An agent's report (:class:`arges.wire.Report`), behind the boot credential check and
        rate limits; answered with its next :class:`arges.wire.Instruction`."""
        return await self._guarded(request, self._report)

    async def _guarded(self, request: web.Request, handler: Any) -> web.Response:
        remote = request.remote or ""
        if not self.guard.admit(remote, request.path):
            return _error(429, "too many requests", headers={"Retry-After": "1"})
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            return _error(413, f"body larger than {MAX_BODY_BYTES} bytes")
        try:
            async with asyncio.timeout(5):
                await self._slots.acquire()
        except TimeoutError:
            return _error(503, "busy; retry later", headers={"Retry-After": "5"})
        try:
            try:
                async with asyncio.timeout(BODY_SECONDS):
                    raw = await _read_body(request.content, MAX_BODY_BYTES + 1)
            except TimeoutError:
                return _error(408, f"the body took more than {BODY_SECONDS:.0f} s")
            except ConnectionResetError:
                # The client is gone: there is nobody to answer, and nothing went wrong here.
                log.info("%s from %s: the connection closed before the body", request.path, remote)
                return _error(400, "the connection closed before the body")
            if len(raw) > MAX_BODY_BYTES:
                return _error(413, f"body larger than {MAX_BODY_BYTES} bytes")
            body = _parse(raw)
            scheme, _, token = request.headers.get("Authorization", "").partition(" ")
            token = token.strip() if scheme.lower() == "bearer" else ""
            answer: dict[str, Any] = await handler(body, remote, token)
            return web.json_response(answer)
        except BadRegistration as exc:
            log.info("refused from %s: %s", request.remote, exc)
            return _error(400, str(exc))
        except Refused as refusal:
            uuid = str(body.get("uuid", "")).lower()
            await self.guard.refused(request.path, "AgentRefused", uuid, remote, refusal)
            return _error(403, "forbidden")
        except IdentityChanged as exc:
            log.warning("registration from %s refused: %s", remote, exc)
            return _error(409, str(exc))
        except KubeError as exc:
            log.warning("discovery request from %s failed: %s", request.remote, exc)
            return _error(
                503,
                "Arges cannot reach its API right now; retry later",
                headers={"Retry-After": "10"},
            )
        finally:
            self._slots.release()

    async def _register(self, body: dict[str, Any], remote: str, token: str) -> dict[str, Any]:
        uuid, hardware = _identity(body)
        hostname = body.get("hostname", "")
        if not isinstance(hostname, str) or len(hostname) > 253:
            raise BadRegistration("hostname must be a string of at most 253 characters")
        addresses = _addresses(body.get("addresses", []))
        boot_mac = body.get("bootMac", "")
        if boot_mac and (not isinstance(boot_mac, str) or not MAC_RE.match(boot_mac.lower())):
            raise BadRegistration(f"bootMac {boot_mac!r} is not a MAC address")
        verified = await self.guard.verify(uuid, token, ("agent",), remote, signed=True)
        created = False
        current = verified.server
        if current is None:
            try:
                # With the Server controller's finalizer: one write fewer per new server.
                current = await self.kube.create(
                    SERVERS,
                    {
                        "metadata": {"name": uuid, "finalizers": [PROTECTION_FINALIZER]},
                        "spec": {"accepted": self.config.auto_accept},
                    },
                )
                created = True
            except AlreadyExists:
                # Another registration with the same credential created it a moment ago.
                current = await self.kube.get(SERVERS, uuid)
        else:
            await self._check_identity(Server.from_json(current), hardware, remote)
        inventory = hardware.to_json()
        previous = (current.get("status") or {}).get("hardware")
        status = {
            "hardware": inventory,
            "hostname": hostname or None,
            "addresses": [{"type": "InternalIP", "address": a} for a in addresses] or None,
            "lastSeen": _now(),
            **(verified.patch or {}),
        }
        binding = await self._binding(uuid)
        recorded = current.get("status") or {}
        if binding is None and ("inUse" not in recorded or "isClean" not in recorded):
            # A new server's allocation state, as the Server controller would record it
            # next (unbound, so not in use; clean only if it already was): one write fewer.
            status["inUse"] = False
            status["isClean"] = stays_clean(Server.from_json(current), bound=False, released=False)
        # Create, then the inventory: a kill between them leaves a Server without hardware,
        # which the agent's retried registration fills in (without a second Registered Event).
        updated = await self.kube.patch(SERVERS, uuid, {"status": status}, subresource="status")
        if created:
            await self.kube.event(
                updated, "Registered", f"discovered from {remote}: {_summary(hardware)}"
            )
        elif previous is not None and previous != inventory:
            await self.kube.event(updated, "InventoryChanged", f"now {_summary(hardware)}")
        return self._instruction(updated, _parsed(binding))

    async def _check_identity(
        self, server: Server, hardware: HardwareInformation, remote: str
    ) -> None:
        """Refuse a registration that would change an accepted server's identity (see the
        module docstring), recording why as condition ``Identity``.

        Raises:
            IdentityChanged: when it would.
        """
        known = server.status.hardware
        if not server.spec.accepted or known is None:
            return
        macs = {n.mac.lower() for n in hardware.network.interfaces if n.mac}
        known_macs = {n.mac.lower() for n in known.network.interfaces if n.mac}
        problems = []
        if known_macs and macs != known_macs:
            problems.append(f"NICs {_macs(macs)} instead of {_macs(known_macs)}")
        serial, known_serial = hardware.system.serial_number, known.system.serial_number
        if known_serial and serial != known_serial:
            problems.append(f"serial number {serial!r} instead of {known_serial!r}")
        record = server.status.boot_credential
        if record is not None and record.mac and record.mac not in macs:
            problems.append(f"booted from NIC {record.mac}, which it does not list")
        now = dt.datetime.now(dt.UTC)
        if not problems:
            if not is_true(server.status.conditions, IDENTITY) and find(
                server.status.conditions, IDENTITY
            ):
                await self.kube.update_status(
                    SERVERS,
                    server.name,
                    lambda obj: condition_patch(
                        obj, IDENTITY, "True", "Verified", "the inventory matches", now=now
                    ),
                )
            return
        message = (
            f"a registration from {remote} reported {'; '.join(problems)}: refused, as the "
            "server is accepted (un-accept it to take the new identity)"
        )
        await self.kube.update_status(
            SERVERS,
            server.name,
            lambda obj: condition_patch(obj, IDENTITY, "False", "Changed", message, now=now),
        )
        raise IdentityChanged(message)

    async def _report(self, body: dict[str, Any], remote: str, token: str) -> dict[str, Any]:
        uuid = _uuid(body.get("uuid"))
        phase = body.get("phase")
        if phase not in PHASES:
            raise BadRegistration(f"phase must be one of {', '.join(PHASES)}")
        message = body.get("message", "")
        if not isinstance(message, str) or len(message) > 4096:
            raise BadRegistration("message must be a string of at most 4096 characters")
        purpose: CredentialPurpose = (
            "config" if phase in ("installed", "install-failed") else "agent"
        )
        verified = await self.guard.verify(uuid, token, (purpose,), remote)
        # Until a person accepts the server its agent only waits (arges.metal.agent), and a
        # wipe makes nothing clean: its binding, if any, changes nothing, and is not read.
        # Nor is it for a wipe's heartbeat (every 10 s of a wipe that may take hours): the
        # agent carries on wiping whatever it is told, and its outcome's report reads it.
        wiping = phase == "wiping"
        looked = purpose == "config" or (not wiping and _accepted(verified.server))
        binding_body = await self._binding(uuid) if looked else None
        binding = _parsed(binding_body)
        now = dt.datetime.now(dt.UTC)
        wipe: tuple[ConditionStatus, str, str] | None = None
        if phase == "wiping":
            wipe = ("Unknown", "InProgress", message or "wiping disks")
        elif phase == "wiped":
            wiped = _wiped(body.get("wiped"))
            total = sum(d.get("bytesZeroed", 0) for d in wiped)
            wipe = ("True", "Wiped", f"wiped {len(wiped)} disk(s), {total} bytes zeroed")
        elif phase == "wipe-failed":
            wipe = ("False", "WipeFailed", message or "the agent could not wipe the disks")

        def record(obj: dict[str, Any]) -> dict[str, Any] | None:
            status: dict[str, Any] = {**(verified.patch or {})}
            if phase == "installed" and binding is not None:
                status["bootCredential"] = {
                    **status.get("bootCredential", {}),
                    "sha256": None,
                    "spent": "the machine config is installed",
                }
            if wipe is not None:
                status |= condition_patch(obj, WIPE, *wipe, now=now) or {}
            # Accepted meanwhile (a 409 read it again), unlooked: taken as bound, not clean.
            bound = binding is not None or not looked
            if phase == "wiped" and clean_after_wipe(accepted=_accepted(obj), bound=bound):
                status["isClean"] = True
            if status or seen_due(_seen(obj), now, self.config.seen_every):
                return {"lastSeen": f"{now:%Y-%m-%dT%H:%M:%SZ}", **status}
            return None

        if phase == "installed" and binding_body is not None:
            # The binding first: a kill before the credential is spent leaves it working
            # for a config /configdata no longer serves (the binding is Installed).
            await self._installed(binding_body, True, message)
        try:
            # The Server as the credential check read it a moment ago (a 409 reads it again).
            updated = await self.kube.update_status(SERVERS, uuid, record, current=verified.server)
        except NotFound as exc:
            raise BadRegistration(f"server {uuid} is not registered; register first") from exc
        if phase == "wiped" and wipe is not None and (updated.get("status") or {}).get("isClean"):
            await self.kube.event(updated, "Wiped", wipe[2])
        elif phase == "wipe-failed":
            await self.kube.event(updated, "WipeFailed", message, type="Warning")
        elif phase == "install-failed" and binding_body is not None:
            await self._installed(binding_body, False, message)
        if not looked and not wiping and _accepted(updated):
            binding = _parsed(await self._binding(uuid))
        return self._instruction(updated, binding, wiping=wiping)

    async def _installed(self, binding: dict[str, Any], ok: bool, message: str) -> None:
        """Condition ``Installed`` on the binding, written on the copy this report read (a
        stale one is refused and read again)."""
        now = dt.datetime.now(dt.UTC)
        await self.kube.update_status(
            SERVER_BINDINGS,
            binding["metadata"]["name"],
            lambda obj: condition_patch(
                obj,
                INSTALLED,
                "True" if ok else "False",
                "Installed" if ok else "InstallFailed",
                message or ("the machine config is on disk" if ok else "installation failed"),
                now=now,
            ),
            current=binding,
        )

    async def _binding(self, name: str) -> dict[str, Any] | None:
        try:
            return await self.kube.get(SERVER_BINDINGS, name)
        except NotFound:
            return None

    def _instruction(
        self, server_body: dict[str, Any], binding: ServerBinding | None, *, wiping: bool = False
    ) -> dict[str, Any]:
        server = Server.from_json(server_body)
        return instruct(server, binding, wipe_mode=self.config.wipe_mode, wiping=wiping).to_json()


MAX_INT = 2**63 - 1
"""The largest integer the API stores (int64, as in Kubernetes)."""


def _reject_constant(name: str) -> Any:
    raise BadRegistration(f"body is not JSON: {name} is not a JSON number")


def _parse(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object whose every string is valid Unicode and every integer an
    int64: what the API can store (anything else would fail there, not here, and look like
    an outage to an agent that retries).

    Raises:
        BadRegistration: naming the first offending value.
    """
    try:
        body = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise BadRegistration(f"body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise BadRegistration("body must be a JSON object")
    todo: list[Any] = [body]
    while todo:
        value = todo.pop()
        if isinstance(value, dict):
            todo.extend(value.keys())
            todo.extend(value.values())
        elif isinstance(value, list):
            todo.extend(value)
        elif isinstance(value, str):
            try:
                value.encode()
            except UnicodeEncodeError as exc:
                raise BadRegistration(
                    f"body is not valid Unicode: lone surrogate {value[exc.start]!r}"
                ) from exc
        elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
            raise BadRegistration(f"integer {value} is out of range (at most 2^63-1)")
    return body


def _wiped(value: Any) -> list[dict[str, Any]]:
    """The ``wiped`` list of a report: objects whose ``bytesZeroed`` is a count of bytes."""
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > LIMITS["devices"]:
        raise BadRegistration(f"wiped must be a list of at most {LIMITS['devices']} objects")
    for item in value:
        if not isinstance(item, dict):
            raise BadRegistration("wiped must be a list of objects")
        zeroed = item.get("bytesZeroed", 0)
        if not isinstance(zeroed, int) or isinstance(zeroed, bool) or zeroed < 0:
            raise BadRegistration(f"wiped[].bytesZeroed {zeroed!r} is not a count of bytes")
    return value


def _error(code: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=code, headers=headers)


_TIME = TypeAdapter(Time)


def _seen(obj: dict[str, Any]) -> dt.datetime | None:
    """The Server's recorded ``lastSeen``, read as the models read it (None when absent or
    unreadable)."""
    text = (obj.get("status") or {}).get("lastSeen")
    try:
        return _TIME.validate_python(text) if isinstance(text, str) else None
    except ValidationError:
        return None


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _uuid(value: Any) -> str:
    uuid = server_name(value)
    if uuid is None:
        raise BadRegistration(f"uuid {value!r} is not an SMBIOS UUID (8-4-4-4-12 hex digits)")
    if uuid in PLACEHOLDER_UUIDS:
        raise BadRegistration(
            f"uuid {uuid} is a firmware placeholder shared by many machines; set a system UUID "
            "in the firmware (SMBIOS type 1) to manage this server"
        )
    return uuid


def _identity(body: dict[str, Any]) -> tuple[str, HardwareInformation]:
    uuid = _uuid(body.get("uuid"))
    raw = body.get("hardware")
    if not isinstance(raw, dict):
        raise BadRegistration("hardware must be an object")
    for section, key in (
        ("compute", "processors"),
        ("memory", "modules"),
        ("storage", "devices"),
        ("network", "interfaces"),
    ):
        items = (raw.get(section) or {}).get(key) if isinstance(raw.get(section), dict) else None
        if isinstance(items, list) and len(items) > LIMITS[key]:
            raise BadRegistration(f"hardware.{section}.{key} has more than {LIMITS[key]} entries")
    try:
        hardware = HardwareInformation.model_validate(raw, strict=True)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise BadRegistration(f"hardware.{where}: {first['msg']}") from exc
    if hardware.system.uuid.lower() != uuid:
        raise BadRegistration(
            f"uuid {uuid} does not match the SMBIOS system UUID {hardware.system.uuid!r}"
        )
    hardware.system.uuid = uuid
    return uuid, hardware


def _addresses(value: Any) -> list[str]:
    if not isinstance(value, list) or len(value) > LIMITS["addresses"]:
        raise BadRegistration(f"addresses must be a list of at most {LIMITS['addresses']}")
    out = []
    for item in value:
        try:
            out.append(str(ipaddress.ip_interface(item).ip))
        except (TypeError, ValueError) as exc:
            raise BadRegistration(f"address {item!r} is not an IP address") from exc
    return out


def _macs(macs: set[str]) -> str:
    return ", ".join(sorted(macs)) or "none"


def _summary(hw: HardwareInformation) -> str:
    gib = hw.memory.total_size / 2**30
    return (
        f"{hw.system.manufacturer} {hw.system.product_name}, {hw.compute.total_core_count} "
        f"cores, {gib:.1f} GiB, {hw.storage.device_count} disk(s)"
    ).strip()


def _accepted(server: dict[str, Any] | None) -> bool:
    """Whether a Server (as the API returns it) is accepted; None (not created yet) counts
    as accepted, so a report on it goes the way it always did."""
    return server is None or bool((server.get("spec") or {}).get("accepted"))


def _parsed(binding: dict[str, Any] | None) -> ServerBinding | None:
    return ServerBinding.from_json(binding) if binding is not None else None
