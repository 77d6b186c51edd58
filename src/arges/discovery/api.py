"""The discovery endpoint (``/agent/v1/...`` on the boot HTTP port), server side.

``register`` creates the Server named by the lowercase SMBIOS UUID (``spec.accepted`` from
``--auto-accept-servers``), or refreshes its inventory, addresses and ``lastSeen`` (Sidero
froze the inventory at first sight; here a re-registration updates it). ``report`` records
heartbeats and outcomes: a successful wipe makes an accepted, unbound server clean; a
target install marks its ServerBinding ``Installed``. Both answer the next
:class:`~arges.wire.Instruction` (see :mod:`arges.metal.agent`).

Everything received is validated before anything is written: body size, JSON types (strict:
no strings for numbers), a UUID that is well formed, not a placeholder, and equal to the
inventory's SMBIOS UUID, addresses that parse, bounded list lengths. Handlers keep no state
per client and at most ``concurrency`` requests work at once (the rest get 503 with
Retry-After), so a flood of registrations cannot grow memory without bound.
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

from aiohttp import web
from pydantic import ValidationError

from arges.api.base import ConditionStatus
from arges.api.binding import INSTALLED, ServerBinding
from arges.api.server import HardwareInformation, Server
from arges.errors import ArgesError
from arges.kube.client import KubeClient
from arges.kube.errors import AlreadyExists, KubeError, NotFound
from arges.kube.resources import SERVER_BINDINGS, SERVERS
from arges.metal.agent import instruct
from arges.metal.conditions import condition_patch
from arges.wire import MAX_BODY_BYTES, PHASES, REGISTER_PATH, REPORT_PATH, WipeMode

log = logging.getLogger(__name__)

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
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
LIMITS = {"processors": 64, "modules": 512, "devices": 256, "interfaces": 256, "addresses": 64}
WIPE = "Wipe"


class BadRegistration(ArgesError, ValueError):
    """Input the endpoint refuses (HTTP 400), with a message for the agent's log."""


@dataclass(frozen=True)
class DiscoveryConfig:
    """Settings of the endpoint: ``--auto-accept-servers`` and the wipe mode."""

    auto_accept: bool = False
    wipe_mode: WipeMode = "fast"
    concurrency: int = 16


class DiscoveryApi:
    """The handlers; mount with :meth:`routes`."""

    def __init__(self, kube: KubeClient, config: DiscoveryConfig) -> None:
        self.kube = kube
        self.config = config
        self._slots = asyncio.Semaphore(config.concurrency)

    def routes(self) -> list[web.RouteDef]:
        return [web.post(REGISTER_PATH, self.register), web.post(REPORT_PATH, self.report)]

    async def register(self, request: web.Request) -> web.Response:
        return await self._guarded(request, self._register)

    async def report(self, request: web.Request) -> web.Response:
        return await self._guarded(request, self._report)

    async def _guarded(self, request: web.Request, handler: Any) -> web.Response:
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            return _error(413, f"body larger than {MAX_BODY_BYTES} bytes")
        try:
            async with asyncio.timeout(5):
                await self._slots.acquire()
        except TimeoutError:
            return _error(503, "busy; retry later", headers={"Retry-After": "5"})
        try:
            raw = await request.content.read(MAX_BODY_BYTES + 1)
            if len(raw) > MAX_BODY_BYTES:
                return _error(413, f"body larger than {MAX_BODY_BYTES} bytes")
            try:
                body = json.loads(raw)
            except ValueError as exc:
                raise BadRegistration(f"body is not JSON: {exc}") from exc
            if not isinstance(body, dict):
                raise BadRegistration("body must be a JSON object")
            answer: dict[str, Any] = await handler(body, request.remote or "")
            return web.json_response(answer)
        except BadRegistration as exc:
            log.info("refused from %s: %s", request.remote, exc)
            return _error(400, str(exc))
        except KubeError as exc:
            log.warning("discovery request from %s failed: %s", request.remote, exc)
            return _error(
                503,
                "Arges cannot reach its API right now; retry later",
                headers={"Retry-After": "10"},
            )
        finally:
            self._slots.release()

    async def _register(self, body: dict[str, Any], remote: str) -> dict[str, Any]:
        uuid, hardware = _identity(body)
        hostname = body.get("hostname", "")
        if not isinstance(hostname, str) or len(hostname) > 253:
            raise BadRegistration("hostname must be a string of at most 253 characters")
        addresses = _addresses(body.get("addresses", []))
        boot_mac = body.get("bootMac", "")
        if boot_mac and (not isinstance(boot_mac, str) or not MAC_RE.match(boot_mac.lower())):
            raise BadRegistration(f"bootMac {boot_mac!r} is not a MAC address")
        created = False
        try:
            current = await self.kube.get(SERVERS, uuid)
        except NotFound:
            try:
                current = await self.kube.create(
                    SERVERS,
                    {"metadata": {"name": uuid}, "spec": {"accepted": self.config.auto_accept}},
                )
                created = True
            except AlreadyExists:
                current = await self.kube.get(SERVERS, uuid)
        inventory = hardware.to_json()
        previous = (current.get("status") or {}).get("hardware")
        status = {
            "hardware": inventory,
            "hostname": hostname or None,
            "addresses": [{"type": "InternalIP", "address": a} for a in addresses] or None,
            "lastSeen": _now(),
        }
        # Create, then the inventory: a kill between them leaves a Server without hardware,
        # which the agent's retried registration fills in (without a second Registered Event).
        updated = await self.kube.patch(SERVERS, uuid, {"status": status}, subresource="status")
        if created:
            await self.kube.event(
                updated, "Registered", f"discovered from {remote}: {_summary(hardware)}"
            )
        elif previous is not None and previous != inventory:
            await self.kube.event(updated, "InventoryChanged", f"now {_summary(hardware)}")
        return self._instruction(updated, await self._binding(uuid))

    async def _report(self, body: dict[str, Any], remote: str) -> dict[str, Any]:
        uuid = _uuid(body.get("uuid"))
        phase = body.get("phase")
        if phase not in PHASES:
            raise BadRegistration(f"phase must be one of {', '.join(PHASES)}")
        message = body.get("message", "")
        if not isinstance(message, str) or len(message) > 4096:
            raise BadRegistration("message must be a string of at most 4096 characters")
        binding = await self._binding(uuid)
        now = dt.datetime.now(dt.UTC)
        wipe: tuple[ConditionStatus, str, str] | None = None
        if phase == "wiping":
            wipe = ("Unknown", "InProgress", message or "wiping disks")
        elif phase == "wiped":
            wiped = [d for d in body.get("wiped") or [] if isinstance(d, dict)]
            total = sum(int(d.get("bytesZeroed", 0)) for d in wiped)
            wipe = ("True", "Wiped", f"wiped {len(wiped)} disk(s), {total} bytes zeroed")
        elif phase == "wipe-failed":
            wipe = ("False", "WipeFailed", message or "the agent could not wipe the disks")

        def record(obj: dict[str, Any]) -> dict[str, Any]:
            status: dict[str, Any] = {"lastSeen": _now()}
            if wipe is not None:
                status |= condition_patch(obj, WIPE, *wipe, now=now) or {}
            if phase == "wiped" and (obj.get("spec") or {}).get("accepted") and binding is None:
                status["isClean"] = True
            return status

        try:
            updated = await self.kube.update_status(SERVERS, uuid, record)
        except NotFound as exc:
            raise BadRegistration(f"server {uuid} is not registered; register first") from exc
        if phase == "wiped" and wipe is not None and (updated.get("status") or {}).get("isClean"):
            await self.kube.event(updated, "Wiped", wipe[2])
        elif phase == "wipe-failed":
            await self.kube.event(updated, "WipeFailed", message, type="Warning")
        elif phase in ("installed", "install-failed") and binding is not None:
            await self._installed(binding, phase == "installed", message)
        return self._instruction(updated, binding)

    async def _installed(self, binding: ServerBinding, ok: bool, message: str) -> None:
        now = dt.datetime.now(dt.UTC)
        await self.kube.update_status(
            SERVER_BINDINGS,
            binding.name,
            lambda obj: condition_patch(
                obj,
                INSTALLED,
                "True" if ok else "False",
                "Installed" if ok else "InstallFailed",
                message or ("the machine config is on disk" if ok else "installation failed"),
                now=now,
            ),
        )

    async def _binding(self, name: str) -> ServerBinding | None:
        try:
            return ServerBinding.from_json(await self.kube.get(SERVER_BINDINGS, name))
        except NotFound:
            return None

    def _instruction(
        self, server_body: dict[str, Any], binding: ServerBinding | None
    ) -> dict[str, Any]:
        server = Server.from_json(server_body)
        return instruct(server, binding, wipe_mode=self.config.wipe_mode).to_json()


def _error(code: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=code, headers=headers)


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _uuid(value: Any) -> str:
    if not isinstance(value, str) or not UUID_RE.match(value.lower()):
        raise BadRegistration(f"uuid {value!r} is not an SMBIOS UUID (8-4-4-4-12 hex digits)")
    uuid = value.lower()
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


def _summary(hw: HardwareInformation) -> str:
    gib = hw.memory.total_size / 2**30
    return (
        f"{hw.system.manufacturer} {hw.system.product_name}, {hw.compute.total_core_count} "
        f"cores, {gib:.1f} GiB, {hw.storage.device_count} disk(s)"
    ).strip()
