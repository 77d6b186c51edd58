"""The agent image in QEMU (TCG, ``-kernel``/``-initrd``) against a management plane
running in-process: discovery with an exact inventory, wipe on acceptance, target mode.

QEMU's user-mode network answers the guest's DHCP and forwards 10.0.2.2 to the host's
127.0.0.1, so no root, bridge or tap is needed; the plane's boot HTTP port (with the
discovery endpoint and /configdata) listens on 127.0.0.1, where the guest's connections
arrive from. The guest is booted straight into the image, so the test asks ``/ipxe`` as its
firmware would and gives the guest the kernel arguments it got (with the boot's credential),
pointed at 10.0.2.2.
"""

from __future__ import annotations

import asyncio
import base64
import re
import shutil
import socket
import struct
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from arges.agent import target
from arges.boot.services import BootConfig
from arges.kube.errors import NotFound
from arges.kube.resources import SECRETS, SERVER_BINDINGS, SERVERS
from arges.plane import ManagementPlane, PlaneConfig
from tests.integration.agent.conftest import Built
from tests.integration.conftest import Machine, env_ready, eventually, local_environment
from tests.integration.metadata.test_configdata import UUID as BOUND_UUID
from tests.integration.metadata.test_configdata import bound_server

pytestmark = [
    pytest.mark.lab,
    pytest.mark.slow,
    pytest.mark.timeout(900),
    pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None, reason="needs QEMU"),
]

MIB = 1 << 20
UUID = "6f0e1c2a-3b4d-4e5f-8a9b-0c1d2e3f4a5b"
SMBIOS = {
    "manufacturer": "Arges Lab",
    "productName": "Virtual Server",
    "serialNumber": "LAB-0001",
    "skuNumber": "SKU-1",
    "family": "Lab",
    "version": "1.0",
}
QEMU_SMBIOS = {
    "manufacturer": "manufacturer",
    "productName": "product",
    "serialNumber": "serial",
    "skuNumber": "sku",
    "family": "family",
    "version": "version",
}
MACS = ("52:54:00:a6:00:01", "52:54:00:a6:00:02")
PATTERN = 0xAA
PARTITION = (1 * MIB, 16 * MIB)
"""(offset, length) of the one partition on the first disk; it holds an ext4 signature."""


@dataclass(frozen=True)
class DiskSpec:
    serial: str
    size: int
    device: str
    partitioned: bool = False


DISKS = (
    DiskSpec("ARGES-DISK-A", 64 * MIB, "virtio-blk-pci", partitioned=True),
    DiskSpec("ARGES-DISK-B", 96 * MIB, "nvme"),
)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_disk(path: Path, spec: DiskSpec) -> None:
    """``spec.size`` bytes of the pattern; a partitioned one gets an MBR with one Linux
    partition whose ext4 superblock magic (0xEF53 at 1024 + 56) is set."""
    data = bytearray([PATTERN]) * spec.size
    if spec.partitioned:
        start, length = PARTITION
        entry = struct.pack("<B3sB3sII", 0, b"\0" * 3, 0x83, b"\0" * 3, start // 512, length // 512)
        data[446:512] = entry.ljust(64, b"\0") + b"\x55\xaa"
        data[start + 1024 + 56 : start + 1024 + 58] = b"\x53\xef"
    path.write_bytes(data)


class VM:
    """One QEMU guest booted straight into the agent image."""

    def __init__(self, tmp: Path, image: Built, disks: tuple[DiskSpec, ...], uuid: str) -> None:
        self.tmp, self.image, self.disks, self.uuid = tmp, image.image, disks, uuid
        self.console = tmp / "console.log"
        self.paths = [tmp / f"disk{i}.img" for i in range(len(disks))]
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, cmdline: str) -> None:
        smbios = ",".join(
            [f"type=1,uuid={self.uuid}"] + [f"{QEMU_SMBIOS[k]}={v}" for k, v in SMBIOS.items()]
        )
        args = [
            "-accel", "tcg", "-m", "512", "-smp", "2,sockets=1,cores=2,threads=1",
            "-display", "none", "-serial", f"file:{self.console}", "-no-reboot",
            "-kernel", str(self.image.kernel), "-initrd", str(self.image.initrd),
            "-append", f"console=ttyS0,115200n8 console=tty0 {cmdline}",
            "-smbios", smbios,
        ]  # fmt: skip
        for i, (spec, path) in enumerate(zip(self.disks, self.paths, strict=True)):
            make_disk(path, spec)
            args += ["-drive", f"file={path},format=raw,if=none,id=d{i}"]
            args += ["-device", f"{spec.device},drive=d{i},serial={spec.serial}"]
        args += ["-netdev", "user,id=n0", "-device", f"virtio-net-pci,netdev=n0,mac={MACS[0]}"]
        args += [
            "-netdev",
            "user,id=n1,net=10.0.3.0/24",
            "-device",
            f"e1000,netdev=n1,mac={MACS[1]}",
        ]
        with (self.tmp / "qemu.err").open("wb") as err:
            self.proc = await asyncio.create_subprocess_exec(
                "qemu-system-x86_64", *args, stdout=asyncio.subprocess.DEVNULL, stderr=err
            )

    def log(self) -> str:
        text = self.console.read_text(errors="replace") if self.console.exists() else ""
        lines = [line for line in text.splitlines() if not line.startswith("[")]
        errors = (self.tmp / "qemu.err").read_text(errors="replace")
        return "\n".join(lines)[-6000:] + (f"\n--- qemu stderr ---\n{errors}" if errors else "")

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            await self.proc.wait()

    async def until(self, check: Any, what: str, timeout: float = 240) -> Any:
        try:
            return await eventually(check, timeout=timeout, interval=0.5)
        except AssertionError as exc:
            raise AssertionError(f"{what}: {exc}\n--- console ---\n{self.log()}") from exc


@pytest.fixture
async def plane(tmp_path: Path) -> AsyncIterator[ManagementPlane]:
    boot = BootConfig(address="127.0.0.1", http_port=0, tftp_port=free_udp_port(), dhcp_mode=None)
    p = ManagementPlane(
        PlaneConfig(
            data_dir=tmp_path / "data",
            api_port=0,
            default_environment=local_environment(tmp_path / "talos", []),
            agent_environment=local_environment(tmp_path / "agent-env", []),
            boot=boot,
        )
    )
    await p.start()
    assert p.kube is not None
    for name in ("default", "agent"):
        await eventually(lambda n=name: env_ready(p.kube, n), what=f"{name} ready")
    yield p
    await p.stop()


async def firmware_boot(plane: ManagementPlane, uuid: str, want: str) -> str:
    """The kernel arguments ``/ipxe`` gives ``uuid`` booting from its first NIC, pointed at
    10.0.2.2 (where the guest reaches the host)."""
    machine = Machine(f"http://127.0.0.1:{port(plane)}")
    try:
        script = await machine.boot(uuid, MACS[0].replace(":", "-"), want=want)
    finally:
        await machine.close()
    kernel = next(line for line in script.splitlines() if line.startswith("kernel "))
    args = " ".join(a for a in kernel.split()[2:] if a.startswith(("arges.", "talos.config=")))
    return args.replace("http://127.0.0.1:", "http://10.0.2.2:")


@pytest.fixture
async def vm(tmp_path: Path, agent_image: Built) -> AsyncIterator[VM]:
    machine = VM(tmp_path, agent_image, DISKS, UUID)
    yield machine
    await machine.stop()


def port(plane: ManagementPlane) -> int:
    assert plane.boot is not None
    return plane.boot.http.port


def fast_regions(spec: DiskSpec) -> list[tuple[int, int]]:
    """What a fast wipe of ``spec`` zeroes, worked out by hand (see arges.agent.wipe)."""
    if spec.partitioned:
        start, length = PARTITION
        return [
            (0, start + MIB),
            (start + length - MIB, start + length),
            (spec.size - MIB, spec.size),
        ]
    return [(0, MIB), (spec.size - MIB, spec.size)]


async def test_discovery_inventory_then_wipe_on_acceptance(plane: ManagementPlane, vm: VM) -> None:
    kube = plane.kube
    assert kube is not None
    started = time.monotonic()
    await vm.start(await firmware_boot(plane, UUID, "arges.token="))

    async def registered() -> dict | None:
        try:
            server = await kube.get(SERVERS, UUID)
        except NotFound:
            return None
        return server if (server.get("status") or {}).get("hardware") else None

    server = await vm.until(registered, "the agent did not register")
    print(f"\n[figure] boot to registered: {time.monotonic() - started:.1f} s")
    hw = server["status"]["hardware"]
    assert hw["system"] == {"uuid": UUID, **SMBIOS}
    assert (hw["compute"]["processorCount"], hw["compute"]["totalCoreCount"]) == (1, 2)
    assert hw["compute"]["totalThreadCount"] == 2
    assert hw["memory"]["totalSize"] == 512 * MIB
    disks = hw["storage"]["devices"]
    assert hw["storage"]["deviceCount"] == 2
    assert sorted((d["serialNumber"], d["size"]) for d in disks) == [
        (d.serial, d.size) for d in DISKS
    ]
    assert {d["name"]: d["type"] for d in disks} == {"vda": "virtio", "nvme0n1": "NVMe"}
    assert sorted(n["mac"] for n in hw["network"]["interfaces"]) == list(MACS)
    boot_nic = next(n for n in hw["network"]["interfaces"] if n["mac"] == MACS[0])
    assert boot_nic["addresses"] == ["10.0.2.15/24"]
    assert server["spec"]["accepted"] is False and not server["status"].get("isClean")

    accepted = time.monotonic()
    await kube.patch(SERVERS, UUID, {"spec": {"accepted": True}})

    async def clean() -> dict | None:
        body = await kube.get(SERVERS, UUID)
        return body if body["status"].get("isClean") else None

    server = await vm.until(clean, "the server did not become clean")
    print(f"[figure] accept to clean (poll, wipe, report): {time.monotonic() - accepted:.1f} s")
    wiping = re.search(r"wiped \d+ disk\(s\): \d+ bytes zeroed in ([0-9.]+) s", vm.log())
    if wiping:
        print(f"[figure] wipe itself (agent's measure): {wiping.group(1)} s")
    condition = next(c for c in server["status"]["conditions"] if c["type"] == "Wipe")
    expected = sum(end - start for d in DISKS for start, end in fast_regions(d))
    assert condition["status"] == "True"
    assert condition["message"] == f"wiped 2 disk(s), {expected} bytes zeroed"
    await vm.stop()
    for spec, path in zip(DISKS, vm.paths, strict=True):
        data = path.read_bytes()
        claimed = bytearray(len(data))
        for start, end in fast_regions(spec):
            assert data[start:end] == bytes(end - start), f"{spec.serial} [{start}, {end})"
            claimed[start:end] = b"\1" * (end - start)
        rest = bytes(b for b, c in zip(data, claimed, strict=True) if not c)
        assert rest == bytes([PATTERN]) * len(rest), f"{spec.serial}: a fast wipe went further"


async def test_target_mode_writes_the_config_and_the_binding_is_installed(
    plane: ManagementPlane, tmp_path: Path, agent_image: Built
) -> None:
    kube = plane.kube
    assert kube is not None
    await bound_server(kube)
    machine = VM(
        tmp_path, agent_image, (DiskSpec("ARGES-TARGET", 32 * MIB, "virtio-blk-pci"),), BOUND_UUID
    )
    started = time.monotonic()
    cmdline = await firmware_boot(plane, BOUND_UUID, "talos.config=")
    await machine.start(cmdline)
    try:

        async def installed() -> bool:
            binding = await kube.get(SERVER_BINDINGS, BOUND_UUID)
            conditions = (binding.get("status") or {}).get("conditions") or []
            return any(c["type"] == "Installed" and c["status"] == "True" for c in conditions)

        await machine.until(installed, "the binding did not become Installed")
        print(f"\n[figure] boot to installed (target mode): {time.monotonic() - started:.1f} s")
    finally:
        await machine.stop()
    on_disk = target.decode(machine.paths[0].read_bytes())
    secret = await kube.get(SECRETS, f"demo-{BOUND_UUID[:8]}-config", "default")
    rendered = base64.b64decode(secret["data"]["config"])
    assert yaml.safe_load(on_disk) == yaml.safe_load(rendered), "what it was served"
    assert b"type: worker" in on_disk
    url = cmdline.split("talos.config=")[1].split()[0].replace("uuid=&", f"uuid={BOUND_UUID}&")
    url = url.replace("http://10.0.2.2:", "http://127.0.0.1:")
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        assert resp.status == 403, "installed: the boot's credential is spent"
