"""What the lab needs from the host, checked before anything is created.

Each missing piece is reported with the command that installs it, so ``arges lab up``
refuses clearly instead of failing half-way.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

OVMF_IMAGES = (
    (Path("/usr/share/OVMF/OVMF_CODE_4M.fd"), Path("/usr/share/OVMF/OVMF_VARS_4M.fd")),
    (Path("/usr/share/OVMF/OVMF_CODE.fd"), Path("/usr/share/OVMF/OVMF_VARS.fd")),
)
"""OVMF's code and variable-store images, in matching pairs (a 4 MiB code image needs a
4 MiB variable store), best first."""
IPXE_DIR = Path("/usr/lib/ipxe")


@dataclass(frozen=True)
class Problem:
    """One thing missing, and how to get it."""

    what: str
    fix: str

    def __str__(self) -> str:
        return f"{self.what} (fix: {self.fix})"


def ovmf_images() -> tuple[Path, Path] | None:
    """The OVMF code image and the variable-store template to copy, or None."""
    return next(((c, v) for c, v in OVMF_IMAGES if c.exists() and v.exists()), None)


def problems(*, uefi: bool, site_dhcp: bool, bmc: bool = True) -> list[Problem]:
    """Everything that stops the lab from running on this host (empty: ready)."""
    found: list[Problem] = []
    if os.geteuid() != 0:
        found.append(
            Problem(
                "the lab must run as root (network namespaces, taps)",
                "run it with sudo, or as root",
            )
        )
    tools = {
        "ip": "apt-get install -y iproute2",
        "qemu-system-x86_64": "apt-get install -y qemu-system-x86",
    }
    if site_dhcp:
        tools["dnsmasq"] = "apt-get install -y dnsmasq-base"
    if bmc:
        tools["ipmitool"] = "apt-get install -y ipmitool"
    for tool, fix in tools.items():
        if shutil.which(tool) is None:
            found.append(Problem(f"{tool} is not installed", fix))
    if not (IPXE_DIR / "undionly.kpxe").exists():
        found.append(
            Problem(f"iPXE binaries are missing from {IPXE_DIR}", "apt-get install -y ipxe")
        )
    if (
        not Path("/usr/lib/ipxe/qemu/efi-virtio.rom").exists()
        and not Path("/usr/share/qemu/efi-virtio.rom").exists()
    ):
        found.append(Problem("QEMU's iPXE NIC ROMs are missing", "apt-get install -y ipxe-qemu"))
    if uefi and ovmf_images() is None:
        found.append(Problem("OVMF (UEFI firmware for QEMU) is missing", "apt-get install -y ovmf"))
    if not Path("/dev/net/tun").exists():
        found.append(Problem("/dev/net/tun is missing", "modprobe tun"))
    return found
