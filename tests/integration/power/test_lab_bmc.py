"""The lab BMC with real ipmitool and with the project's IPMI driver."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from arges.power.base import BmcInfo, BootDevice, PowerAction, PowerState
from arges.power.errors import AuthenticationFailed, BmcUnreachable
from arges.power.ipmi import IpmiDriver

pytestmark = pytest.mark.skipif(
    shutil.which("ipmitool") is None, reason="ipmitool is not installed (apt-get install ipmitool)"
)
PASSWORD = "lab-s3cret"


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Bmc:
    def __init__(self, tmp: Path) -> None:
        self.port = free_udp_port()
        self.log = tmp / "bmc.log"
        marker = tmp / "powered-on"
        self.marker = marker
        # The "server": a process that marks the file while it runs.
        argv = [
            sys.executable,
            "-c",
            f"import pathlib,time; p=pathlib.Path({str(marker)!r}); p.write_text('on'); "
            "time.sleep(3600)",
        ]
        config = {
            "port": self.port,
            "username": "admin",
            "password": PASSWORD,
            "name": "lab-1",
            "run_dir": str(tmp),
            "argv": argv,
        }
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "arges.lab.bmc"],
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(config).encode())
        self.proc.stdin.close()
        deadline = time.monotonic() + 10
        while b"ready" not in self.log.read_bytes():
            assert time.monotonic() < deadline, self.log.read_text()
            time.sleep(0.05)

    def ipmitool(self, *args: str, password: str = PASSWORD) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                "ipmitool",
                "-I",
                "lanplus",
                "-H",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "admin",
                "-E",
                "-C",
                "3",
                "-N",
                "1",
                "-R",
                "1",
                *args,
            ],
            env={**os.environ, "IPMI_PASSWORD": password},
            capture_output=True,
            text=True,
            timeout=30,
        )

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture
def bmc(tmp_path: Path) -> Iterator[Bmc]:
    b = Bmc(tmp_path)
    yield b
    b.stop()


def test_ipmitool_controls_the_lab_server(bmc: Bmc) -> None:
    assert bmc.ipmitool("chassis", "power", "status").stdout.strip() == "Chassis Power is off"
    assert bmc.ipmitool("chassis", "bootdev", "pxe").returncode == 0
    assert bmc.ipmitool("chassis", "power", "on").returncode == 0
    deadline = time.monotonic() + 5
    while not bmc.marker.exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert bmc.ipmitool("chassis", "power", "status").stdout.strip() == "Chassis Power is on"
    assert "booting from network" in bmc.log.read_text()
    assert bmc.ipmitool("chassis", "power", "off").returncode == 0
    assert bmc.ipmitool("chassis", "power", "status").stdout.strip() == "Chassis Power is off"
    refused = bmc.ipmitool("chassis", "power", "status", password="wrong")
    assert refused.returncode != 0


async def test_the_ipmi_driver_against_the_lab_bmc(bmc: Bmc) -> None:
    driver = IpmiDriver(BmcInfo("127.0.0.1", bmc.port, "admin", PASSWORD))
    driver.validate()
    assert await driver.get_power_state() == PowerState.OFF
    await driver.set_boot_device(BootDevice.NETWORK)
    assert await driver.power(PowerAction.ON, wait=10) == PowerState.ON
    assert "booting from network" in bmc.log.read_text()
    await driver.set_boot_device(BootDevice.DISK)
    assert await driver.power(PowerAction.CYCLE, wait=10) == PowerState.ON
    assert bmc.log.read_text().count("booting from disk") == 1
    assert await driver.power(PowerAction.OFF, wait=10) == PowerState.OFF
    assert await driver.power(PowerAction.OFF, wait=10) == PowerState.OFF


async def test_wrong_password_and_silent_bmcs(bmc: Bmc, caplog: pytest.LogCaptureFixture) -> None:
    wrong = IpmiDriver(BmcInfo("127.0.0.1", bmc.port, "admin", "not-the-password"))
    with pytest.raises(AuthenticationFailed):
        await wrong.get_power_state()
    silent = IpmiDriver(BmcInfo("127.0.0.1", free_udp_port(), "admin", PASSWORD), timeout=30)
    started = asyncio.get_running_loop().time()
    with pytest.raises(BmcUnreachable):
        await silent.get_power_state()
    assert asyncio.get_running_loop().time() - started < 35, "bounded by the command timeout"
    assert PASSWORD not in caplog.text and "not-the-password" not in caplog.text
