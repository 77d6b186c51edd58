"""The lab's plan, its state file, and the CLI's argument checks: no root, no processes."""

from __future__ import annotations

import datetime as dt
import json
import random
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from arges.cli.main import main
from arges.lab.plan import GiB, LabSpec, MiB, PlanError, firmware_sequence, parse_disks, plan
from arges.lab.records import bmc_spec, secret_body
from arges.lab.state import (
    ArgesRecord,
    Credentials,
    LabState,
    StateError,
    load_credentials,
    load_state,
    save_credentials,
    save_state,
)

LAB = Path("/var/lib/arges/lab")


def test_mixed_firmware_alternates_starting_with_bios() -> None:
    assert firmware_sequence(3, "mixed") == ["bios", "uefi", "bios"]
    assert firmware_sequence(2, "uefi") == ["uefi", "uefi"]
    assert firmware_sequence(1, "mixed") == ["bios"]


def test_mixed_bmcs_alternate_starting_with_ipmi() -> None:
    servers = plan(
        LabSpec(servers=3, bmc="mixed", network_boot=False),
        LAB,
        [6230, 6231, 6232],
        random.Random(1),
    )
    assert [s.bmc_kind for s in servers] == ["ipmi", "redfish", "ipmi"]
    assert [s.bmc_url for s in servers[:2]] == ["127.0.0.1:6230", "https://127.0.0.1:6231"]
    assert not any(s.network_boot or s.machine(None).network_boot for s in servers)


def test_disk_sizes() -> None:
    assert parse_disks("4G") == (4 * GiB,)
    assert parse_disks("4G, 2GiB,512M") == (4 * GiB, 2 * GiB, 512 * MiB)
    assert parse_disks(str(8 * MiB)) == (8 * MiB,)
    for bad in ("", "4X", "-1G", "1K", "G", "4.5G"):
        with pytest.raises(PlanError):
            parse_disks(bad)


def test_plan_names_identities_devices_and_bmcs() -> None:
    spec = LabSpec(servers=3, firmware="mixed", disks=(4 * GiB, 2 * GiB), nics=2)
    servers = plan(spec, LAB, [6230, 6231, 6233], random.Random(7))
    assert [s.name for s in servers] == ["lab-1", "lab-2", "lab-3"]
    assert [s.firmware for s in servers] == ["bios", "uefi", "bios"]
    assert [s.bmc_port for s in servers] == [6230, 6231, 6233]
    first = servers[0]
    assert first.uuid == first.uuid.lower() and first.uuid[14] == "4"
    assert first.serial == f"LAB{first.uuid[:8].upper()}"
    assert first.taps == ["lab1n0", "lab1n1"]
    assert first.macs[0].startswith("52:54:00:") and first.macs[1].endswith(":01")
    assert [(d.path, d.size, d.serial) for d in first.disks] == [
        (LAB / "servers/lab-1/disk0.raw", 4 * GiB, f"{first.serial}-D0"),
        (LAB / "servers/lab-1/disk1.raw", 2 * GiB, f"{first.serial}-D1"),
    ]
    macs = [m for s in servers for m in s.macs]
    assert len(set(macs)) == len(macs) == 6
    assert len({s.uuid for s in servers}) == 3
    assert first.secret_name == f"bmc-{first.uuid}"
    again = plan(spec, LAB, [6230, 6231, 6233], random.Random(7))
    assert [s.uuid for s in again] == [s.uuid for s in servers], "reproducible from the seed"


def test_a_plan_becomes_qemu_machines() -> None:
    bios, uefi = plan(LabSpec(servers=2), LAB, [1, 2], random.Random(1))
    code = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
    machine = uefi.machine(code)
    assert (machine.ovmf_code, machine.ovmf_vars) == (code, LAB / "servers/lab-2/OVMF_VARS.fd")
    assert machine.smbios.uuid == uefi.uuid and machine.smbios.serial == uefi.serial
    assert bios.machine(code).ovmf_code is None
    assert [n.mac for n in bios.machine(None).nics] == bios.macs


def test_plans_that_cannot_be() -> None:
    with pytest.raises(PlanError, match="1 to 32 servers"):
        plan(LabSpec(servers=0), LAB, [], random.Random())
    with pytest.raises(PlanError, match="distinct BMC ports"):
        plan(LabSpec(servers=2), LAB, [6230, 6230], random.Random())
    with pytest.raises(PlanError, match="shorter --data-dir"):
        plan(LabSpec(servers=1), Path("/" + "d" * 100), [6230], random.Random())


def state(tmp_path: Path) -> LabState:
    servers = plan(LabSpec(servers=2), tmp_path / "lab", [6230, 6231], random.Random(3))
    return LabState(
        created=dt.datetime(2026, 12, 1, tzinfo=dt.UTC),
        network=LabSpec().network,
        site_dhcp=True,
        qemu="qemu-system-x86_64",
        ovmf_code=Path("/usr/share/OVMF/OVMF_CODE_4M.fd"),
        servers=servers,
        supervisor_pid=4321,
        arges=ArgesRecord(kubeconfig=tmp_path / "kubeconfig", secrets=["bmc-x"]),
    )


def test_state_round_trip_and_credentials_are_private(tmp_path: Path) -> None:
    lab = tmp_path / "lab"
    lab.mkdir()
    assert load_state(lab) is None
    original = state(tmp_path)
    save_state(lab, original)
    assert load_state(lab) == original
    assert "password" not in (lab / "state.json").read_text()
    save_credentials(lab, {"lab-1": Credentials(username="admin", password="s3cret-pw")})
    assert stat.S_IMODE((lab / "credentials.json").stat().st_mode) == 0o600
    assert load_credentials(lab)["lab-1"].password == "s3cret-pw"
    assert "s3cret-pw" not in repr(load_credentials(lab))


def test_unreadable_state_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "state.json").write_text(json.dumps({"version": 1, "servers": "many"}))
    with pytest.raises(StateError, match="not a lab file"):
        load_state(tmp_path)
    (tmp_path / "state.json").write_text("{")
    with pytest.raises(StateError):
        load_state(tmp_path)
    with pytest.raises(StateError, match=r"credentials\.json"):
        load_credentials(tmp_path)


def test_what_arges_is_told(tmp_path: Path) -> None:
    server = state(tmp_path).servers[0]
    assert bmc_spec(server, "default").to_json() == {
        "address": "127.0.0.1",
        "port": 6230,
        "protocol": "ipmi",
        "credentialsSecretRef": {"name": f"bmc-{server.uuid}", "namespace": "default"},
    }
    body = secret_body(server, Credentials(username="admin", password="pw"), "default", "CA")
    assert body["data"] == {"username": "YWRtaW4=", "password": "cHc="}, "no CA for IPMI"
    redfish = server.model_copy(update={"bmc_kind": "redfish"})
    assert bmc_spec(redfish, "default").to_json() == {
        "protocol": "redfish",
        "endpoint": "https://127.0.0.1:6230",
        "credentialsSecretRef": {"name": f"bmc-{server.uuid}", "namespace": "default"},
    }
    body = secret_body(redfish, Credentials(username="admin", password="pw"), "default", "CA")
    assert body["data"] == {"username": "YWRtaW4=", "password": "cHc=", "ca.crt": "Q0E="}


def test_status_of_a_lab_whose_processes_are_gone(tmp_path: Path) -> None:
    lab = tmp_path / "lab"
    lab.mkdir()
    current = state(tmp_path)
    save_state(lab, current)
    result = CliRunner().invoke(main, ["lab", "status", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "supervisor NOT running" in lines[0]
    assert lines[1].split() == ["NAME", "FIRMWARE", "UUID", "MAC", "BMC", "POWER", "CONSOLE", "LOG"]
    first = current.servers[0]
    assert lines[2].split() == [
        "lab-1",
        "bios",
        first.uuid,
        first.macs[0],
        "ipmi",
        "127.0.0.1:6230",
        "off",
        str(first.console_log),
    ]


def test_cli_refusals(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["lab", "status", "--data-dir", str(tmp_path)])
    assert result.exit_code == 1 and "no lab in" in result.output
    result = runner.invoke(main, ["lab", "up", "--disks", "4X", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2 and "'4X' is not a size" in result.output
    result = runner.invoke(main, ["lab", "up", "--servers", "0", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2 and "--servers" in result.output
    result = runner.invoke(main, ["lab", "up", "--firmware", "coreboot"])
    assert result.exit_code == 2
    (tmp_path / "lab").mkdir()
    save_state(tmp_path / "lab", state(tmp_path))
    result = runner.invoke(main, ["lab", "console", "lab-9", "--data-dir", str(tmp_path)])
    assert (
        result.exit_code == 1
        and "no lab server 'lab-9' (the lab has lab-1, lab-2)" in result.output
    )
    result = runner.invoke(main, ["lab", "console", "lab-1", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0 and "has written nothing to its console yet" in result.output
