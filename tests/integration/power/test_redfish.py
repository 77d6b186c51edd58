"""The Redfish driver against sushy-tools' emulator over HTTPS, in this process.

The emulator's systems are either the lab's QEMU systems driver over a stand-in for QEMU (a
harmless long-running command that records its arguments, so the boot order and the virtual
CD QEMU would get can be read back), or sushy-tools' own in-memory fake with several systems.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shlex
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sushy_tools.emulator.resources.systems.fakedriver import FakeDriver
from werkzeug.serving import BaseWSGIServer

from arges.lab import tls
from arges.lab.machines import Machine, Nic, Smbios
from arges.lab.redfish import QemuSystems, Sessions, emulator_app, serve
from arges.lab.vm import VirtualMachine
from arges.power import redfish
from arges.power.base import BmcInfo, BootDevice, PowerAction, PowerState
from arges.power.errors import (
    AuthenticationFailed,
    BmcError,
    BmcUnreachable,
    TlsUntrusted,
    Unsupported,
)
from arges.power.factory import build_driver
from arges.power.redfish import RedfishDriver
from tests.integration.conftest import eventually

PASSWORD = "redfish-s3cret"
UUID = "3f0e1c2a-7b5d-4e8f-9a1b-2c3d4e5f6a7b"


@dataclass
class Service:
    """One emulator on 127.0.0.1 over TLS, with its sessions layer and CA."""

    server: BaseWSGIServer
    sessions: Sessions
    ca: str
    vm: VirtualMachine | None
    argv_log: Path | None

    @property
    def endpoint(self) -> str:
        return f"https://127.0.0.1:{self.server.server_port}"

    def info(self, **kw: object) -> BmcInfo:
        fields: dict[str, object] = {
            "address": "",
            "port": 623,
            "username": "admin",
            "password": PASSWORD,
            "protocol": "redfish",
            "endpoint": self.endpoint,
            "ca": self.ca,
        }
        fields.update(kw)
        return BmcInfo(**fields)  # type: ignore[arg-type]

    def qemu_args(self) -> list[list[str]]:
        """The argument lists the stand-in for QEMU was started with, oldest first."""
        assert self.argv_log is not None
        if not self.argv_log.exists():
            return []
        return [shlex.split(line) for line in self.argv_log.read_text().splitlines()]


def start(
    tmp_path: Path, systems: object, vm: VirtualMachine | None, argv_log: Path | None
) -> Iterator[Service]:
    files = tls.create(tmp_path / "tls")
    server, sessions = serve(
        systems,  # type: ignore[arg-type]
        {"admin": PASSWORD},
        address="127.0.0.1",
        port=0,
        tls=files,
        state_dir=tmp_path / "state",
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    redfish._clients.clear()
    try:
        yield Service(server, sessions, files.ca.read_text(), vm, argv_log)
    finally:
        server.shutdown()
        server.server_close()
        if vm is not None:
            vm.power_off()
        redfish._clients.clear()


@pytest.fixture
def lab_bmc(tmp_path: Path) -> Iterator[Service]:
    """The lab's Redfish BMC over a stand-in QEMU that logs its arguments."""
    argv_log = tmp_path / "qemu-argv.log"
    qemu = tmp_path / "qemu"
    qemu.write_text(
        f'#!/bin/bash\nprintf "%q " "$@" >> {shlex.quote(str(argv_log))}\n'
        f"echo >> {shlex.quote(str(argv_log))}\nexec sleep 3600\n"
    )
    qemu.chmod(0o755)
    machine = Machine(
        "lab-1",
        "uefi",
        Smbios(uuid=UUID),
        (),
        (Nic("none", "52:54:00:12:34:00"),),
        tmp_path / "run",
        ovmf_code=tmp_path / "code.fd",
        ovmf_vars=tmp_path / "vars.fd",
    )
    vm = VirtualMachine(machine, qemu=str(qemu))
    yield from start(tmp_path, QemuSystems(vm), vm, argv_log)


@pytest.fixture
def fake_bmc(tmp_path: Path) -> Iterator[Service]:
    """sushy-tools' in-memory fake with two systems (power changes land 1 to 11 s later)."""
    config = {
        "SUSHY_EMULATOR_FAKE_SYSTEMS": [
            {
                "uuid": f"00000000-0000-0000-0000-00000000000{i}",
                "name": f"node-{i}",
                "power_state": "Off",
                "boot_mode": "UEFI" if i == 1 else "Legacy",
                "nics": [{"mac": f"00:5c:52:31:3a:9{i}", "ip": "10.0.0.9"}],
            }
            for i in (1, 2)
        ],
        "SUSHY_EMULATOR_STATE_DIR": str(tmp_path / "fake-state"),
    }
    app = emulator_app(None, tmp_path / "state")  # type: ignore[arg-type]
    app.config.update(config)
    systems = FakeDriver.initialize(app.config, app.logger)()
    yield from start(tmp_path, systems, None, None)


async def test_power_and_boot_through_sessions(
    lab_bmc: Service, caplog: pytest.LogCaptureFixture
) -> None:
    driver = build_driver(lab_bmc.info())
    assert isinstance(driver, RedfishDriver)
    driver.validate()
    assert await driver.get_power_state() == PowerState.OFF

    await driver.set_boot_device(BootDevice.NETWORK)
    assert await driver.power(PowerAction.ON, wait=20) == PowerState.ON
    first = await eventually(lab_bmc.qemu_args, 10, what="QEMU started")
    assert any("bootindex=1" in a and "virtio-net" in a for a in first[-1])

    await driver.set_boot_device(BootDevice.DISK, uefi=True)
    assert await driver.power(PowerAction.CYCLE, wait=20) == PowerState.ON
    second = await eventually(lambda: lab_bmc.qemu_args()[1:], 10, what="QEMU restarted")
    assert not any("virtio-net" in a and "bootindex" in a for a in second[-1])

    # A guest that ignores the power button: graceful first, forced once the grace is over.
    assert lab_bmc.vm is not None
    lab_bmc.vm.shutdown = lambda grace=0.0: None  # type: ignore[method-assign]
    driver.graceful_timeout = 1.0
    caplog.set_level(logging.INFO, logger="arges.lab.redfish")
    assert await driver.power(PowerAction.OFF, wait=20) == PowerState.OFF
    assert not lab_bmc.vm.running
    resets = [r.getMessage() for r in caplog.records if "Redfish reset" in r.getMessage()]
    assert resets[-2:] == ["lab-1: Redfish reset GracefulShutdown", "lab-1: Redfish reset ForceOff"]

    # One session for all of it, and no Basic authentication.
    assert lab_bmc.sessions.logins == 1 and lab_bmc.sessions.basic_requests == 0


async def test_virtual_media_is_inserted_verified_and_ejected(
    lab_bmc: Service, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    iso = tmp_path / "agent.iso"
    iso.write_bytes(b"CD001" * 1000)
    http = await asyncio.start_server(lambda r, w: _serve_file(r, w, iso), "127.0.0.1", 0)
    token = "T" * 43
    where = f"http://127.0.0.1:{http.sockets[0].getsockname()[1]}/agent/{UUID}.iso"
    url = f"{where}?token={token}"
    driver = RedfishDriver(lab_bmc.info())
    try:
        await driver.insert_media(url)
        await driver.insert_media(url)  # already in: nothing to do
        await driver.set_boot_device(BootDevice.CD)
        assert await driver.power(PowerAction.ON, wait=20) == PowerState.ON
    finally:
        http.close()
    args = (await eventually(lab_bmc.qemu_args, 10, what="QEMU started"))[-1]
    cd = next(a for a in args if a.startswith("file=") and "media=cdrom" in a)
    fetched = Path(cd.split(",")[0].removeprefix("file="))
    assert fetched.read_bytes() == iso.read_bytes(), "the BMC fetched the image"
    assert "ide-cd,drive=cd0,bootindex=1" in args
    # The emulated BMC (sushy-tools, arges.lab) may log what it fetched; Arges' side may not.
    ours = [r.getMessage() for r in caplog.records if r.name.startswith(("arges.power", "sushy."))]
    assert any(m.endswith(f"holds {where}") for m in ours)
    assert not [m for m in ours if token in m], "Arges does not log the URL's credential"
    await driver.eject_media()
    await driver.eject_media()
    assert lab_bmc.vm is not None and lab_bmc.vm.media is None


async def _serve_file(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: Path
) -> None:
    await reader.readuntil(b"\r\n\r\n")
    data = path.read_bytes()
    writer.write(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
        + f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode()
        + data
    )
    await writer.drain()
    writer.close()


async def test_tls_is_verified_against_the_secret_ca_unless_insecure(lab_bmc: Service) -> None:
    with pytest.raises(TlsUntrusted, match="did not verify against the host CAs") as caught:
        await RedfishDriver(lab_bmc.info(ca="")).get_power_state()
    assert PASSWORD not in str(caught.value)
    insecure = RedfishDriver(lab_bmc.info(ca="", insecure=True))
    assert insecure.verify is False
    assert await insecure.get_power_state() == PowerState.OFF
    assert await RedfishDriver(lab_bmc.info()).get_power_state() == PowerState.OFF


async def test_refusals_and_silence_become_power_errors(
    lab_bmc: Service, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(AuthenticationFailed):
        await RedfishDriver(lab_bmc.info(password="not-the-password")).get_power_state()
    with pytest.raises(BmcError, match=r"spec\.bmc\.systemId"):
        await RedfishDriver(lab_bmc.info(system_id="no-such-system")).get_power_state()
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with pytest.raises(BmcUnreachable):
        await RedfishDriver(lab_bmc.info(endpoint=f"https://127.0.0.1:{port}")).get_power_state()

    # A BMC that accepts connections and never answers: the call gives up within its
    # timeout, and the event loop keeps running meanwhile (sushy runs in a thread).
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        stuck = RedfishDriver(
            lab_bmc.info(endpoint=f"https://127.0.0.1:{silent.getsockname()[1]}"),
            timeout=2.0,
            request_timeout=1.0,
        )
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.05)

        ticker = asyncio.create_task(tick())
        with pytest.raises(BmcUnreachable):
            await stuck.get_power_state()
        ticker.cancel()
    assert ticks > 3
    assert "not-the-password" not in caplog.text and PASSWORD not in caplog.text


@pytest.mark.parametrize(
    ("endpoint", "username", "problem"),
    [
        ("", "admin", "needs spec.bmc.endpoint"),
        ("ftp://bmc", "admin", "not an http(s)://host URL"),
        ("https://bmc/redfish/v1", "admin", "has a path"),
        ("https://bmc", "", "needs a credentials Secret"),
    ],
)
def test_validate_names_what_is_missing(endpoint: str, username: str, problem: str) -> None:
    info = BmcInfo("", 623, username, PASSWORD, "redfish", endpoint=endpoint)
    with pytest.raises(ValueError, match=re.escape(problem)):
        RedfishDriver(info).validate()
    assert PASSWORD not in repr(info)


async def test_several_systems_need_a_system_id(fake_bmc: Service) -> None:
    with pytest.raises(BmcError, match=r"2 systems .*spec.bmc.systemId"):
        await RedfishDriver(fake_bmc.info()).get_power_state()
    by_id = RedfishDriver(fake_bmc.info(system_id="00000000-0000-0000-0000-000000000002"))
    assert await by_id.get_power_state() == PowerState.OFF
    by_path = RedfishDriver(
        fake_bmc.info(system_id="/redfish/v1/Systems/00000000-0000-0000-0000-000000000001")
    )
    by_path.poll_interval = 0.5
    assert await by_path.power(PowerAction.ON, wait=30) == PowerState.ON
    await by_path.set_boot_device(BootDevice.NETWORK)
    # The emulator turns UefiHttp without a URI into Pxe: the read-back sees it.
    with pytest.raises(BmcError, match="boot override to UefiHttp did not hold"):
        await by_path.set_boot_device(BootDevice.HTTP)
    legacy = RedfishDriver(fake_bmc.info(system_id="00000000-0000-0000-0000-000000000002"))
    with pytest.raises(Unsupported, match="cannot boot from http"):
        await legacy.set_boot_device(BootDevice.HTTP)
