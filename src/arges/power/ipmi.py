"""IPMI 2.0 over LAN (RMCP+) through ``ipmitool``, as Ironic's default driver does.

The password reaches ipmitool through the ``IPMI_PASSWORD`` environment variable (``-E``),
never its arguments, so it shows neither in ``ps`` nor in logs. Cipher suite 17
(HMAC-SHA256, AES-CBC-128) is tried first, as current BMCs prefer it; a BMC that refuses it
is retried with suite 3 (HMAC-SHA1), which older BMCs and pyghmi's emulated BMC speak, and
the suite that worked is remembered per BMC. Every call has a bounded timeout, and ipmitool's
complaints are mapped to :mod:`arges.power.errors` with its own words.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import time

from arges.errors import ArgesError
from arges.power.base import BmcInfo, BootDevice, PowerAction, PowerDriver, PowerState
from arges.power.errors import (
    AuthenticationFailed,
    BmcError,
    BmcUnreachable,
    PowerError,
    Unsupported,
)

log = logging.getLogger(__name__)

CIPHER_SUITES = (17, 3)
COMMAND_TIMEOUT = 20.0
_suites: dict[tuple[str, int], int] = {}
"""The cipher suite that last worked per BMC address and port."""

ACTIONS = {
    PowerAction.ON: "on",
    PowerAction.OFF: "off",
    PowerAction.SOFT_OFF: "soft",
    PowerAction.CYCLE: "cycle",
    PowerAction.RESET: "reset",
}
BOOT_DEVICES = {BootDevice.NETWORK: "pxe", BootDevice.DISK: "disk", BootDevice.CD: "cdrom"}
"""ipmitool's names for the boot devices IPMI can select (it has none for UEFI HTTP boot)."""
STATUS = re.compile(r"Chassis Power is (on|off)", re.IGNORECASE)
UNREACHABLE = ("Get Auth Capabilities error", "Unable to get Channel Cipher")
AUTH_FAILED = (
    "RAKP 2 HMAC is invalid",
    "unauthorized name",
    "RAKP 4",
    "invalid user name",
    "Invalid user name",
    "no response from RAKP 1",
    "RAKP 2 message indicates",
)
SUITE_REFUSED = (
    "no matching cipher suite",
    "Invalid cipher suite",
    "is not what we requested",
    "Unsupported cipher suite",
)
RETRIES, RETRY_SECONDS = 2, 2
ANSWERED_WITHIN = 1.5
"""Seconds: ipmitool reports a refused password and a silent BMC with the same words, but a
refusal comes back at once while silence takes RETRIES x RETRY_SECONDS."""


class IpmiDriver(PowerDriver):
    """A BMC reached with ``ipmitool -I lanplus``."""

    def __init__(
        self, info: BmcInfo, *, ipmitool: str = "ipmitool", timeout: float = COMMAND_TIMEOUT
    ) -> None:
        super().__init__(info)
        self.ipmitool = ipmitool
        self.timeout = timeout

    def validate(self) -> None:
        if not self.info.address:
            raise ValueError("the BMC address is empty")
        if not 0 < self.info.port < 65536:
            raise ValueError(f"BMC port {self.info.port} is out of range")
        if not self.info.username:
            raise ValueError("the BMC username is empty")
        if shutil.which(self.ipmitool) is None:
            raise Unsupported(f"{self.ipmitool} is not installed (apt-get install ipmitool)")

    def _argv(self, suite: int, command: list[str]) -> list[str]:
        return [
            self.ipmitool,
            "-I",
            "lanplus",
            "-H",
            self.info.address,
            "-p",
            str(self.info.port),
            "-U",
            self.info.username,
            "-E",
            "-C",
            str(suite),
            "-N",
            "2",
            "-R",
            "2",
            *command,
        ]

    async def _run(self, command: list[str]) -> str:
        """Run ``command`` against the BMC, trying cipher suites in order."""
        key = (self.info.address, self.info.port)
        suites = [_suites[key]] if key in _suites else list(CIPHER_SUITES)
        last: PowerError | None = None
        for suite in suites:
            try:
                out = await self._once(suite, command)
            except _SuiteRefused as exc:
                last = BmcError(f"{self.info}: cipher suite {suite} refused: {exc}")
                continue
            _suites[key] = suite
            return out
        assert last is not None
        raise last

    async def _once(self, suite: int, command: list[str]) -> str:
        env = {**os.environ, "IPMI_PASSWORD": self.info.password}
        started = time.monotonic()
        try:
            proc = await asyncio.create_subprocess_exec(
                *self._argv(suite, command),
                env=env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except FileNotFoundError as exc:
            raise Unsupported(
                f"{self.ipmitool} is not installed (apt-get install ipmitool)"
            ) from exc
        try:
            async with asyncio.timeout(self.timeout):
                out, err = await proc.communicate()
        except TimeoutError as exc:
            await _reap(proc)
            raise BmcUnreachable(f"{self.info}: no answer within {self.timeout:.0f} s") from exc
        except asyncio.CancelledError:
            # A controller stopping mid-call must not leave ipmitool running unwatched.
            await _reap(proc)
            raise
        text, error = out.decode(errors="replace"), err.decode(errors="replace").strip()
        if proc.returncode == 0:
            return text
        raise _classify(self.info, error or text, suite, time.monotonic() - started)

    async def get_power_state(self) -> PowerState:
        out = await self._run(["chassis", "power", "status"])
        match = STATUS.search(out)
        if not match:
            raise BmcError(f"{self.info}: unexpected answer to power status: {out.strip()!r}")
        return PowerState(match.group(1).lower())

    async def _send(self, action: PowerAction) -> None:
        await self._run(["chassis", "power", ACTIONS[action]])

    async def set_boot_device(
        self, device: BootDevice, *, persistent: bool = False, uefi: bool = False
    ) -> None:
        if device not in BOOT_DEVICES:
            raise Unsupported(f"{self.info}: IPMI cannot select {device.value} boot")
        command = ["chassis", "bootdev", BOOT_DEVICES[device]]
        options = [o for o, on in (("persistent", persistent), ("efiboot", uefi)) if on]
        if options:
            command.append("options=" + ",".join(options))
        await self._run(command)


async def _reap(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    await proc.communicate()


class _SuiteRefused(ArgesError):
    """The BMC does not speak this cipher suite; try the next one."""


def _classify(info: BmcInfo, message: str, suite: int, elapsed: float) -> Exception:
    short = " ".join(message.split())[:300]
    if any(s.lower() in message.lower() for s in SUITE_REFUSED):
        return _SuiteRefused(short)
    if any(s in message for s in AUTH_FAILED):
        return AuthenticationFailed(f"{info}: the BMC refused the credentials ({short})")
    if any(s in message for s in UNREACHABLE):
        return BmcUnreachable(f"{info}: no answer ({short})")
    if "Unable to establish IPMI v2 / RMCP+ session" in message:
        if elapsed >= ANSWERED_WITHIN:
            return BmcUnreachable(
                f"{info}: no answer after {elapsed:.0f} s; check the address, port and network"
            )
        if suite != CIPHER_SUITES[-1]:
            return _SuiteRefused(short)
        return AuthenticationFailed(f"{info}: the BMC refused the credentials ({short})")
    return BmcError(f"{info}: {short}")
