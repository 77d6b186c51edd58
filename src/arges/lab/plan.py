"""The lab's plan: what ``arges lab up`` builds, as pure functions of its options.

:func:`plan` turns a :class:`LabSpec` into one :class:`~arges.lab.state.LabServer` per
server: a name (``lab-1`` ...), a firmware (``mixed`` alternates BIOS and UEFI, starting
with BIOS: 2 BIOS + 1 UEFI for 3), a BMC kind (``mixed`` alternates IPMI and Redfish,
starting with IPMI), a random version-4 SMBIOS UUID and a serial number, one MAC and tap
device per NIC, raw disk files with serial numbers, and a BMC port. Randomness
comes from the caller's generator, so plans are reproducible in tests.
"""

from __future__ import annotations

import random
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from arges.errors import ArgesError
from arges.lab.machines import Firmware
from arges.lab.network import LabNetwork
from arges.lab.state import BmcKind, LabDisk, LabServer

FirmwareMode = Literal["bios", "uefi", "mixed"]
BmcMode = Literal["ipmi", "redfish", "mixed"]
MiB, GiB = 1 << 20, 1 << 30
UNITS = {"": 1, "K": 1 << 10, "M": MiB, "G": GiB, "T": 1 << 40}
SIZE = re.compile(r"^(\d+)([KMGT]?)(?:I?B)?$")
MIN_DISK = MiB
MAX_SERVERS = 32
MAX_NICS = 4
UNIX_PATH_MAX = 107
"""Longest path a unix socket can have on Linux (``sun_path`` is 108 bytes with its NUL)."""


class PlanError(ArgesError, ValueError):
    """Options that cannot make a lab (the message says which and why)."""


@dataclass(frozen=True)
class LabSpec:
    """The options of ``arges lab up``."""

    servers: int = 3
    firmware: FirmwareMode = "mixed"
    disks: tuple[int, ...] = (4 * GiB,)
    """Sizes in bytes, one disk each."""
    memory_mib: int = 1024
    nics: int = 1
    site_dhcp: bool = True
    network: LabNetwork = field(default_factory=LabNetwork)
    bmc_username: str = "admin"
    qemu: str = "qemu-system-x86_64"
    bmc: BmcMode = "ipmi"
    network_boot: bool = True
    """False: the servers' firmware has network boot disabled."""


def firmware_sequence(count: int, mode: FirmwareMode) -> list[Firmware]:
    """The firmware of each of ``count`` servers."""
    if mode == "mixed":
        return ["bios" if i % 2 == 0 else "uefi" for i in range(count)]
    return [mode] * count


def bmc_sequence(count: int, mode: BmcMode) -> list[BmcKind]:
    """The BMC kind of each of ``count`` servers."""
    if mode == "mixed":
        return ["ipmi" if i % 2 == 0 else "redfish" for i in range(count)]
    return [mode] * count


def parse_size(text: str) -> int:
    """``4G``, ``512M``, ``2GiB`` or a byte count, in bytes (binary units).

    Raises:
        PlanError: for anything else, or a size below 1 MiB.
    """
    match = SIZE.match(text.strip().upper())
    if not match:
        raise PlanError(f"{text!r} is not a size (use e.g. 4G, 512M, 2GiB)")
    size = int(match.group(1)) * UNITS[match.group(2)]
    if size < MIN_DISK:
        raise PlanError(f"{text!r} is smaller than 1 MiB")
    return size


def parse_disks(text: str) -> tuple[int, ...]:
    """``4G,2G``: one disk per comma-separated size.

    Raises:
        PlanError: for an empty list or a bad size.
    """
    sizes = tuple(parse_size(part) for part in text.split(",") if part.strip())
    if not sizes:
        raise PlanError("give at least one disk size, e.g. 4G")
    return sizes


def plan(
    spec: LabSpec, lab_dir: Path, bmc_ports: Sequence[int], rng: random.Random
) -> list[LabServer]:
    """The servers of the lab in ``lab_dir`` (see the module docstring).

    Raises:
        PlanError: for counts out of range, a port list of the wrong length, or a lab
            directory so deep that the servers' console sockets would not fit a unix path.
    """
    if not 1 <= spec.servers <= MAX_SERVERS:
        raise PlanError(f"a lab has 1 to {MAX_SERVERS} servers, not {spec.servers}")
    if not 1 <= spec.nics <= MAX_NICS:
        raise PlanError(f"a lab server has 1 to {MAX_NICS} NICs, not {spec.nics}")
    if len(bmc_ports) != spec.servers or len(set(bmc_ports)) != spec.servers:
        raise PlanError(f"need {spec.servers} distinct BMC ports, got {list(bmc_ports)}")
    servers: list[LabServer] = []
    macs: set[str] = set()
    kinds = bmc_sequence(spec.servers, spec.bmc)
    for i, firmware in enumerate(firmware_sequence(spec.servers, spec.firmware), start=1):
        name = f"lab-{i}"
        run_dir = lab_dir / "servers" / name
        longest = run_dir / "console.sock"
        if len(str(longest)) > UNIX_PATH_MAX:
            raise PlanError(
                f"{longest} is longer than a unix socket path may be ({UNIX_PATH_MAX} "
                "characters): use a shorter --data-dir"
            )
        server_uuid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        serial = f"LAB{server_uuid[:8].upper()}"
        while True:
            prefix = f"52:54:00:{rng.randrange(256):02x}:{rng.randrange(256):02x}"
            nic_macs = [f"{prefix}:{n:02x}" for n in range(spec.nics)]
            if not macs.intersection(nic_macs):
                break
        macs.update(nic_macs)
        servers.append(
            LabServer(
                name=name,
                firmware=firmware,
                uuid=server_uuid,
                serial=serial,
                macs=nic_macs,
                taps=[f"lab{i}n{n}" for n in range(spec.nics)],
                disks=[
                    LabDisk(path=run_dir / f"disk{d}.raw", size=size, serial=f"{serial}-D{d}")
                    for d, size in enumerate(spec.disks)
                ],
                memory_mib=spec.memory_mib,
                run_dir=run_dir,
                bmc_port=bmc_ports[i - 1],
                bmc_username=spec.bmc_username,
                bmc_kind=kinds[i - 1],
                network_boot=spec.network_boot,
            )
        )
    return servers
