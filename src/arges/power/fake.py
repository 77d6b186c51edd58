"""A BMC that exists only in memory: for tests, and for faults real BMCs do not make on demand.

Machines are kept per address in :data:`MACHINES`, so a test can look at (or change) the
state the driver reports. A :class:`Faults` record makes the next calls fail (``fail``
times, with the error given), hang (for ``hang`` seconds), or lie (report ``lie`` as the
power state, once per ``lie_times``).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from arges.power.base import BootDevice, PowerAction, PowerDriver, PowerState
from arges.power.errors import AuthenticationFailed, BmcUnreachable, PowerError


@dataclass
class Faults:
    """Faults the fake BMC makes on demand (see the module docstring): the next ``fail``
    calls raise ``error``; every call waits ``hang`` seconds first; the next ``lie_times``
    power readings report ``lie``."""

    fail: int = 0
    error: type[PowerError] = BmcUnreachable
    hang: float = 0.0
    lie: PowerState | None = None
    lie_times: int = 0


@dataclass
class FakeMachine:
    """What the fake BMC controls."""

    power: PowerState = PowerState.OFF
    boot_device: BootDevice = BootDevice.DISK
    persistent: bool = False
    password: str = "secret"
    faults: Faults = field(default_factory=Faults)
    actions: list[str] = field(default_factory=list)
    media: str | None = None
    """The URL of the image in the virtual CD, if any."""
    reads: int = 0
    """How many times the power state was read (answered or not)."""


MACHINES: dict[str, FakeMachine] = {}


class FakeDriver(PowerDriver):
    """Drives the :class:`FakeMachine` at its address (created on first use)."""

    poll_interval = 0.01

    @property
    def machine(self) -> FakeMachine:
        return MACHINES.setdefault(f"{self.info.address}:{self.info.port}", FakeMachine())

    def validate(self) -> None:
        if not self.info.address:
            raise ValueError("the BMC address is empty")

    async def _call(self) -> FakeMachine:
        machine = self.machine
        if machine.faults.hang:
            await asyncio.sleep(machine.faults.hang)
        if machine.faults.fail > 0:
            machine.faults.fail -= 1
            raise machine.faults.error(f"{self.info}: injected failure")
        if self.info.password != machine.password:
            raise AuthenticationFailed(f"{self.info}: the BMC refused the credentials")
        return machine

    async def get_power_state(self) -> PowerState:
        self.machine.reads += 1
        machine = await self._call()
        if machine.faults.lie is not None and machine.faults.lie_times > 0:
            machine.faults.lie_times -= 1
            return machine.faults.lie
        return machine.power

    async def _send(self, action: PowerAction) -> None:
        machine = await self._call()
        machine.actions.append(action.value)
        machine.power = (
            PowerState.OFF if action in (PowerAction.OFF, PowerAction.SOFT_OFF) else PowerState.ON
        )

    async def set_boot_device(
        self, device: BootDevice, *, persistent: bool = False, uefi: bool = False
    ) -> None:
        machine = await self._call()
        machine.actions.append(f"bootdev {device.value}")
        machine.boot_device = device
        machine.persistent = persistent

    async def insert_media(self, url: str) -> None:
        machine = await self._call()
        machine.actions.append(f"insert {url}")
        machine.media = url

    async def eject_media(self) -> None:
        machine = await self._call()
        if machine.media is not None:
            machine.actions.append("eject")
        machine.media = None
