"""Lab servers as QEMU command lines: a pure function from a machine description to argv.

Each lab server is a QEMU virtual machine under TCG (no KVM here) with its own SMBIOS type 1
identity, raw disks, and NICs on tap devices of the lab bridge. Two firmware paths, as real
racks have:

- ``bios``: SeaBIOS with the NIC's option ROM, which in Debian's QEMU is iPXE
  (``ipxe-qemu``): iPXE does DHCP itself and chains Arges' ``boot.ipxe``;
- ``uefi``: OVMF with the NIC option ROM disabled (``romfile=``), so the firmware's own
  UEFI network stack does PXE: ProxyDHCP, then TFTP of ``ipxe.efi``, then HTTP.

Boot order is expressed with ``bootindex`` on the NIC, the disks and the virtual CD, which
both firmwares honour; "boot from network" puts the first NIC first, "boot from CD" the CD
(the ISO a Redfish BMC's virtual media holds, attached as an IDE/AHCI CD drive). A machine
without network boot has no NIC option ROM and, under OVMF, PXE turned off through OVMF's
``opt/org.tianocore/IPv4PXESupport`` and ``IPv6PXESupport`` settings, as a server whose
firmware has network boot disabled. Both firmwares write their console
(and iPXE's) to the serial port, which QEMU logs and offers on a unix socket.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Firmware = Literal["bios", "uefi"]
BootDevice = Literal["network", "disk", "cd"]


@dataclass(frozen=True)
class Disk:
    """A raw disk image of ``size`` bytes with a serial number the guest can read."""

    path: Path
    size: int
    serial: str


@dataclass(frozen=True)
class Nic:
    """A NIC on tap device ``tap`` with MAC ``mac``."""

    tap: str
    mac: str


@dataclass(frozen=True)
class Smbios:
    """SMBIOS type 1 (System Information) as QEMU's ``-smbios type=1`` sets it."""

    uuid: str
    manufacturer: str = "Arges Lab"
    product: str = "Virtual Server"
    version: str = "1.0"
    serial: str = ""
    sku: str = ""
    family: str = "Lab"

    def option(self) -> str:
        """QEMU's ``-smbios`` value for SMBIOS type 1 (system information), empty fields left
        out."""
        fields = {
            "uuid": self.uuid,
            "manufacturer": self.manufacturer,
            "product": self.product,
            "version": self.version,
            "serial": self.serial,
            "sku": self.sku,
            "family": self.family,
        }
        # QEMU's option syntax escapes a comma by doubling it.
        return "type=1," + ",".join(f"{k}={v.replace(',', ',,')}" for k, v in fields.items() if v)


@dataclass(frozen=True)
class Machine:
    """Everything QEMU needs to run one lab server."""

    name: str
    firmware: Firmware
    smbios: Smbios
    disks: tuple[Disk, ...]
    nics: tuple[Nic, ...]
    run_dir: Path
    memory_mib: int = 1024
    cpus: int = 1
    ovmf_code: Path | None = None
    ovmf_vars: Path | None = None
    network_boot: bool = True
    extra: tuple[str, ...] = field(default=())

    @property
    def console_log(self) -> Path:
        return self.run_dir / "console.log"

    @property
    def console_socket(self) -> Path:
        return self.run_dir / "console.sock"

    @property
    def qmp_socket(self) -> Path:
        return self.run_dir / "qmp.sock"

    @property
    def pid_file(self) -> Path:
        """QEMU's pid while it runs (QEMU writes it at start and removes it at exit)."""
        return self.run_dir / "qemu.pid"

    @property
    def sercon_file(self) -> Path:
        """SeaBIOS's serial-console setting (:data:`SERCON_PORT`), written by
        :func:`prepare_run_dir`."""
        return self.run_dir / "sercon-port"


SERCON_PORT = (0x3F8).to_bytes(2, "little")
"""SeaBIOS's ``etc/sercon-port`` (COM1, a little-endian integer): SeaBIOS mirrors the text
console, where the iPXE NIC ROM writes, to the serial port, so a BIOS server's console log
shows its network boot as an OVMF server's does."""


def prepare_run_dir(machine: Machine) -> None:
    """Create ``machine.run_dir`` with the files :func:`qemu_argv` refers to."""
    machine.run_dir.mkdir(parents=True, exist_ok=True)
    if machine.firmware == "bios":
        machine.sercon_file.write_bytes(SERCON_PORT)


def qemu_argv(
    machine: Machine,
    boot: BootDevice,
    qemu: str = "qemu-system-x86_64",
    cdrom: Path | None = None,
) -> list[str]:
    """The QEMU command line for ``machine`` booting first from ``boot``, with the ISO image
    ``cdrom`` in its CD drive (None: no CD drive).

    Raises:
        ValueError: a UEFI machine without OVMF images, or a machine without NICs.
    """
    if not machine.nics:
        raise ValueError(f"{machine.name}: a lab server needs at least one NIC")
    argv = [
        qemu,
        "-name",
        machine.name,
        "-accel",
        "tcg",
        "-machine",
        "q35" if machine.firmware == "uefi" else "pc",
        "-m",
        str(machine.memory_mib),
        "-smp",
        str(machine.cpus),
        "-smbios",
        machine.smbios.option(),
        "-display",
        "none",
        "-monitor",
        "none",
        "-nodefaults",
        "-no-user-config",
        "-chardev",
        f"socket,id=serial0,path={machine.console_socket},server=on,wait=off,"
        f"logfile={machine.console_log},logappend=on",
        "-serial",
        "chardev:serial0",
        "-qmp",
        f"unix:{machine.qmp_socket},server=on,wait=off",
        "-pidfile",
        str(machine.pid_file),
    ]
    if machine.firmware == "bios":
        argv += ["-fw_cfg", f"name=etc/sercon-port,file={machine.sercon_file}"]
    if machine.firmware == "uefi":
        if machine.ovmf_code is None or machine.ovmf_vars is None:
            raise ValueError(f"{machine.name}: UEFI needs OVMF code and variable images")
        argv += [
            "-drive",
            f"if=pflash,format=raw,unit=0,readonly=on,file={machine.ovmf_code}",
            "-drive",
            f"if=pflash,format=raw,unit=1,file={machine.ovmf_vars}",
        ]
        if not machine.network_boot:
            for setting in ("IPv4PXESupport", "IPv6PXESupport"):
                argv += ["-fw_cfg", f"name=opt/org.tianocore/{setting},string=n"]
    index = 1
    if cdrom is not None:
        argv += ["-drive", f"file={cdrom},if=none,id=cd0,format=raw,media=cdrom,readonly=on"]
        device = "ide-cd,drive=cd0"
        if boot == "cd":
            device += f",bootindex={index}"
            index += 1
        argv += ["-device", device]
    for i, nic in enumerate(machine.nics):
        argv += ["-netdev", f"tap,id=net{i},ifname={nic.tap},script=no,downscript=no"]
        device = f"virtio-net-pci,netdev=net{i},mac={nic.mac}"
        if machine.firmware == "uefi" or not machine.network_boot:
            device += ",romfile="
        if i == 0 and boot == "network" and machine.network_boot:
            device += f",bootindex={index}"
            index += 1
        argv += ["-device", device]
    for i, disk in enumerate(machine.disks):
        argv += [
            "-drive",
            f"file={disk.path},if=none,id=disk{i},format=raw,cache=unsafe",
            "-device",
            f"virtio-blk-pci,drive=disk{i},serial={disk.serial},bootindex={index}",
        ]
        index += 1
    return argv + list(machine.extra)
