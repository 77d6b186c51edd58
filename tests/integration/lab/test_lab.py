"""``arges lab`` end to end: real SeaBIOS+iPXE and OVMF servers network-booting into Arges.

Each firmware path is followed in Arges' boot log and on the Server objects, in both DHCP
modes: ProxyDHCP beside the site's dnsmasq, and Arges' full DHCP without it. The discovery
agent's Environment does not exist in these tests, so ``/ipxe`` answers 412; what is proved
is that each server's request reaches Arges with its own SMBIOS UUID and MAC.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from arges.kube.resources import SECRETS, SERVERS
from arges.lab.records import LAB_LABEL
from arges.lab.state import LabServer
from tests.integration.conftest import eventually
from tests.integration.lab.conftest import (
    NETWORK,
    BootLog,
    Lab,
    arges,
    assert_nothing_left,
    lab_unavailable,
)

pytestmark = [
    pytest.mark.lab,
    pytest.mark.slow,
    pytest.mark.timeout(900),
    pytest.mark.skipif(lab_unavailable() is not None, reason=str(lab_unavailable())),
]

BOOT_TIMEOUT = 300.0
"""Seconds: TCG on two shared cores; a BIOS chain took about 20 s here, a UEFI one 40 s."""
IPXE_412 = "environment 'agent' does not exist"


def report(capsys: pytest.CaptureFixture[str], text: str) -> None:
    with capsys.disabled():
        print(f"\n  [lab] {text}", flush=True)


def powered_on_at(server: LabServer) -> float:
    """When QEMU started (it writes its pid file then)."""
    return server.pid_file.stat().st_mtime


@pytest.mark.parametrize("mode", ["proxy", "full"])
async def test_bios_and_uefi_servers_reach_arges(
    mode: str, lab: Lab, boot_log: BootLog, capsys: pytest.CaptureFixture[str]
) -> None:
    plane = await lab.start_plane(mode)  # type: ignore[arg-type]
    assert plane.boot is not None and plane.kube is not None
    args = ["--servers", "2", "--firmware", "mixed", "--memory", "512", "--disks", "1G"]
    up = await lab.up(*args, *([] if mode == "proxy" else ["--no-site-dhcp"]))
    assert up.code == 0, up.err + up.out
    report(capsys, f"{mode} mode: lab up (1 BIOS + 1 UEFI server) took {up.seconds:.1f} s")
    bios, uefi = lab.state().servers
    assert (bios.firmware, uefi.firmware) == ("bios", "uefi")
    base = f"http://{NETWORK.host_address}:{plane.boot.http.port}"

    for server in (bios, uefi):
        asked = await eventually(
            lambda s=server: boot_log.first(f"/ipxe {s.uuid} ({s.macs[0]}) from "),
            BOOT_TIMEOUT,
            interval=1,
            what=f"{server.firmware} server {server.uuid} asking /ipxe\n{boot_log.lines()}",
        )
        report(
            capsys,
            f"{mode} mode: {server.firmware} power-on to /ipxe?uuid= "
            f"{asked - powered_on_at(server):.1f} s",
        )
    log = boot_log.lines()
    dnsmasq = (lab.lab_dir / "dnsmasq.log").read_text() if mode == "proxy" else ""

    def address(server: LabServer) -> str:
        """Where the server's address came from: dnsmasq (proxy) or Arges (full)."""
        mac = server.macs[0]
        if mode == "proxy":
            found = re.search(rf"DHCPACK\(br0\) (\S+) {mac}", dnsmasq)
        else:
            found = re.search(rf"DHCP: {mac} leases (\S+)", log)
        assert found, f"{server.firmware}: no address for {mac}\n{dnsmasq or log}"
        return found.group(1)

    def sequence(*steps: str) -> None:
        times = [boot_log.first(step) for step in steps]
        assert None not in times, f"missing one of {steps}\n{log}"
        assert times == sorted(times), f"out of order: {steps}\n{log}"

    offer = (
        "ProxyDHCP offer on port 67: {mac} ({kind}) ->"
        if mode == "proxy"
        else "DHCP: {mac} leases {ip} ->"
    )

    ip = address(bios)
    mac = bios.macs[0]
    sequence(
        offer.format(mac=mac, kind="ipxe", ip=ip) + f" {base}/boot.ipxe",
        f"/boot.ipxe to {ip}",
        f"/ipxe {bios.uuid} ({mac}) from {ip}: {IPXE_412}",
    )
    assert f"to {ip}" not in "\n".join(m for m in log.splitlines() if m.startswith("TFTP")), (
        "the BIOS server's iPXE ROM goes straight to HTTP"
    )

    ip = address(uefi)
    mac = uefi.macs[0]
    efi_size = (plane.boot.config.tftp_root / "ipxe.efi").stat().st_size
    sequence(
        offer.format(mac=mac, kind="uefi-x64", ip=ip) + " ipxe.efi",
        f"TFTP: sent ipxe.efi ({efi_size} bytes) to {ip}",
        offer.format(mac=mac, kind="ipxe", ip=ip) + f" {base}/boot.ipxe",
        f"/boot.ipxe to {ip}",
        f"/ipxe {uefi.uuid} ({mac}) from {ip}: {IPXE_412}",
    )

    logged = await arges("lab", "console", "lab-2", "--data-dir", str(lab.data_dir))
    assert ">>Start PXE over IPv4." in logged.out and "NBP file downloaded" in logged.out
    attached = await asyncio.to_thread(console_on_a_terminal, lab, "lab-1", b"Arges: ")
    assert b"Ctrl-] detaches" in attached and attached.rstrip().endswith(b"detached.")

    if mode == "proxy":
        acks = [m for m in log.splitlines() if m.startswith("ProxyDHCP ack on port 4011")]
        report(capsys, f"proxy mode: ProxyDHCP requests on port 4011 (any firmware): {len(acks)}")

    for server in (bios, uefi):
        body = await plane.kube.get(SERVERS, server.uuid)
        booted = [c for c in body["status"]["conditions"] if c["type"] == "PXEBooted"]
        assert booted and booted[0]["reason"] == "NotReady", body["status"]
        assert body["spec"]["accepted"] is False
        assert body["spec"]["bmc"]["port"] == server.bmc_port

    down = await lab.down()
    assert down.code == 0, down.err
    assert_nothing_left(lab.lab_dir)


def console_on_a_terminal(lab: Lab, name: str, expect: bytes, timeout: float = 60) -> bytes:
    """``arges lab console NAME`` on a pseudo-terminal: wait for ``expect`` from the server,
    type Ctrl-], and return everything the terminal showed (the command must exit 0)."""
    master, slave = os.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "arges", "lab", "console", name, "--data-dir", str(lab.data_dir)],
        stdin=slave,
        stdout=slave,
        stderr=slave,
    )
    os.close(slave)
    shown = b""
    try:
        deadline = time.monotonic() + timeout
        while expect not in shown:
            assert time.monotonic() < deadline, f"no {expect!r} on the console: {shown[-500:]!r}"
            if select.select([master], [], [], 1)[0]:
                shown += os.read(master, 4096)
        os.write(master, b"\x1d")
        assert proc.wait(timeout=10) == 0
        while select.select([master], [], [], 0.5)[0]:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            shown += chunk
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return shown


def ipmitool(port: int, username: str, password: str, *command: str) -> str:
    """``ipmitool -I lanplus -C 3`` with the password in IPMI_PASSWORD (-E), never argv."""
    argv = ["ipmitool", "-I", "lanplus", "-C", "3", "-H", "127.0.0.1", "-p", str(port)]
    done = subprocess.run(
        [*argv, "-U", username, "-E", "-N", "1", "-R", "2", "chassis", "power", *command],
        env={**os.environ, "IPMI_PASSWORD": password},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return (done.stdout + done.stderr).strip()


def qemu_running(server: LabServer) -> int | None:
    try:
        pid = int(server.pid_file.read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if b"qemu" in cmdline else None


async def test_the_bmcs_drive_the_servers_and_down_cleans_up_after_a_crash(
    lab: Lab, capsys: pytest.CaptureFixture[str]
) -> None:
    plane = await lab.start_plane(None, power_refresh=1.0)
    assert plane.kube is not None
    up = await lab.up("--servers", "1", "--firmware", "bios", "--memory", "256", "--disks", "64M")
    assert up.code == 0, up.err + up.out
    report(capsys, f"lab up (1 BIOS server, no boot services) took {up.seconds:.1f} s")
    (server,) = lab.state().servers
    again = await lab.up("--servers", "1")
    assert again.code == 1 and "only one lab runs on a machine" in again.err

    # The operator's view: the Server's spec.bmc and its Secret.
    body = await plane.kube.get(SERVERS, server.uuid)
    ref = body["spec"]["bmc"]["credentialsSecretRef"]
    secret = await plane.kube.get(SECRETS, ref["name"], ref["namespace"])
    assert secret["metadata"]["labels"][LAB_LABEL] == server.name
    username = base64.b64decode(secret["data"]["username"]).decode()
    password = base64.b64decode(secret["data"]["password"]).decode()
    port = body["spec"]["bmc"]["port"]

    async def power_in_arges(expected: str) -> bool:
        assert plane.kube is not None
        current = await plane.kube.get(SERVERS, server.uuid)
        return bool(current.get("status", {}).get("power") == expected)

    assert password not in (lab.lab_dir / "state.json").read_text()
    assert password not in (lab.lab_dir / "supervisor.log").read_text()

    assert ipmitool(port, username, password, "status") == "Chassis Power is on"
    first = qemu_running(server)
    assert first is not None
    await eventually(
        lambda: power_in_arges("on"), 60, interval=1, what="Arges reading power on through the BMC"
    )

    assert "Down/Off" in ipmitool(port, username, password, "off")
    assert ipmitool(port, username, password, "status") == "Chassis Power is off"
    assert qemu_running(server) is None and not Path(f"/proc/{first}").exists()
    await eventually(
        lambda: power_in_arges("off"),
        60,
        interval=1,
        what="Arges reading power off through the BMC",
    )
    status = await arges("lab", "status", "--data-dir", str(lab.data_dir))
    assert re.search(rf"{server.name}\s+bios\s+{server.uuid}\s.*\soff\s", status.out), status.out

    assert "Up/On" in ipmitool(port, username, password, "on")
    second = await eventually(
        lambda: qemu_running(server), 30, interval=1, what="QEMU started by the BMC"
    )
    assert second != first
    assert "Error" in ipmitool(port, username, "not-the-password", "status")

    # A crash: the supervisor dies without cleaning up; its QEMU keeps running.
    state = lab.state()
    assert state.supervisor_pid is not None
    os.kill(state.supervisor_pid, signal.SIGKILL)
    await asyncio.sleep(1)
    assert qemu_running(server) == second
    down = await lab.down()
    assert down.code == 0, down.err
    left = re.search(r"stopped 2 process\(es\) left in the lab: \[(.*)\]", down.out)
    assert left and str(second) in left.group(1), down.out  # QEMU and dnsmasq
    assert_nothing_left(lab.lab_dir)
    assert (await lab.down()).out.strip() == "There was no lab; nothing to remove."
    assert await plane.kube.list(SECRETS, "default", label_selector=LAB_LABEL) == []
    assert (await plane.kube.get(SERVERS, server.uuid))["metadata"]["name"] == server.uuid


async def test_refusals_leave_nothing_behind(lab: Lab, tmp_path: Path) -> None:
    no_arges = await lab.up("--servers", "1")
    assert no_arges.code == 1
    assert "Arges is not running with --data-dir" in no_arges.err
    assert "arges up --data-dir" in no_arges.err and "--dhcp-interface arges0" in no_arges.err
    assert not NETWORK.exists() and not lab.lab_dir.exists()

    empty = tmp_path / "empty-path"
    empty.mkdir()
    missing = await arges(
        "lab", "up", "--data-dir", str(lab.data_dir), env={**os.environ, "PATH": str(empty)}
    )
    assert missing.code == 1
    for tool, fix in [
        ("qemu-system-x86_64", "apt-get install -y qemu-system-x86"),
        ("dnsmasq", "apt-get install -y dnsmasq-base"),
        ("ipmitool", "apt-get install -y ipmitool"),
    ]:
        assert f"{tool} is not installed (fix: {fix})" in missing.err, missing.err

    plane = await lab.start_plane(None)
    assert plane.kube is not None
    broken = await lab.up("--servers", "2", "--firmware", "mixed", "--qemu", "/bin/false")
    assert broken.code == 1
    assert "the lab did not come up: lab-1: QEMU exited" in broken.err, broken.err
    assert "everything it had created has been removed" in broken.err
    assert_nothing_left(lab.lab_dir)
    assert await plane.kube.list(SERVERS, label_selector=LAB_LABEL) == []
    assert await plane.kube.list(SECRETS, "default", label_selector=LAB_LABEL) == []
