"""Redfish through sushy, the client library OpenStack Ironic drives Redfish BMCs with.

What is used of the DMTF Redfish specification (DSP0266) and schema (DSP8010):

- **Sessions**: the driver logs in through the SessionService (``POST .../Sessions`` with
  UserName and Password, then ``X-Auth-Token`` on every request; sushy's ``SessionAuth``),
  never with Basic authentication. One session per BMC and login is kept for the life of the
  process and renewed by sushy when the BMC forgets it (a 401 answer).
- **Power**: ``ComputerSystem.Reset`` with the first ``ResetType`` the system allows from a
  preference list per action; off is ``GracefulShutdown`` first and ``ForceOff`` when the
  operating system has not shut down within :attr:`RedfishDriver.graceful_timeout`.
- **Boot**: a one-time (or continuous) ``BootSourceOverrideTarget`` of ``Pxe``, ``Hdd``,
  ``Cd`` (``UsbCd`` where only that is offered) or ``UefiHttp``, refused when the system
  does not list it among its allowable values, and read back after it is set.
- **Virtual media**: ``VirtualMedia.InsertMedia``/``EjectMedia`` on the system's CD or DVD
  device (under the ComputerSystem, else under its Managers, as older services put it).
- **TLS**: the BMC's certificate is verified against ``BmcInfo.ca`` (the Secret's
  ``ca.crt``), else the host's trusted CAs; ``insecure`` turns verification off.

sushy is synchronous: every call runs in a worker thread (:func:`asyncio.to_thread`) under
an overall timeout, and sushy's own HTTP timeouts bound the thread. Errors map onto
:mod:`arges.power.errors` with the BMC's own words; no message carries the password (sushy
also masks ``Password`` in its debug logs).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests
import sushy
from sushy import exceptions as sushy_errors
from sushy.resources.manager.virtual_media import VirtualMedia
from sushy.resources.system.system import System

from arges.power.base import BmcInfo, BootDevice, PowerAction, PowerDriver, PowerState, shown
from arges.power.errors import (
    AuthenticationFailed,
    BmcError,
    BmcUnreachable,
    PowerError,
    PowerTimeout,
    TlsUntrusted,
    Unsupported,
)

log = logging.getLogger(__name__)
# sushy's debug lines hold whole request bodies and resources, and InsertMedia's image URL
# holds the credential of the boot it is for (arges.boot.media): secrets stay out of logs,
# whatever --log-level says.
logging.getLogger("sushy").setLevel(logging.INFO)

T = TypeVar("T")

CALL_TIMEOUT = 30.0
"""Seconds one driver call (a few HTTP requests) may take in all."""
REQUEST_TIMEOUT = 10.0
"""Seconds sushy waits for one HTTP answer (connect and read)."""
GRACEFUL_TIMEOUT = 30.0
"""Seconds an operating system gets to shut down before the server is forced off."""

RESET_PREFERENCES: dict[PowerAction, tuple[sushy.ResetType, ...]] = {
    PowerAction.ON: (sushy.ResetType.ON, sushy.ResetType.FORCE_ON),
    PowerAction.OFF: (sushy.ResetType.FORCE_OFF,),
    PowerAction.SOFT_OFF: (sushy.ResetType.GRACEFUL_SHUTDOWN,),
    PowerAction.CYCLE: (sushy.ResetType.POWER_CYCLE, sushy.ResetType.FORCE_RESTART),
    PowerAction.RESET: (sushy.ResetType.FORCE_RESTART, sushy.ResetType.POWER_CYCLE),
}
"""Per action, the Redfish ``ResetType`` values that perform it, best first."""

BOOT_SOURCES: dict[BootDevice, tuple[sushy.BootSource, ...]] = {
    BootDevice.NETWORK: (sushy.BootSource.PXE,),
    BootDevice.DISK: (sushy.BootSource.HDD,),
    # Some BMCs (SuperMicro X11/X12) present virtual media as a USB CD only.
    BootDevice.CD: (sushy.BootSource.CD, sushy.BootSource.USB_CD),
    BootDevice.HTTP: (sushy.BootSource.UEFI_HTTP,),
}

POWER_STATES = {sushy.PowerState.ON: PowerState.ON, sushy.PowerState.OFF: PowerState.OFF}
"""Redfish power states as Arges reads them; the transitional ones (PoweringOn, PoweringOff)
and Paused are neither, so a wait for on or off goes on through them."""

CD_TYPES = {sushy.VirtualMediaType.CD, sushy.VirtualMediaType.DVD}


@dataclass
class _Client:
    """One logged-in sushy client, shared by every driver for the same BMC and login."""

    root: sushy.Sushy
    lock: threading.Lock = field(default_factory=threading.Lock)
    systems: dict[str, str] = field(default_factory=dict)
    """System id ("" for the only one) to its resource path."""


_clients: dict[tuple[str, str, str, str], _Client] = {}
_clients_lock = threading.Lock()


def ca_file(pem: str) -> Path:
    """A file holding ``pem`` (requests verifies against a path), named by its digest.

    CA certificates are public; the file is still created readable by its owner only.
    """
    digest = hashlib.sha256(pem.encode()).hexdigest()[:32]
    directory = Path(tempfile.gettempdir()) / "arges-bmc-ca"
    directory.mkdir(mode=0o700, exist_ok=True)
    path = directory / f"{digest}.pem"
    if not path.exists():
        tmp = path.with_suffix(f".{threading.get_ident()}.tmp")
        tmp.touch(mode=0o600)
        tmp.write_text(pem)
        tmp.replace(path)
    return path


class RedfishDriver(PowerDriver):
    """A Redfish BMC reached with sushy (see the module docstring)."""

    graceful_timeout = GRACEFUL_TIMEOUT

    def __init__(
        self,
        info: BmcInfo,
        *,
        timeout: float = CALL_TIMEOUT,
        request_timeout: float = REQUEST_TIMEOUT,
    ) -> None:
        super().__init__(info)
        self.timeout = timeout
        self.request_timeout = request_timeout

    def validate(self) -> None:
        url = urlsplit(self.info.endpoint)
        if not self.info.endpoint:
            raise ValueError("a Redfish BMC needs spec.bmc.endpoint (https://host[:port])")
        if url.scheme not in ("https", "http") or not url.hostname:
            raise ValueError(
                f"the Redfish endpoint {self.info.endpoint!r} is not an http(s)://host URL"
            )
        if url.path.strip("/"):
            raise ValueError(
                f"the Redfish endpoint {self.info.endpoint!r} has a path: give the service's "
                "base URL only (the service root is /redfish/v1/ under it)"
            )
        if not self.info.username or not self.info.password:
            raise ValueError("a Redfish BMC needs a credentials Secret (username and password)")

    @property
    def verify(self) -> bool | str:
        """What requests verifies the BMC's certificate with (see the module docstring)."""
        if self.info.insecure:
            return False
        return str(ca_file(self.info.ca)) if self.info.ca else True

    def _key(self) -> tuple[str, str, str, str]:
        secret = hashlib.sha256(self.info.password.encode()).hexdigest()
        return (self.info.endpoint.rstrip("/"), self.info.username, secret, str(self.verify))

    def _client(self) -> _Client:
        key = self._key()
        with _clients_lock:
            client = _clients.get(key)
        if client is not None:
            return client
        root = sushy.Sushy(
            self.info.endpoint.rstrip("/"),
            auth=sushy.auth.SessionAuth(self.info.username, self.info.password),
            verify=self.verify,
            read_timeout=self.request_timeout,
            connect_timeout=self.request_timeout,
            server_side_retries=1,
            server_side_retries_delay=1,
        )
        client = _Client(root)
        with _clients_lock:
            return _clients.setdefault(key, client)

    def _forget(self) -> None:
        with _clients_lock:
            _clients.pop(self._key(), None)

    def _system(self, client: _Client) -> System:
        wanted = self.info.system_id
        path = client.systems.get(wanted)
        if path is None:
            if not wanted:
                members = client.root.get_system_collection().get_members()
                if len(members) != 1:
                    ids = ", ".join(m.identity for m in members) or "none"
                    raise BmcError(
                        f"{self.info}: the service has {len(members)} systems ({ids}): "
                        "name one in spec.bmc.systemId"
                    )
                path = members[0].path
            elif wanted.startswith("/"):
                path = wanted
            else:
                path = f"{client.root.get_system_collection().path.rstrip('/')}/{wanted}"
        try:
            system = client.root.get_system(path)
        except sushy_errors.ResourceNotFoundError as exc:
            client.systems.pop(wanted, None)
            raise BmcError(
                f"{self.info}: the service has no system {path}: check spec.bmc.systemId"
            ) from exc
        client.systems[wanted] = path
        return system

    async def _call(self, what: str, work: Callable[[System], T]) -> T:
        """Run ``work`` on the system in a worker thread, within :attr:`timeout` seconds."""

        def run() -> T:
            client = self._client()
            with client.lock:
                return work(self._system(client))

        try:
            async with asyncio.timeout(self.timeout):
                return await asyncio.to_thread(self._mapped, what, run)
        except TimeoutError as exc:
            self._forget()
            raise BmcUnreachable(
                f"{self.info}: no answer to {what} within {self.timeout:.0f} s"
            ) from exc

    def _mapped(self, what: str, run: Callable[[], T]) -> T:
        """``run()`` with sushy's and requests' errors turned into :mod:`arges.power.errors`."""
        try:
            return run()
        except PowerError:
            raise
        except sushy_errors.ConnectionError as exc:
            self._forget()
            text = str(exc)
            if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
                against = "the CA in the credentials Secret" if self.info.ca else "the host CAs"
                raise TlsUntrusted(
                    f"{self.info}: the BMC's TLS certificate did not verify against {against}; "
                    "give the CA that signed it in the Secret's ca.crt, or set spec.bmc.insecure"
                ) from exc
            raise BmcUnreachable(f"{self.info}: no answer to {what} ({_short(text)})") from exc
        except sushy_errors.AccessError as exc:
            self._forget()
            raise AuthenticationFailed(
                f"{self.info}: the BMC refused the credentials ({_short(str(exc))})"
            ) from exc
        except (sushy_errors.MissingActionError, sushy_errors.InvalidParameterValueError) as exc:
            raise Unsupported(f"{self.info}: {what}: {_short(str(exc))}") from exc
        except sushy_errors.SushyError as exc:
            raise BmcError(f"{self.info}: {what} failed: {_short(str(exc))}") from exc
        except requests.RequestException as exc:
            self._forget()
            raise BmcUnreachable(f"{self.info}: no answer to {what} ({_short(str(exc))})") from exc

    async def get_power_state(self) -> PowerState:
        def read(system: System) -> PowerState:
            return POWER_STATES.get(system.power_state, PowerState.UNKNOWN)

        return await self._call("reading the power state", read)

    async def _send(self, action: PowerAction) -> None:
        def send(system: System) -> None:
            allowed = system.get_allowed_reset_system_values()
            choice = next((r for r in RESET_PREFERENCES[action] if r in allowed), None)
            if choice is None:
                offered = ", ".join(sorted(r.value for r in allowed))
                raise Unsupported(
                    f"{self.info}: the system offers no reset for power {action.value} "
                    f"(it offers {offered})"
                )
            log.info("%s: ComputerSystem.Reset %s", self.info, choice.value)
            system.reset_system(choice)

        await self._call(f"power {action.value}", send)

    async def power(self, action: PowerAction, wait: float = 60.0) -> PowerState:
        """As :meth:`PowerDriver.power`; power off is a graceful shutdown first, forced once
        :attr:`graceful_timeout` (at most ``wait``) seconds pass with the server still on."""
        if action is not PowerAction.OFF:
            return await super().power(action, wait)
        grace = min(self.graceful_timeout, wait)
        try:
            return await super().power(PowerAction.SOFT_OFF, grace)
        except PowerTimeout:
            log.info(
                "%s: still on %.0f s after a graceful shutdown: forcing it off", self.info, grace
            )
        except Unsupported:
            log.info("%s: no graceful shutdown offered: forcing it off", self.info)
        return await super().power(PowerAction.OFF, wait)

    async def set_boot_device(
        self, device: BootDevice, *, persistent: bool = False, uefi: bool = False
    ) -> None:
        enabled = (
            sushy.BootSourceOverrideEnabled.CONTINUOUS
            if persistent
            else sushy.BootSourceOverrideEnabled.ONCE
        )
        mode = sushy.BootSourceOverrideMode.UEFI if uefi else None

        def override(system: System) -> None:
            allowed = system.get_allowed_system_boot_source_values()
            target = next((s for s in BOOT_SOURCES[device] if s in allowed), None)
            if target is None:
                offered = ", ".join(sorted(s.value for s in allowed))
                raise Unsupported(
                    f"{self.info}: the system cannot boot from {device.value} (it offers {offered})"
                )
            system.set_system_boot_options(target=target, enabled=enabled, mode=mode)
            system.refresh()
            boot = system.boot
            if boot.target != target or (mode is not None and boot.mode != mode):
                raise BmcError(
                    f"{self.info}: the boot override to {target.value} did not hold (the "
                    f"system reports {_value(boot.target)}, mode {_value(boot.mode)})"
                )
            log.info("%s: next boot from %s (%s)", self.info, target.value, enabled.value)

        await self._call(f"setting the boot device to {device.value}", override)

    def _cd(self, system: System) -> VirtualMedia:
        """The system's virtual CD or DVD drive."""
        collections = []
        with contextlib.suppress(sushy_errors.MissingAttributeError):
            collections.append(system.virtual_media)
        with contextlib.suppress(sushy_errors.MissingAttributeError):
            collections += [manager.virtual_media for manager in system.managers]
        for collection in collections:
            try:
                members = collection.get_members()
            except sushy_errors.SushyError:
                continue
            for device in members:
                if CD_TYPES.intersection(device.media_types or ()):
                    return device
        raise Unsupported(f"{self.info}: the system has no virtual CD or DVD drive")

    async def insert_media(self, url: str) -> None:
        def insert(system: System) -> None:
            device = self._cd(system)
            if device.inserted and device.image == url:
                return
            if device.inserted:
                device.eject_media()
            device.insert_media(url, inserted=True, write_protected=True)
            device.refresh()
            if not device.inserted or device.image != url:
                raise BmcError(
                    f"{self.info}: InsertMedia was accepted but the drive reports "
                    f"{shown(device.image or '') or 'no image'} (inserted: {device.inserted})"
                )
            log.info("%s: virtual CD %s holds %s", self.info, device.identity, shown(url))

        await self._call("inserting virtual media", insert)

    async def eject_media(self) -> None:
        def eject(system: System) -> None:
            device = self._cd(system)
            if not device.inserted and not device.image:
                return
            device.eject_media()
            device.refresh()
            if device.inserted:
                raise BmcError(f"{self.info}: EjectMedia was accepted but the CD is still in")
            log.info("%s: virtual CD %s ejected", self.info, device.identity)

        await self._call("ejecting virtual media", eject)


def _short(text: str) -> str:
    return " ".join(text.split())[:300]


def _value(item: Any) -> str:
    return str(getattr(item, "value", item))
