"""The power driver interface (after Ironic's ``PowerInterface`` and ``ManagementInterface``).

A driver implements three primitives (read the power state, send an action, set the boot
device) and :meth:`PowerDriver.validate`; a driver whose BMC offers virtual media also
implements :meth:`PowerDriver.insert_media` and :meth:`PowerDriver.eject_media`. The base
class turns the primitives into what controllers call: :meth:`PowerDriver.power`, which
sends the action, turning a cycle of a server that is off into a power-on (many BMCs refuse
to cycle an off chassis), and then reads the state back until it matches or the timeout
passes, because BMCs report the new state late (Sidero #257) and sometimes not at all.

Whether an action is needed at all is the caller's decision, as in Ironic (its conductor,
not the driver, compares the current state with the target): the power controller reads the
state and skips an action whose target already holds, and with it the boot device, media and
Event that would come with it (:mod:`arges.controllers.power`).
"""

from __future__ import annotations

import abc
import asyncio
import time
from dataclasses import dataclass, field
from enum import Enum

from arges.power.errors import PowerTimeout, Unsupported


def shown(url: str) -> str:
    """``url`` as it may be logged or written into a status: without its query, which holds
    the credential of the boot an agent ISO is for (:mod:`arges.boot.media`)."""
    return url.split("?", 1)[0]


class PowerState(Enum):
    """A machine's power as its BMC reports it (IPMI ``chassis power status``, Redfish
    ``PowerState``); ``UNKNOWN`` when the BMC does not say."""

    ON = "on"
    OFF = "off"
    UNKNOWN = "unknown"


class PowerAction(Enum):
    """What a driver asks the BMC for: IPMI ``chassis power on|off|soft|cycle|reset``, or the
    Redfish ``ResetType`` that :mod:`arges.power.redfish` maps each to."""

    ON = "on"
    OFF = "off"
    SOFT_OFF = "soft"
    CYCLE = "cycle"
    RESET = "reset"


TARGET_STATE = {
    PowerAction.ON: PowerState.ON,
    PowerAction.OFF: PowerState.OFF,
    PowerAction.SOFT_OFF: PowerState.OFF,
    PowerAction.CYCLE: PowerState.ON,
    PowerAction.RESET: PowerState.ON,
}


class BootDevice(Enum):
    """Where the next boot comes from: PXE, the first disk, a (virtual) CD, or UEFI HTTP
    boot (Redfish's ``Pxe``, ``Hdd``, ``Cd`` and ``UefiHttp``)."""

    NETWORK = "network"
    DISK = "disk"
    CD = "cd"
    HTTP = "http"


@dataclass(frozen=True)
class BmcInfo:
    """How to reach one BMC. The password is kept out of ``repr`` (and so out of logs).

    Redfish BMCs are reached at ``endpoint`` (the service's base URL, ``https://host[:port]``);
    ``system_id`` names the ComputerSystem (empty: the service's only one), ``ca`` is the PEM
    bundle that signed the BMC's certificate (empty: the host's trusted CAs), and
    ``insecure`` skips certificate verification altogether.
    """

    address: str
    port: int
    username: str
    password: str = field(repr=False)
    protocol: str = "ipmi"
    endpoint: str = ""
    system_id: str = ""
    ca: str = field(default="", repr=False)
    insecure: bool = False

    def __str__(self) -> str:
        if self.endpoint:
            return self.endpoint
        return f"{self.protocol}://{self.address}:{self.port}"


class PowerDriver(abc.ABC):
    """One BMC (see the module docstring). Errors: :mod:`arges.power.errors`."""

    poll_interval = 1.0
    """Seconds between state reads while waiting for an action to take effect."""

    def __init__(self, info: BmcInfo) -> None:
        self.info = info

    @abc.abstractmethod
    def validate(self) -> None:
        """Check the parameters without touching the BMC (it is called often, and BMCs
        are fragile). Raises Unsupported or ValueError."""

    @abc.abstractmethod
    async def get_power_state(self) -> PowerState:
        """The chassis power state as the BMC reports it."""

    @abc.abstractmethod
    async def _send(self, action: PowerAction) -> None:
        """Ask the BMC to perform ``action`` (without waiting for its effect)."""

    @abc.abstractmethod
    async def set_boot_device(
        self, device: BootDevice, *, persistent: bool = False, uefi: bool = False
    ) -> None:
        """Boot from ``device`` next time (every time with ``persistent``), in UEFI mode
        when ``uefi``."""

    async def insert_media(self, url: str) -> None:
        """Insert the ISO image at ``url`` into the BMC's virtual CD (the BMC fetches it).

        Raises:
            Unsupported: the BMC (or its protocol) has no virtual media.
        """
        raise Unsupported(f"{self.info}: {self.info.protocol} BMCs have no virtual media")

    async def eject_media(self) -> None:
        """Eject whatever the virtual CD holds (nothing to do when it is empty).

        Raises:
            Unsupported: the BMC (or its protocol) has no virtual media.
        """
        raise Unsupported(f"{self.info}: {self.info.protocol} BMCs have no virtual media")

    async def power(self, action: PowerAction, wait: float = 60.0) -> PowerState:
        """Perform ``action`` and wait (up to ``wait`` seconds) until the state reflects it.

        The action is sent even when its target state already holds (the caller decides
        whether it is needed; see the module docstring). Returns the state read back.
        Raises PowerTimeout when it never matches.
        """
        target = TARGET_STATE[action]
        cycle = action in (PowerAction.CYCLE, PowerAction.RESET)
        if cycle and await self.get_power_state() == PowerState.OFF:
            action = PowerAction.ON
        await self._send(action)
        deadline = time.monotonic() + wait
        while True:
            state = await self.get_power_state()
            if state == target:
                return state
            if time.monotonic() >= deadline:
                raise PowerTimeout(
                    f"{self.info}: asked for power {action.value}, the BMC still reports "
                    f"{state.value} after {wait:.0f} s"
                )
            await asyncio.sleep(self.poll_interval)
