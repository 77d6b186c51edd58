"""The power controller: every server's BMC made to follow :func:`arges.metal.power.intent`.

Per server, one action at a time (the work queue serialises keys); across servers, in
parallel. Each reconcile reads the power state into ``status.power``, performs the intended
action through the driver the factory picks (verified by reading back), and records the
outcome in the ``PowerManagement`` condition. A BMC error becomes that condition (False, with
the BMC's words) and a retry with capped exponential backoff; the condition turns True again
when the BMC answers. A cycle is recorded (condition ``PowerCycle``) before it is sent, so a
controller restarted in the middle of a cycle does not cycle again.

A reconcile whose plan the last BMC reading already showed done (the same plan, the same BMC,
read within ``refresh``) asks neither the BMC nor the credentials Secret, and waits for the
refresh instead (:func:`arges.metal.power.read_again_in`): most writes to a Server change no
power decision. That reading is kept in memory only, so a restarted controller reads every
BMC once.

A server without a BMC gets no power actions and ``status.power`` unknown; its agent waits
(polling) instead of rebooting, so it is reprovisioned when allocated without reboot loops.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from arges.api.base import Condition, ConditionStatus
from arges.api.binding import ServerBinding, releasing
from arges.api.server import IPMI_PORT, BootMethod, Server
from arges.api.serverclass import ServerClass
from arges.controllers.ownwrites import OwnWrites
from arges.controllers.parsed import parsed
from arges.controllers.relevance import ClassBoot, Facts, boot_affected, power_facts
from arges.controllers.runtime import Body, Cache, Controller, Key, RetryLater, Watch, key_of
from arges.errors import ArgesError
from arges.kube.client import KubeClient
from arges.kube.errors import KubeError, NotFound
from arges.kube.resources import SECRETS, SERVER_BINDINGS, SERVER_CLASSES, SERVERS
from arges.metal.conditions import condition_patch, find
from arges.metal.media import MediaUnavailable
from arges.metal.power import (
    AGENT_MEDIA,
    POWER_CYCLE,
    PowerIntent,
    Reading,
    intent,
    read_again_in,
)
from arges.metrics import Metrics
from arges.power.base import BmcInfo, BootDevice, PowerAction, PowerDriver, PowerState, shown
from arges.power.errors import PowerError, Unsupported
from arges.power.factory import build_driver

log = logging.getLogger(__name__)

POWER_MANAGEMENT = "PowerManagement"
CERTIFICATE_VERIFIED = "BMCCertificateVerified"
"""Redfish BMCs: whether Arges verifies the BMC's TLS certificate (False: it does not, by
``spec.bmc.insecure`` or a plain-HTTP endpoint), so an insecure setting is never silent."""
OWN_CONDITIONS = frozenset({POWER_MANAGEMENT, CERTIFICATE_VERIFIED})
"""The conditions only this controller writes, recording the BMC's answers."""
ACTIONS = {"on": PowerAction.ON, "off": PowerAction.OFF, "cycle": PowerAction.CYCLE}
DONE = {"on": "PoweredOn", "off": "PoweredOff", "cycle": "PowerCycled"}
"""The reason of the Event recording each action the BMC carried out."""
_NO_CLASS: ClassBoot = (None, frozenset())
BMC_CREDENTIALS_LABEL = "metal.arges.dev/bmc-credentials"
"""Set to ``"true"`` on each Secret a Server's BMC names, when the controller first reads it:
the controller watches only the Secrets so labelled and reads them from its cache after, as
Metal3's baremetal-operator labels the BMC Secrets it uses
(``environment.metal3.io=baremetal``). A change to one reaches the BMC at once."""


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


class CredentialsProblem(ArgesError):
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
        reset_timeout: float = 300.0,
        refresh: float = 60.0,
        action_wait: float = 60.0,
        media: Callable[[str], Awaitable[str]] | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        """``media`` gives the URL of a Server's agent ISO, built, where its BMC fetches it
        for a virtual-media boot (None: Arges serves no boot HTTP, so there is none)."""
        super().__init__(kube, cache)
        self.metrics = metrics if metrics is not None else Metrics()
        self.media = media
        self.reboot_timeout = dt.timedelta(seconds=reboot_timeout)
        self.reset_timeout = dt.timedelta(seconds=reset_timeout)
        self.refresh = refresh
        self.action_wait = action_wait
        self._class_boot: dict[Key, ClassBoot] = {}
        """Per ServerClass, its bootMethod and members as last seen (see ``watches``)."""
        self._facts = Facts(lambda body: power_facts(body, OWN_CONDITIONS))
        """Per Server, what a reconcile may read of it (see ``watches``)."""
        self._readings: dict[Key, Reading] = {}
        """Per Server, the BMC reading its last reconcile carried out its plan on, kept only
        while that reconcile is the last (a failure or a restart reads the BMC again; see
        :func:`arges.metal.power.read_again_in`)."""
        self._secrets: dict[tuple[str, str], str] = {}
        """Per BMC credentials Secret watched, a digest of what it holds (see ``watches``)."""
        self._own = OwnWrites()
        """Per Server, this controller's last write, for the next write of the same
        reconcile (a cycle's record, then the BMC's answer) before the watch brings it."""

    def watches(self) -> list[Watch]:
        def own(event_type: str | None, body: Body) -> list[tuple[str, Key]]:
            # The controller's own records (the power reading, its conditions) woke it for
            # nothing; the periodic refresh reads the BMC anyway.
            if not self._facts.changed(event_type, body):
                return []
            if event_type == "DELETED":
                self._readings.pop(key_of(body), None)
            return [(self.name, key_of(body))]

        def bound(event_type: str | None, body: Body) -> list[tuple[str, Key]]:
            ref = (body.get("spec") or {}).get("serverRef") or {}
            return [(self.name, ref.get("name") or key_of(body))]

        def members(event_type: str | None, body: Body) -> list[tuple[str, Key]]:
            # A class matters to a server's power only through its bootMethod: its members
            # are reconciled when that changes, and servers joining or leaving a class that
            # sets one; a membership change of a class without one (the usual case, and a
            # status write per fleet change) concerns no server's power.
            status = body.get("status") or {}
            names = [*(status.get("serversAvailable") or []), *(status.get("serversInUse") or [])]
            method = (body.get("spec") or {}).get("bootMethod")
            new = (method, frozenset(names)) if event_type != "DELETED" else (None, frozenset())
            old = self._class_boot.pop(key_of(body), (None, frozenset()))
            if new[0] is not None or new[1]:
                self._class_boot[key_of(body)] = new
            affected = boot_affected(old, new)
            return [(self.name, name) for name in sorted(affected)]

        def credentials(event_type: str | None, body: Body) -> list[tuple[str, Key]]:
            # Only a change of what the Secret holds concerns the Servers naming it (not the
            # label this controller adds); the listing enqueues every Server anyway.
            meta = body.get("metadata") or {}
            secret = (meta.get("namespace") or "", meta.get("name") or "")
            held = _digest(body) if event_type != "DELETED" else None
            before = self._secrets.pop(secret, None)
            if held is not None:
                self._secrets[secret] = held
            if event_type is None or held == before:
                return []
            return [
                (self.name, key_of(server))
                for server in self.cache.objects(SERVERS)
                if _secret_of(server) == secret
            ]

        return [
            Watch(SERVERS, own),
            Watch(SERVER_BINDINGS, bound),
            Watch(SERVER_CLASSES, members),
            Watch(SECRETS, credentials, label_selector=f"{BMC_CREDENTIALS_LABEL}=true"),
        ]

    async def reconcile(self, key: Key) -> float | None:
        body = self.cache.get(SERVERS, key)
        if body is None or body["metadata"].get("deletionTimestamp"):
            self._own.forget(key)
            return None
        server = parsed(self.cache, SERVERS, Server).get(key)
        assert server is not None
        if server.spec.bmc is None:
            # A server never given a BMC has no reading to report: it gets no condition (and
            # no write racing its registration, which discovered servers all are). One whose
            # BMC was taken away says why it is no longer read.
            if find(server.status.conditions, POWER_MANAGEMENT) is None:
                return None
            await self._record(
                server,
                PowerState.UNKNOWN,
                "False",
                "NoBMC",
                "no BMC configured: the agent waits for allocation instead",
            )
            return None
        binding_body = self.cache.get(SERVER_BINDINGS, key)
        # A binding being deleted holds nothing any more: its server goes to the agent.
        held = binding_body is not None and not releasing(binding_body)
        binding = parsed(self.cache, SERVER_BINDINGS, ServerBinding).get(key) if held else None
        now = dt.datetime.now(dt.UTC)
        plan = intent(
            server,
            binding,
            now=now,
            reboot_timeout=self.reboot_timeout,
            reset_timeout=self.reset_timeout,
            boot_method=self._boot_method(server),
        )
        # Changed credentials are a new BMC setting too: the BMC is read again at once.
        secret = _secret_of(body)
        holds = self._secrets.get(secret) if secret else None
        bmc = json.dumps([body["spec"].get("bmc"), holds], sort_keys=True)
        last = self._readings.get(key)
        wait = read_again_in(last, plan, bmc, now=time.monotonic(), refresh=self.refresh)
        if wait > 0:
            return wait
        self._readings.pop(key, None)
        try:
            info = await self._credentials(server)
            driver = build_driver(info)
            driver.validate()
        except (CredentialsProblem, Unsupported, ValueError) as exc:
            await self._record(server, PowerState.UNKNOWN, "False", "InvalidBMC", str(exc))
            return self.refresh
        if info.protocol == "redfish":
            await self._set(server, CERTIFICATE_VERIFIED, *certificate_verification(info))
        read_at = time.monotonic()
        try:
            state = await self._apply(server, body, driver, plan, now)
        except PowerError as exc:
            await self._record(server, PowerState.UNKNOWN, "False", type(exc).__name__, str(exc))
            await self.kube.event(body, "PowerFailed", str(exc), type="Warning")
            raise RetryLater(str(exc)) from exc
        except MediaUnavailable as exc:
            await self._record(
                server, PowerState.UNKNOWN, "False", "AgentMediaUnavailable", str(exc)
            )
            raise RetryLater(str(exc)) from exc
        await self._record(server, state, "True", "BMCAnswers", plan.reason)
        self._readings[key] = Reading(plan, bmc, state.value, read_at)
        return self.refresh

    def _boot_method(self, server: Server) -> BootMethod:
        """The Server's boot method, else that of the first ServerClass (by name) it belongs
        to that sets one, else network."""
        if server.spec.boot_method is not None:
            return server.spec.boot_method
        classes = parsed(self.cache, SERVER_CLASSES, ServerClass).all()
        for name, server_class in sorted(classes.items()):
            method = server_class.spec.boot_method
            # The members as a set (kept by the watch): a class's lists grow with the fleet,
            # and every reconcile asks.
            if method is not None and server.name in self._class_boot.get(name, _NO_CLASS)[1]:
                return method
        return "network"

    async def _apply(
        self,
        server: Server,
        body: Body,
        driver: PowerDriver,
        plan: PowerIntent,
        now: dt.datetime,
    ) -> PowerState:
        state = await driver.get_power_state()
        if plan.eject:
            await driver.eject_media()
            await self._set(server, AGENT_MEDIA, "False", "Ejected", "the agent ISO was ejected")
        action = plan.action
        if (
            action is None
            or (action == "on" and state == PowerState.ON)
            or (action == "off" and state == PowerState.OFF)
        ):
            return state
        if plan.network_boot:
            await driver.set_boot_device(BootDevice.NETWORK)
        if plan.media:
            if self.media is None:
                raise Unsupported(
                    "virtual media needs Arges' boot HTTP service, which serves the agent ISO"
                )
            url = await self.media(server.name)
            await driver.insert_media(url)
            # The URL's query holds the boot's credential: it goes to the BMC, not the status.
            await self._set(server, AGENT_MEDIA, "True", "Inserted", f"the agent ISO {shown(url)}")
            await driver.set_boot_device(BootDevice.CD)
        if action == "cycle":
            await self._cycle_requested(server, now, plan.reason)
        how = " (network boot)" if plan.network_boot else " (virtual media)" if plan.media else ""
        log.info("%s: power %s%s", server.name, action, how)
        with self.metrics.power_operation(driver.info.protocol, action):
            state = await driver.power(ACTIONS[action], self.action_wait)
        message = f"{plan.reason}{how}; the BMC reports power {state.value}"
        await self.kube.event(body, DONE[action], message)
        return state

    async def _cycle_requested(self, server: Server, now: dt.datetime, why: str) -> None:
        def record(obj: dict[str, Any]) -> dict[str, Any]:
            conditions = (obj.get("status") or {}).get("conditions") or []
            # Each request is a new one: its time moves even though the status stays True.
            fresh = Condition(
                type=POWER_CYCLE,
                status="True",
                reason="Requested",
                message=f"power cycle requested ({why})",
                last_transition_time=now.replace(microsecond=0),
            )
            kept = [c for c in conditions if c.get("type") != POWER_CYCLE]
            return {"conditions": [*kept, fresh.to_json()]}

        # The request is recorded before its Event: a kill between them loses the Event only.
        updated = await self._write(server.name, record)
        await self.kube.event(updated, "PowerCycle", why)

    async def _credentials(self, server: Server) -> BmcInfo:
        bmc = server.spec.bmc
        assert bmc is not None
        username = password = ca = ""
        ref = bmc.credentials_secret_ref
        if ref is not None:
            secret = self.cache.get(SECRETS, f"{ref.namespace}/{ref.name}")
            if secret is None:
                try:
                    secret = await self.kube.get(SECRETS, ref.name, ref.namespace)
                except NotFound as exc:
                    raise CredentialsProblem(
                        f"the BMC credentials Secret {ref.namespace}/{ref.name} does not exist"
                    ) from exc
                await self._follow(secret)
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

    async def _follow(self, secret: dict[str, Any]) -> None:
        """Label a BMC credentials Secret read from the API, so the watch brings it (and its
        changes) from now on. Without the right to, it is read on each use instead."""
        meta = secret.get("metadata") or {}
        if (meta.get("labels") or {}).get(BMC_CREDENTIALS_LABEL) == "true":
            return
        try:
            await self.kube.patch(
                SECRETS,
                meta["name"],
                {"metadata": {"labels": {BMC_CREDENTIALS_LABEL: "true"}}},
                meta.get("namespace"),
            )
        except KubeError as exc:
            log.info(
                "Secret %s/%s is read on each use: %s", meta.get("namespace"), meta["name"], exc
            )

    async def _set(
        self, server: Server, kind: str, status: ConditionStatus, reason: str, message: str
    ) -> None:
        now = dt.datetime.now(dt.UTC)

        def change(obj: dict[str, Any]) -> dict[str, Any] | None:
            return condition_patch(obj, kind, status, reason, message, now=now)

        await self._write(server.name, change)

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

        # Every reconcile records; most find nothing new in the cache's copy.
        await self._write(server.name, change)

    async def _write(
        self, name: str, change: Callable[[dict[str, Any]], dict[str, Any] | None]
    ) -> dict[str, Any]:
        """``change`` written on the freshest copy at hand, without a read: the cache's, or
        this controller's own last write while the cache has not caught up with it (a stale
        copy is refused with 409 and read again by ``update_status``)."""
        current = self._own.current(name, self.cache.get(SERVERS, name))
        updated = await self.kube.update_status(SERVERS, name, change, current=current)
        self._own.wrote(name, current, updated)
        return updated


def _secret_of(server: Body) -> tuple[str, str] | None:
    """(namespace, name) of the credentials Secret a Server's BMC names, if any."""
    bmc = (server.get("spec") or {}).get("bmc") or {}
    ref = bmc.get("credentialsSecretRef") or {}
    return (ref.get("namespace") or "default", ref["name"]) if ref.get("name") else None


def _digest(secret: Body) -> str:
    """A digest of what a Secret holds (its data, not its metadata): kept instead of the
    credentials themselves."""
    data = json.dumps(secret.get("data") or {}, sort_keys=True)
    return hashlib.sha256(data.encode()).hexdigest()
