"""The power interface's rules and the ipmitool driver's safety, without a BMC."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from arges.power import fake
from arges.power.base import BmcInfo, BootDevice, PowerAction, PowerState
from arges.power.errors import AuthenticationFailed, BmcUnreachable, PowerTimeout, Unsupported
from arges.power.factory import build_driver
from arges.power.ipmi import IpmiDriver, _classify, _SuiteRefused
from arges.power.redfish import RedfishDriver

INFO = BmcInfo("10.0.0.9", 623, "admin", "hunter2", "ipmi")


def test_the_password_stays_out_of_argv_and_repr() -> None:
    argv = IpmiDriver(INFO)._argv(17, ["chassis", "power", "status"])
    assert "hunter2" not in " ".join(argv) and "-E" in argv
    assert argv[argv.index("-C") + 1] == "17"
    assert "hunter2" not in repr(INFO) and str(INFO) == "ipmi://10.0.0.9:623"


@pytest.mark.parametrize(
    ("message", "elapsed", "suite", "error"),
    [
        (
            "Authentication algorithm 0x01 is not what we requested 0x03\nError: Unable to establish "
            "IPMI v2 / RMCP+ session",
            0.03,
            17,
            _SuiteRefused,
        ),
        ("Error: Unable to establish IPMI v2 / RMCP+ session", 0.03, 3, AuthenticationFailed),
        ("Error: Unable to establish IPMI v2 / RMCP+ session", 0.03, 17, _SuiteRefused),
        ("Error: Unable to establish IPMI v2 / RMCP+ session", 10.0, 3, BmcUnreachable),
        ("> Error: no response from RAKP 1 message", 8.0, 3, AuthenticationFailed),
        ("RAKP 2 HMAC is invalid", 0.1, 17, AuthenticationFailed),
        ("Get Auth Capabilities error", 8.0, 17, BmcUnreachable),
    ],
)
def test_ipmitool_messages_map_to_the_error_tree(message, elapsed, suite, error) -> None:
    got = _classify(INFO, message, suite, elapsed)
    assert isinstance(got, error)
    assert "hunter2" not in str(got)


def test_the_factory_is_the_only_chooser() -> None:
    assert isinstance(build_driver(INFO), IpmiDriver)
    assert isinstance(build_driver(BmcInfo("", 1, "u", "p", "redfish")), RedfishDriver)
    with pytest.raises(Unsupported, match="available: ipmi, redfish, fake"):
        build_driver(BmcInfo("a", 1, "u", "p", "snmp"))


async def test_ipmi_cannot_do_http_boot_nor_virtual_media() -> None:
    driver = IpmiDriver(INFO)
    with pytest.raises(Unsupported, match="IPMI cannot select http boot"):
        await driver.set_boot_device(BootDevice.HTTP)
    with pytest.raises(Unsupported, match="no virtual media"):
        await driver.insert_media("http://arges/agent/x.iso")


async def test_actions_are_sent_as_asked_and_verified() -> None:
    fake.MACHINES.clear()
    driver = build_driver(BmcInfo("bmc-1", 623, "admin", "secret", "fake"))
    machine = fake.MACHINES.setdefault("bmc-1:623", fake.FakeMachine())
    assert await driver.power(PowerAction.OFF) == PowerState.OFF
    assert machine.actions == ["off"], "the caller decides whether an action is needed"
    assert await driver.power(PowerAction.CYCLE) == PowerState.ON
    assert machine.actions == ["off", "on"], "cycling an off server powers it on"
    await driver.set_boot_device(BootDevice.NETWORK)
    assert machine.boot_device == BootDevice.NETWORK and not machine.persistent
    machine.faults = fake.Faults(lie=PowerState.ON, lie_times=1000)
    with pytest.raises(PowerTimeout, match="still reports on"):
        await driver.power(PowerAction.OFF, wait=0.05)
    machine.faults = fake.Faults(fail=1, error=BmcUnreachable)
    with pytest.raises(BmcUnreachable):
        await driver.get_power_state()
    assert await driver.get_power_state() == PowerState.OFF
    wrong = build_driver(BmcInfo("bmc-1", 623, "admin", "nope", "fake"))
    with pytest.raises(AuthenticationFailed):
        await wrong.get_power_state()


async def test_a_cancelled_call_does_not_leave_ipmitool_running(tmp_path) -> None:
    pid_file = tmp_path / "pid"
    slow = tmp_path / "ipmitool"
    slow.write_text(f"#!/bin/sh\necho $$ > {pid_file}\nexec sleep 60\n")
    slow.chmod(0o755)
    call = asyncio.create_task(IpmiDriver(INFO, ipmitool=str(slow)).get_power_state())
    while not pid_file.exists() or not pid_file.read_text().strip():
        await asyncio.sleep(0.05)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    pid = int(pid_file.read_text())
    assert not Path(f"/proc/{pid}").exists(), "ipmitool was killed and reaped"
