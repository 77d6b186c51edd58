"""Bringing up the agent's network: DHCP, or the static address of ``ip=``."""

from __future__ import annotations

from pathlib import Path

from arges.agent.cmdline import StaticIp
from arges.agent.net import bring_up


def sysfs(root: Path, nics: dict[str, tuple[str, bool]]) -> None:
    for name, (mac, link) in nics.items():
        base = root / "sys/class/net" / name
        (base / "device").mkdir(parents=True)
        (base / "address").write_text(mac + "\n")
        (base / "carrier").write_text("1\n" if link else "0\n")


class Commands:
    def __init__(self) -> None:
        self.ran: list[list[str]] = []

    def __call__(self, argv: list[str], timeout: float) -> int:
        self.ran.append(argv)
        return 0


def test_a_static_address_goes_on_the_named_nic_without_dhcp(tmp_path: Path) -> None:
    sysfs(tmp_path, {"eth0": ("52:54:00:00:00:01", True), "eth1": ("52:54:00:00:00:02", True)})
    run = Commands()
    static = StaticIp("10.88.0.50", 24, "10.88.0.1", ("10.88.0.1",))
    assert bring_up("52:54:00:00:00:02", tmp_path, run, lambda _: None, static) == ["eth1"]
    assert ["ip", "addr", "add", "10.88.0.50/24", "dev", "eth1"] in run.ran
    assert ["ip", "route", "add", "default", "via", "10.88.0.1", "dev", "eth1"] in run.ran
    assert not any(argv[0] == "udhcpc" for argv in run.ran)
    assert (tmp_path / "etc/resolv.conf").read_text() == "nameserver 10.88.0.1\n"


def test_without_a_mac_the_first_nic_with_a_link_gets_it(tmp_path: Path) -> None:
    sysfs(tmp_path, {"eth0": ("52:54:00:00:00:01", False), "eth1": ("52:54:00:00:00:02", True)})
    run = Commands()
    assert bring_up("", tmp_path, run, lambda _: None, StaticIp("10.0.0.9", 16)) == ["eth1"]
    assert ["ip", "addr", "add", "10.0.0.9/16", "dev", "eth1"] in run.ran
    assert not any(argv[:3] == ["ip", "route", "add"] for argv in run.ran)
    assert not (tmp_path / "etc/resolv.conf").exists()


def test_dhcp_when_there_is_no_static_address(tmp_path: Path) -> None:
    sysfs(tmp_path, {"eth0": ("52:54:00:00:00:01", True)})
    run = Commands()
    assert bring_up("", tmp_path, run, lambda _: None) == ["eth0"]
    assert any(argv[0] == "udhcpc" for argv in run.ran)
