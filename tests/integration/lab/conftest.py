"""The lab for real: a management plane in-process, ``arges lab`` as a command, real firmware.

Every lab these tests bring up is taken down in a ``finally``, and the tests then check
that nothing is left: no namespace, no host link, no process of the lab.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from arges.api.environment import Asset, EnvironmentSpec, Kernel
from arges.boot.dhcpserver import Mode
from arges.boot.services import BootConfig
from arges.lab import preflight
from arges.lab.network import LabNetwork
from arges.lab.state import LabState, load_state
from arges.plane import ManagementPlane, PlaneConfig
from tests.integration.conftest import make_assets, sha512

NETWORK = LabNetwork()


def lab_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "the lab needs root"
    found = preflight.problems(uefi=True, site_dhcp=True)
    if found:
        return "; ".join(str(p) for p in found)
    return None


LAB_LOCK = Path(tempfile.gettempdir()) / "arges-lab-tests.lock"


@contextlib.contextmanager
def one_lab_at_a_time() -> Iterator[None]:
    """Hold the machine's lab lock while a test's lab lives: a second test run on the same
    machine (two clones, say) waits for it instead of failing on the lab's single namespace.
    A lab that exists once the lock is held belongs to no test: the test skips, saying so."""
    with LAB_LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if NETWORK.exists() or Path(f"/sys/class/net/{NETWORK.host_link}").exists():
                pytest.skip(
                    "a lab not made by these tests runs here (namespace arges-lab or arges0)"
                )
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.fixture(autouse=True)
def _one_lab_at_a_time() -> Iterator[None]:
    with one_lab_at_a_time():
        yield


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return int(s.getsockname()[1])


@dataclass
class Done:
    code: int
    out: str
    err: str
    seconds: float


async def arges(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> Done:
    """Run ``arges ARGS`` as a user would (a separate process; the plane keeps serving)."""
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "arges",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return Done(proc.returncode or 0, out.decode(), err.decode(), time.monotonic() - started)


class BootLog(logging.Handler):
    """Arges' boot log (``arges.boot.*``), kept with wall-clock times."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[tuple[float, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append((record.created, record.getMessage()))

    def first(self, text: str) -> float | None:
        return next((t for t, m in self.records if text in m), None)

    def lines(self) -> str:
        return "\n".join(m for _, m in self.records)


@pytest.fixture
def boot_log() -> Iterator[BootLog]:
    handler = BootLog()
    logger = logging.getLogger("arges.boot")
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


async def start_plane(
    data_dir: Path, mode: Mode | None, *, power_refresh: float = 60.0
) -> ManagementPlane:
    """A management plane whose boot services sit on the lab's network (None: no boot
    services), with a local default Environment (nothing is downloaded)."""
    kernel, initrd = make_assets(data_dir.parent / "talos")
    boot = None
    if mode is not None:
        boot = BootConfig(
            address=NETWORK.host_address,
            dhcp_interface=NETWORK.host_link,
            http_port=free_tcp_port(),
            tftp_port=69,
            dhcp_mode=mode,
            dhcp_network=NETWORK.subnet if mode == "full" else None,
        )
    plane = ManagementPlane(
        PlaneConfig(
            data_dir=data_dir,
            api_port=0,
            boot=boot,
            power_refresh=power_refresh,
            default_environment=EnvironmentSpec(
                kernel=Kernel(url=kernel.as_uri(), sha512=sha512(kernel)),
                initrd=Asset(url=initrd.as_uri(), sha512=sha512(initrd)),
            ),
        )
    )
    await plane.start()
    return plane


def lab_processes(lab_dir: Path) -> list[str]:
    """Processes of the lab in ``lab_dir`` (QEMU, dnsmasq and the supervisor all name a path
    in it), and any process left in the lab's namespace."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(lab_dir) in cmdline and "pytest" not in cmdline:
            found.append(f"{entry.name}: {cmdline[:120]}")
    pids = subprocess.run(
        ["ip", "netns", "pids", NETWORK.namespace], capture_output=True, text=True, check=False
    )
    found += [f"{p}: in namespace {NETWORK.namespace}" for p in pids.stdout.split()]
    return found


def assert_nothing_left(lab_dir: Path) -> None:
    assert not NETWORK.exists(), f"namespace {NETWORK.namespace} is still there"
    assert not Path(f"/sys/class/net/{NETWORK.host_link}").exists(), "arges0 is still there"
    assert lab_processes(lab_dir) == []
    assert not lab_dir.exists()


class Lab:
    """One test's Arges and lab, both removed by the fixture whatever happens."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.lab_dir = data_dir / "lab"
        self.plane: ManagementPlane | None = None

    async def start_plane(self, mode: Mode | None, **kw: float) -> ManagementPlane:
        self.plane = await start_plane(self.data_dir, mode, **kw)
        return self.plane

    async def up(self, *args: str) -> Done:
        return await arges("lab", "up", "--data-dir", str(self.data_dir), *args)

    async def down(self) -> Done:
        return await arges("lab", "down", "--data-dir", str(self.data_dir))

    def state(self) -> LabState:
        state = load_state(self.lab_dir)
        assert state is not None
        return state

    async def close(self) -> None:
        try:
            if self.lab_dir.exists() or NETWORK.exists():
                done = await self.down()
                assert done.code == 0, done.err
        finally:
            if self.plane is not None:
                await self.plane.stop()


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[Lab]:
    running = Lab(tmp_path / "data")
    try:
        yield running
    finally:
        await running.close()
    assert_nothing_left(running.lab_dir)
