"""What a running lab is made of, on disk: ``DATA_DIR/lab/state.json`` and its credentials.

``state.json`` holds everything ``arges lab status``, ``console`` and ``down`` need: the
network's names, each server's identity (name, firmware, SMBIOS UUID and serial, MACs,
taps, disks, BMC port, run directory), the supervisor's pid, and the objects recorded in
Arges. It holds no password: the BMC passwords live in ``credentials.json`` (mode 0600,
read by the supervisor) and in Arges' Secrets, never in argv or logs.

``arges lab up`` writes the state before it creates anything, so ``down`` can remove a lab
whose ``up`` crashed half-way.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from arges.errors import ArgesError
from arges.lab.machines import Disk, Firmware, Machine, Nic, Smbios
from arges.lab.network import LabNetwork

BmcKind = Literal["ipmi", "redfish"]
STATE_FILE = "state.json"
CREDENTIALS_FILE = "credentials.json"
VERSION: Literal[1] = 1


class StateError(ArgesError):
    """The lab's state or credentials file cannot be read (path and reason included)."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LabDisk(_Model):
    """A raw disk image: ``size`` bytes, with a serial number the guest can read."""

    path: Path
    size: int = Field(gt=0)
    serial: str


class LabServer(_Model):
    """One lab server: its identity, its devices, and its BMC."""

    name: str
    firmware: Firmware
    uuid: str
    serial: str
    macs: list[str]
    taps: list[str]
    disks: list[LabDisk]
    memory_mib: int = Field(gt=0)
    run_dir: Path
    bmc_address: str = "127.0.0.1"
    bmc_port: int = Field(ge=1, le=65535)
    bmc_username: str
    bmc_kind: BmcKind = "ipmi"
    """ipmi: IPMI over LAN on UDP ``bmc_port``; redfish: a Redfish service over HTTPS on TCP
    ``bmc_port``."""
    network_boot: bool = True
    """False: the firmware has network boot disabled (no PXE, no NIC option ROM)."""

    @property
    def bmc_url(self) -> str:
        """How an operator reaches the BMC: ``https://address:port`` or ``address:port``."""
        if self.bmc_kind == "redfish":
            return f"https://{self.bmc_address}:{self.bmc_port}"
        return f"{self.bmc_address}:{self.bmc_port}"

    @property
    def secret_name(self) -> str:
        """The Secret with this server's BMC credentials (named by UUID, so a later lab's
        server never inherits an earlier one's)."""
        return f"bmc-{self.uuid}"

    @property
    def console_log(self) -> Path:
        return self.machine(None).console_log

    @property
    def console_socket(self) -> Path:
        return self.machine(None).console_socket

    @property
    def pid_file(self) -> Path:
        return self.machine(None).pid_file

    @property
    def ovmf_vars(self) -> Path:
        """This server's own copy of the UEFI variable store (UEFI servers only)."""
        return self.run_dir / "OVMF_VARS.fd"

    def machine(self, ovmf_code: Path | None) -> Machine:
        """What QEMU runs (:func:`arges.lab.machines.qemu_argv`)."""
        uefi = self.firmware == "uefi"
        return Machine(
            name=self.name,
            firmware=self.firmware,
            smbios=Smbios(
                uuid=self.uuid,
                product=f"Virtual Server ({self.firmware.upper()})",
                serial=self.serial,
                sku=f"LAB-{self.firmware.upper()}",
            ),
            disks=tuple(Disk(d.path, d.size, d.serial) for d in self.disks),
            nics=tuple(Nic(tap, mac) for tap, mac in zip(self.taps, self.macs, strict=True)),
            run_dir=self.run_dir,
            memory_mib=self.memory_mib,
            ovmf_code=ovmf_code if uefi else None,
            ovmf_vars=self.ovmf_vars if uefi else None,
            network_boot=self.network_boot,
        )


class ArgesRecord(_Model):
    """What ``lab up`` wrote into Arges, so ``down`` (or a failed ``up``) can take it back."""

    kubeconfig: Path
    secret_namespace: str = "default"
    secrets: list[str] = Field(default_factory=list)
    created_servers: list[str] = Field(default_factory=list)
    patched_servers: list[str] = Field(default_factory=list)


class LabState(_Model):
    """The whole lab (see the module docstring)."""

    version: Literal[1] = VERSION
    created: dt.datetime
    network: LabNetwork
    site_dhcp: bool
    qemu: str
    ovmf_code: Path | None = None
    servers: list[LabServer]
    supervisor_pid: int | None = None
    arges: ArgesRecord | None = None

    def server(self, name: str) -> LabServer | None:
        """The lab server called ``name``, or None."""
        return next((s for s in self.servers if s.name == name), None)


class Credentials(_Model):
    """One BMC's login; the password never appears in ``repr`` (so never in logs)."""

    username: str
    password: str = Field(repr=False)


def save_state(lab_dir: Path, state: LabState) -> None:
    """Write ``state.json`` atomically (a crash leaves the old file or the new one)."""
    _write(lab_dir / STATE_FILE, state.model_dump_json(indent=2), 0o644)


def load_state(lab_dir: Path) -> LabState | None:
    """The lab's state, or None when there is no lab.

    Raises:
        StateError: the file exists but cannot be read or parsed.
    """
    path = lab_dir / STATE_FILE
    try:
        return LabState.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValidationError) as exc:
        raise StateError(f"{path}: {_reason(exc)}") from exc


def save_credentials(lab_dir: Path, credentials: dict[str, Credentials]) -> None:
    """Write the BMC credentials, readable by root only (mode 0600 from creation)."""
    _write(lab_dir / CREDENTIALS_FILE, _CREDENTIALS.dump_json(credentials).decode(), 0o600)


def load_credentials(lab_dir: Path) -> dict[str, Credentials]:
    """Server name to BMC credentials.

    Raises:
        StateError: the file is missing or malformed.
    """
    path = lab_dir / CREDENTIALS_FILE
    try:
        return _CREDENTIALS.validate_json(path.read_bytes())
    except (OSError, ValidationError) as exc:
        raise StateError(f"{path}: {_reason(exc)}") from exc


_CREDENTIALS = TypeAdapter(dict[str, Credentials])


def _reason(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return f"not a lab file ({exc.error_count()} problem(s), first: {exc.errors()[0]['msg']})"
    return str(exc)


def _write(path: Path, text: str, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    tmp.replace(path)
