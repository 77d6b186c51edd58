"""The power controller: every server's BMC made to follow :func:`arges.metal.power.intent`.

Per server, one action at a time (the work queue serialises keys); across servers, in
parallel. Each reconcile reads the power state into ``status.power``, performs the intended
action through the driver the factory picks (verified by reading back), and records the
outcome in the ``PowerManagement`` condition. A BMC error becomes that condition (False, with
the BMC's words) and a retry with capped exponential backoff; the condition turns True again
when the BMC answers. A cycle is recorded (condition ``PowerCycle``) before it is sent, so a
controller restarted in the middle of a cycle does not cycle again.

A server without a BMC gets no power actions and ``status.power`` unknown; its agent waits
(polling) instead of rebooting, so it is reprovisioned when allocated without reboot loops.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import logging
from typing import Any

from arges.api.base import Condition, ConditionStatus
from arges.api.binding import ServerBinding
from arges.api.server import IPMI_PORT, Server
from arges.controllers.runtime import Body, Cache, Controller, Key, RetryLater, Watch, key_of
from arges.kube.client import KubeClient
from arges.kube.errors import NotFound
from arges.kube.resources import SECRETS, SERVER_BINDINGS, SERVERS
from arges.metal.conditions import condition_patch
from arges.metal.power import POWER_CYCLE, intent
from arges.power.base import BmcInfo, BootDevice, PowerAction, PowerDriver, PowerState
from arges.power.errors import PowerError, Unsupported
from arges.power.factory import build_driver

log = logging.getLogger(__name__)

POWER_MANAGEMENT = "PowerManagement"
CERTIFICATE_VERIFIED = "BMCCertificateVerified"
"""Redfish BMCs: whether Arges verifies the BMC's TLS certificate (False: it does not, by
``spec.bmc.insecure`` or a plain-HTTP endpoint), so an insecure setting is never silent."""
ACTIONS = {"on": PowerAction.ON, "off": PowerAction.OFF, "cycle": PowerAction.CYCLE}


def certificate_verification(info: BmcInfo) -> tuple[ConditionStatus, str, str]:
    """Status, reason and message of condition ``BMCCertificateVerified`` for ``info``."""
    if info.endpoint.startswith("http://"):
        return "False", "PlainHTTP", "the Redfish endpoint is plain HTTP: no TLS at all"
    if info.insecure:
        return (
            "False",
            "Insecure",
            "spec.bmc.insecure is set: the BMC's TLS certificate is not verified",
        )
    if info.ca:
        return "True", "SecretCA", "verified against ca.crt of the BMC credentials Secret"
    return "True", "HostCAs", "verified against the host's trusted CAs"


class CredentialsProblem(Exception):
    """The BMC credentials Secret is missing or incomplete."""


class PowerController(Controller):
    """See the module docstring."""

    name = "power"
    workers = 8

    def __init__(
        self,
        kube: KubeClient,
        cache: Cache,
        *,
        reboot_timeout: float = 900.0,
        refresh: float = 60.0,
        action_wait: float = 60.0,
    ) -> None:
        super().__init__(kube, cache)
        self.reboot_timeout = dt.timedelta(seconds=reboot_timeout)
        self.refresh = refresh
        self.action_wait = action_wait

    def watches(self) -> list[Watch]:
        def own(event_type: str | None, body: Body) -> list[tuple[str, Key]]:
            return [(self.name, key_of(body))]

        def bound(event_type: str | None, body: Body) -> list[tuple[str, Key]]:
            ref = (body.get("spec") or {}).get("serverRef") or {}
            return [(self.name, ref.get("name") or key_of(body))]

        return [Watch(SERVERS, own), Watch(SERVER_BINDINGS, bound)]

    async def reconcile(self, key: Key) -> float | None:
        body = self.cache.get(SERVERS, key)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return None
        server = Server.from_json(body)
        if server.spec.bmc is None:
            await self._record(
                server,
                PowerState.UNKNOWN,
                "False",
                "NoBMC",
                "no BMC configured: the agent waits for allocation instead",
            )
            return None
        try:
            info = await self._credentials(server)
            driver = build_driver(info)
            driver.validate()
        except (CredentialsProblem, Unsupported, ValueError) as exc:
            await self._record(server, PowerState.UNKNOWN, "False", "InvalidBMC", str(exc))
            return self.refresh
        if info.protocol == "redfish":
            await self._set(server, CERTIFICATE_VERIFIED, *certificate_verification(info))
        binding_body = self.cache.get(SERVER_BINDINGS, key)
        binding = ServerBinding.from_json(binding_body) if binding_body else None
        now = dt.datetime.now(dt.UTC)
        plan = intent(server, binding, now=now, reboot_timeout=self.reboot_timeout)
        try:
            state = await self._apply(server, driver, plan.action, plan.network_boot, now)
        except PowerError as exc:
            await self._record(server, PowerState.UNKNOWN, "False", type(exc).__name__, str(exc))
            raise RetryLater(str(exc)) from exc
        await self._record(server, state, "True", "BMCAnswers", plan.reason)
        return self.refresh

    async def _apply(
        self,
        server: Server,
        driver: PowerDriver,
        action: str | None,
        network_boot: bool,
        now: dt.datetime,
    ) -> PowerState:
        state = await driver.get_power_state()
        if (
            action is None
            or (action == "on" and state == PowerState.ON)
            or (action == "off" and state == PowerState.OFF)
        ):
            return state
        if network_boot:
            await driver.set_boot_device(BootDevice.NETWORK)
        if action == "cycle":
            await self._cycle_requested(server, now)
        log.info("%s: power %s%s", server.name, action, " (network boot)" if network_boot else "")
        return await driver.power(ACTIONS[action], self.action_wait)

    async def _cycle_requested(self, server: Server, now: dt.datetime) -> None:
        def record(obj: dict[str, Any]) -> dict[str, Any]:
            conditions = (obj.get("status") or {}).get("conditions") or []
            # Each request is a new one: its time moves even though the status stays True.
            fresh = Condition(
                type=POWER_CYCLE,
                status="True",
                reason="Requested",
                message="power cycle requested so the agent wipes the disks",
                last_transition_time=now.replace(microsecond=0),
            )
            kept = [c for c in conditions if c.get("type") != POWER_CYCLE]
            return {"conditions": [*kept, fresh.to_json()]}

        # The request is recorded before its Event: a kill between them loses the Event only.
        updated = await self.kube.update_status(SERVERS, server.name, record)
        await self.kube.event(updated, "PowerCycle", "network boot, then power cycle")

    async def _credentials(self, server: Server) -> BmcInfo:
        bmc = server.spec.bmc
        assert bmc is not None
        username = password = ca = ""
        ref = bmc.credentials_secret_ref
        if ref is not None:
            try:
                secret = await self.kube.get(SECRETS, ref.name, ref.namespace)
            except NotFound as exc:
                raise CredentialsProblem(
                    f"the BMC credentials Secret {ref.namespace}/{ref.name} does not exist"
                ) from exc
            data = secret.get("data") or {}
            try:
                username = base64.b64decode(data.get("username", "")).decode()
                password = base64.b64decode(data.get("password", "")).decode()
                ca = base64.b64decode(data.get("ca.crt", "")).decode()
            except (binascii.Error, UnicodeDecodeError) as exc:
                raise CredentialsProblem(f"Secret {ref.namespace}/{ref.name} is malformed") from exc
            if not username or not password:
                raise CredentialsProblem(
                    f"Secret {ref.namespace}/{ref.name} needs keys username and password"
                )
        return BmcInfo(
            bmc.address or "",
            bmc.port or IPMI_PORT,
            username,
            password,
            bmc.protocol,
            endpoint=bmc.endpoint or "",
            system_id=bmc.system_id or "",
            ca=ca,
            insecure=bool(bmc.insecure),
        )

    async def _set(
        self, server: Server, kind: str, status: ConditionStatus, reason: str, message: str
    ) -> None:
        now = dt.datetime.now(dt.UTC)

        def change(obj: dict[str, Any]) -> dict[str, Any] | None:
            return condition_patch(obj, kind, status, reason, message, now=now)

        cached = self.cache.get(SERVERS, server.name)
        if cached is None or change(cached) is not None:
            await self.kube.update_status(SERVERS, server.name, change)

    async def _record(
        self, server: Server, power: PowerState, status: Any, reason: str, message: str
    ) -> None:
        now = dt.datetime.now(dt.UTC)

        def change(obj: dict[str, Any]) -> dict[str, Any] | None:
            return condition_patch(
                obj,
                POWER_MANAGEMENT,
                status,
                reason,
                message,
                now=now,
                extra={"power": power.value},
            )

        cached = self.cache.get(SERVERS, server.name)
        # Every reconcile records; most find nothing new, and need not read the server again.
        if cached is None or change(cached) is not None:
            await self.kube.update_status(SERVERS, server.name, change)
