"""The agent image: what it holds, that it is repeatable, that its Python runs the agent."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from arges.agent.image import ensure
from arges.agent.image.build import MODULES
from tests.integration.agent.conftest import DEBS, Built

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def test_a_second_build_from_the_same_inputs_is_byte_identical(
    agent_image: Built, tmp_path: Path
) -> None:
    first = agent_image.image
    again = ensure(agent_image.data_dir, DEBS)
    assert again.reused and again.directory == first.directory
    started = time.monotonic()
    second = ensure(tmp_path, DEBS)
    print(f"\n[figure] second build from scratch: {time.monotonic() - started:.1f} s")
    assert not second.reused
    assert second.directory.name == first.directory.name, "same inputs, same key"
    assert second.initrd.read_bytes() == first.initrd.read_bytes()
    assert second.kernel.read_bytes() == first.kernel.read_bytes()
    assert (second.directory / "manifest.json").read_text() == (
        first.directory / "manifest.json"
    ).read_text()


def test_the_initramfs_holds_init_python_busybox_dmidecode_and_modules(agent_image: Built) -> None:
    image = agent_image.image
    size = image.initrd.stat().st_size
    assert size < 15 * 2**20, f"initramfs is {size / 2**20:.1f} MiB"
    listing = subprocess.run(
        ["sh", "-c", f"zcat '{image.initrd}' | cpio -it --quiet"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    version = image.manifest["kernelVersion"]
    names = set(listing)
    for path in (
        "init",
        "bin/busybox",
        "usr/bin/python3.11",
        "usr/sbin/dmidecode",
        "lib/x86_64-linux-gnu/libc.so.6",
        "usr/share/udhcpc/default.script",
        "usr/lib/arges/arges/agent/main.py",
        "usr/lib/arges/arges/errors.py",
        "usr/lib/arges/arges/wire.py",
        f"lib/modules/{version}/modules.dep",
        "dev/console",
    ):
        assert path in names, path
    modules = {Path(n).name.removesuffix(".ko") for n in names if n.endswith(".ko")}
    loaded = set(image.manifest["modules"])
    assert loaded <= set(MODULES) and {"virtio_blk", "nvme", "e1000e", "igb"} <= loaded
    assert {"virtio_blk", "virtio_net", "nvme", "ahci", "sd_mod", "bnxt_en", "r8169"} <= modules
    assert "libata" in modules and "scsi_mod" in modules, "dependencies come along"
    assert not any("/lib-dynload/" in n and n.endswith(".so") for n in names)
    assert listing == sorted(listing), "entries are sorted"


def test_the_images_python_imports_the_agent_from_the_image_alone(
    agent_image: Built, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    subprocess.run(
        ["sh", "-c", f"zcat '{agent_image.image.initrd}' | cpio -idm --quiet"],
        cwd=root,
        check=True,
    )
    libs = root / "lib/x86_64-linux-gnu"
    code = "import sys, arges.agent.main; print(sorted(m for m in sys.modules if '.' not in m))"
    out = subprocess.run(
        [
            str(libs / "ld-linux-x86-64.so.2"),
            "--library-path",
            str(libs),
            str(root / "usr/bin/python3.11"),
            "-S",
            "-c",
            code,
        ],
        env={
            "PYTHONHOME": str(root / "usr"),
            "PYTHONPATH": str(root / "usr/lib/arges"),
            "PATH": os.environ["PATH"],
        },
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "http" in out.stdout and "json" in out.stdout
