"""The agent as a bootable ISO image, for BMC virtual media (BIOS and UEFI alike).

``grub-mkrescue`` (GRUB 2, with xorriso and mtools) lays out an ISO 9660 image that boots
both ways: an El Torito BIOS boot image (GRUB's ``i386-pc`` ``eltorito.img``, hybrid MBR for
USB sticks too) and an El Torito EFI system partition image (GRUB's ``x86_64-efi``
``BOOTX64.EFI``). Either GRUB reads ``/boot/grub/grub.cfg`` from the ISO, which boots the
agent's kernel and initramfs with the command line given, on the serial and VGA consoles.
Nothing else is on the image; the agent runs entirely from its initramfs, so the drive can
go away once the kernel is loaded.

GRUB's tools, xorriso and mtools are Debian packages (``grub-common``, ``grub-pc-bin``,
``grub-efi-amd64-bin``, ``xorriso``, ``mtools``) that ``scripts/install`` installs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from arges.agent.image.debs import BuildError

TOOLS = ("grub-mkrescue", "xorriso", "mformat")
GRUB_PLATFORMS = (Path("/usr/lib/grub/i386-pc"), Path("/usr/lib/grub/x86_64-efi"))
VOLUME_ID = "ARGES_AGENT"
GRUB_MODULES = (
    "linux",
    "normal",
    "configfile",
    "iso9660",
    "part_msdos",
    "part_gpt",
    "search",
    "search_label",
    "serial",
    "terminal",
    "echo",
    "all_video",
)
"""The GRUB modules the image carries: what reading the ISO, the serial console and loading
Linux take (all of GRUB's add a few MiB and, compressed, 20 s to each build)."""
MKRESCUE_TIMEOUT = 300.0


def missing() -> list[str]:
    """What the host lacks to build an ISO (empty: nothing), as ``apt-get`` package hints."""
    found = [
        f"{tool} (apt-get install grub-common xorriso mtools)"
        for tool in TOOLS
        if shutil.which(tool) is None
    ]
    for platform in GRUB_PLATFORMS:
        if not (platform / "modinfo.sh").exists():
            package = "grub-pc-bin" if "i386" in platform.name else "grub-efi-amd64-bin"
            found.append(f"GRUB's {platform.name} images (apt-get install {package})")
    return found


def grub_config(args: list[str]) -> str:
    """``grub.cfg``: boot the agent at once with kernel command line ``args``."""
    cmdline = " ".join(args)
    return (
        "serial --unit=0 --speed=115200\n"
        "terminal_input serial console\n"
        "terminal_output serial console\n"
        "set timeout=0\n"
        'menuentry "Arges agent" {\n'
        "    echo 'Arges: loading the agent from virtual media'\n"
        f"    linux /boot/vmlinuz {cmdline}\n"
        "    initrd /boot/initramfs.img\n"
        "}\n"
    )


def build_iso(kernel: Path, initrd: Path, args: list[str], out: Path) -> Path:
    """Write a BIOS and UEFI bootable ISO of ``kernel`` and ``initrd`` booting with ``args``
    to ``out`` (atomically: a reader never sees half an image); returns ``out``.

    Raises:
        BuildError: the tools are missing, or grub-mkrescue failed (its last words included).
    """
    lacking = missing()
    if lacking:
        raise BuildError("cannot build the agent ISO; missing: " + "; ".join(lacking))
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="arges-iso-") as tmp:
        root = Path(tmp) / "root"
        (root / "boot/grub").mkdir(parents=True)
        shutil.copyfile(kernel, root / "boot/vmlinuz")
        shutil.copyfile(initrd, root / "boot/initramfs.img")
        (root / "boot/grub/grub.cfg").write_text(grub_config(args))
        partial = out.with_name(f".{out.name}.{os.getpid()}.tmp")
        argv = [
            "grub-mkrescue",
            f"--install-modules={' '.join(GRUB_MODULES)}",
            "--fonts=",
            "--locales=",
            "--themes=",
            "-o",
            str(partial),
            str(root),
            "--",
            "-volid",
            VOLUME_ID,
        ]
        try:
            done = subprocess.run(
                argv, capture_output=True, text=True, timeout=MKRESCUE_TIMEOUT, check=False
            )
        except subprocess.TimeoutExpired as exc:
            partial.unlink(missing_ok=True)
            raise BuildError(f"grub-mkrescue took more than {MKRESCUE_TIMEOUT:.0f} s") from exc
        if done.returncode != 0:
            partial.unlink(missing_ok=True)
            words = " | ".join((done.stderr or done.stdout).strip().splitlines()[-4:])
            raise BuildError(f"grub-mkrescue failed ({done.returncode}): {words}")
        partial.replace(out)
    return out
