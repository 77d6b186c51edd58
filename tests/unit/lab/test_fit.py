"""``arges lab up`` checks the running Arges' network boot settings fit the lab."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from arges.boot.services import BootConfig
from arges.cli.main import main
from arges.cli.running import BOOT_RECORD, forget, record, running_boot
from arges.lab.fit import BootSettings, flags, misfits
from arges.lab.network import LabNetwork

NET = LabNetwork()
LAB = BootSettings("10.88.0.1", "proxy", "arges0", None)
FULL = BootSettings("10.88.0.1", "full", "arges0", "10.88.0.0/24")
DEFAULTS = BootSettings("192.168.1.20", "proxy", None, None)
"""What ``arges up`` with its defaults records on a host whose first address is that."""

CASES = [
    # (settings, site DHCP, network boot, expected phrases (empty: fits))
    (LAB, True, True, []),
    (FULL, False, True, []),
    (BootSettings("10.88.0.1", None, None, None), True, False, []),
    (
        DEFAULTS,
        True,
        True,
        ["reach it at 192.168.1.20, but the lab's servers reach it at 10.88.0.1", "pinned to no"],
    ),
    (BootSettings("10.88.0.1", None, None, None), True, True, ["no DHCP, so the servers get no"]),
    (BootSettings("10.88.0.1", None, None, None), False, False, ["nothing hands out addresses"]),
    (LAB, False, True, ["ProxyDHCP, but the lab has no site DHCP"]),
    (FULL, True, True, ["full DHCP server beside the lab's site DHCP"]),
    (
        BootSettings("10.88.0.1", "full", "arges0", "10.99.0.0/24"),
        False,
        True,
        ["addresses in 10.99.0.0/24, the lab's subnet is 10.88.0.0/24"],
    ),
    (BootSettings("10.88.0.1", "proxy", "eth0", None), True, True, ["listens on eth0"]),
]


@pytest.mark.parametrize(("settings", "site_dhcp", "network_boot", "expected"), CASES)
def test_misfits(
    settings: BootSettings, site_dhcp: bool, network_boot: bool, expected: list[str]
) -> None:
    found = misfits(settings, NET, site_dhcp=site_dhcp, network_boot=network_boot)
    assert len(found) == len(expected), found
    for line, phrase in zip(found, expected, strict=True):
        assert phrase in line


def test_flags() -> None:
    assert flags(NET, site_dhcp=True) == "--boot-address 10.88.0.1 --dhcp-interface arges0"
    assert flags(NET, site_dhcp=False) == (
        "--boot-address 10.88.0.1 --dhcp-interface arges0 "
        "--dhcp-mode full --dhcp-network 10.88.0.0/24"
    )


def test_the_record_of_a_running_arges(tmp_path: Path) -> None:
    assert running_boot(tmp_path) is None, "no record: nothing can be told"
    record(tmp_path, BootConfig(address="192.168.1.20"))
    assert running_boot(tmp_path) == DEFAULTS
    (tmp_path / BOOT_RECORD).write_text("{not json")
    assert running_boot(tmp_path) is None
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    record(tmp_path, BootConfig(address="192.168.1.20"), pid=int(gone.stdout))
    assert running_boot(tmp_path) is None, "its process is gone"
    forget(tmp_path)
    assert not (tmp_path / BOOT_RECORD).exists()


def test_lab_up_refuses_an_arges_started_with_its_defaults(tmp_path: Path) -> None:
    record(tmp_path, BootConfig(address="192.168.1.20"), pid=os.getpid())
    result = CliRunner().invoke(main, ["lab", "up", "--data-dir", str(tmp_path)])
    assert result.exit_code == 1, result.output
    assert "cannot boot this lab's servers" in result.output
    assert "reach it at 192.168.1.20" in result.output
    assert (
        f"restart it as: arges up --data-dir {tmp_path} --boot-address 10.88.0.1 "
        "--dhcp-interface arges0"
    ) in result.output
    assert not (tmp_path / "lab").exists(), "nothing was built"
    result = CliRunner().invoke(main, ["lab", "up", "--no-site-dhcp", "--data-dir", str(tmp_path)])
    assert "--dhcp-mode full --dhcp-network 10.88.0.0/24" in result.output
