"""The one place that picks a power driver: controllers ask here, never import a driver."""

from __future__ import annotations

from arges.power.base import BmcInfo, PowerDriver
from arges.power.errors import Unsupported
from arges.power.fake import FakeDriver
from arges.power.ipmi import IpmiDriver
from arges.power.redfish import RedfishDriver

PROTOCOLS = ("ipmi", "redfish", "fake")


def build_driver(info: BmcInfo) -> PowerDriver:
    """The driver for ``info.protocol``.

    Raises:
        Unsupported: for a protocol Arges has no driver for (naming the ones it has).
    """
    if info.protocol == "ipmi":
        return IpmiDriver(info)
    if info.protocol == "redfish":
        return RedfishDriver(info)
    if info.protocol == "fake":
        return FakeDriver(info)
    raise Unsupported(
        f"no power driver for protocol {info.protocol!r} (available: {', '.join(PROTOCOLS)})"
    )
