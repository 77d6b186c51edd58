"""Redfish BMCs in the lab, end to end on real firmware: ``arges up`` (its own process) and a
lab whose servers have a Redfish BMC (sushy-tools' emulator driving QEMU).

- Beside an IPMI server, a Redfish one goes through the whole life an IPMI one does
  (discovered, wiped, powered off, allocated, installed), Arges driving it through sushy over
  HTTPS, its certificate verified against the lab's CA from the BMC Secret.
- Virtual media: a UEFI server whose firmware has network boot disabled, on a network where
  nothing serves DHCP (no site DHCP, Arges' DHCP off), is discovered and wiped from the agent
  ISO Arges inserts through Redfish, the agent on the static address given in the Server.

Durations are printed as figures.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from arges.kube.resources import SECRETS, SERVER_BINDINGS, SERVERS
from arges.lab import datacenter
from arges.lab import demo as steps
from arges.lab.plan import LabSpec
from tests.e2e.test_main_job import Site, condition, disk_config, figure, site
from tests.integration.conftest import eventually
from tests.integration.lab.conftest import arges, assert_nothing_left, lab_unavailable

__all__ = ["site"]

pytestmark = [
    pytest.mark.lab,
    pytest.mark.slow,
    pytest.mark.timeout(1800),
    pytest.mark.skipif(lab_unavailable() is not None, reason=str(lab_unavailable())),
]


async def test_a_redfish_server_lives_the_life_an_ipmi_one_does(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()
    demo = await site.start(LabSpec(servers=2, firmware="bios", bmc="mixed", memory_mib=768))
    kube, lab = site.kube, site.lab
    assert kube is not None and lab is not None
    ipmi, redfish = lab.servers
    assert (ipmi.bmc_kind, redfish.bmc_kind) == ("ipmi", "redfish")
    figure(capsys, f"redfish: Arges and the lab up in {time.monotonic() - started:.0f} s")

    status = await arges("lab", "status", "--data-dir", str(site.data_dir))
    assert re.search(
        rf"{redfish.name}\s+bios\s+{redfish.uuid}\s.*redfish https://127\.0\.0\.1:", status.out
    )
    assert re.search(rf"{ipmi.name}\s+bios\s+{ipmi.uuid}\s.*ipmi 127\.0\.0\.1:", status.out)

    body = await kube.get(SERVERS, redfish.uuid)
    assert body["spec"]["bmc"]["protocol"] == "redfish"
    assert body["spec"]["bmc"]["endpoint"] == redfish.bmc_url
    ref = body["spec"]["bmc"]["credentialsSecretRef"]
    secret = await kube.get(SECRETS, ref["name"], ref["namespace"])
    ca = base64.b64decode(secret["data"]["ca.crt"]).decode()
    assert ca == (lab.servers[0].run_dir.parent.parent / "tls" / "ca.crt").read_text()
    password = base64.b64decode(secret["data"]["password"]).decode()

    took = await demo.discovered()
    figure(capsys, f"redfish: power-on to both servers registered: {took:.0f} s")
    await demo.accept()
    took = await demo.available()
    figure(capsys, f"redfish: accepted to wiped, clean and powered off: {took:.0f} s")
    servers, _ = await demo.objects()
    rf = servers[redfish.uuid]
    assert condition(rf, "Wipe")["status"] == "True"
    assert condition(rf, "PowerManagement")["status"] == "True"
    verified = condition(rf, "BMCCertificateVerified")
    assert (verified["status"], verified["reason"]) == ("True", "SecretCA")
    assert rf["status"]["power"] == "off"
    assert "BMCCertificateVerified" not in [
        c["type"] for c in servers[ipmi.uuid]["status"]["conditions"]
    ]

    await demo.create_cluster()
    took = await demo.configs_delivered()
    figure(capsys, f"redfish: bind to both configs delivered and installed: {took:.0f} s")
    _, bindings = await demo.objects()
    assert set(bindings) == {ipmi.uuid, redfish.uuid}
    config = disk_config(redfish)
    assert config is not None, "the Redfish server installed its config"
    assert config["machine"]["type"] == bindings[redfish.uuid]["spec"]["role"]
    assert (await kube.get(SERVERS, redfish.uuid))["status"]["power"] == "on"

    bmc_log = (redfish.run_dir / "bmc.log").read_text()
    assert "session" in bmc_log and "Redfish reset" in bmc_log
    for log in (bmc_log, site.arges.log.read_text()):
        assert password not in log
    assert await kube.list(SERVER_BINDINGS)
    figure(capsys, f"redfish, whole job: {time.monotonic() - started:.0f} s")


@pytest.fixture
async def site_without_dhcp(tmp_path: Path) -> AsyncIterator[Site]:
    """Arges with its DHCP off, and (started by the test) a lab without site DHCP."""
    data_dir = tmp_path / "data"
    running = Site(data_dir, steps.Arges(data_dir, "off"))
    try:
        yield running
    finally:
        try:
            await datacenter.down(data_dir)
        finally:
            if running.kube is not None:
                await running.kube.close()
            await running.arges.stop()
        print("\n".join(running.lines))
    assert_nothing_left(data_dir / "lab")


async def test_virtual_media_discovers_and_wipes_servers_without_network_boot_or_dhcp(
    site_without_dhcp: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    site = site_without_dhcp
    spec = LabSpec(
        servers=2,
        firmware="mixed",
        bmc="redfish",
        network_boot=False,
        site_dhcp=False,
        memory_mib=768,
    )
    demo = await site.start(spec)
    kube, lab = site.kube, site.lab
    assert kube is not None and lab is not None
    assert [s.firmware for s in lab.servers] == ["bios", "uefi"]
    addresses = {s.uuid: f"10.88.0.{50 + i}" for i, s in enumerate(lab.servers)}
    started = time.monotonic()
    for server in lab.servers:
        network = {
            "address": f"{addresses[server.uuid]}/24",
            "gateway": "10.88.0.1",
            "nameservers": ["10.88.0.1"],
            "mac": server.macs[0],
        }
        await kube.patch(
            SERVERS,
            server.uuid,
            {"spec": {"bootMethod": "virtualMedia", "agentNetwork": network}},
        )

    async def media(uuid: str, reason: str) -> dict[str, Any] | None:
        assert kube is not None
        found = (await kube.get(SERVERS, uuid)).get("status", {}).get("conditions") or []
        return next((c for c in found if c["type"] == "AgentMedia" and c["reason"] == reason), None)

    for server in lab.servers:
        inserted = await eventually(
            lambda s=server: media(s.uuid, "Inserted"), 120, interval=1, what="ISO inserted"
        )
        assert inserted["message"].endswith(f"/agent/{server.uuid}.iso")
    took = await demo.discovered()
    figure(capsys, f"virtual media: Servers patched to both registered (BIOS, UEFI): {took:.0f} s")
    for server in lab.servers:
        obj = await kube.get(SERVERS, server.uuid)
        assert [a["address"] for a in obj["status"]["addresses"]] == [addresses[server.uuid]]
        assert "PXEBooted" not in [c["type"] for c in obj["status"]["conditions"]]
        console = server.console_log.read_text(errors="replace")
        assert "Arges: loading the agent from virtual media" in console, server.firmware
        assert "arges-dhcp" not in console, "no DHCP lease was asked for"
        assert "PXE" not in console and "iPXE" not in console, "no network boot was tried"

    await demo.accept()
    took = await demo.available()
    figure(capsys, f"virtual media: accepted to wiped, clean and powered off: {took:.0f} s")
    for server in lab.servers:
        await eventually(
            lambda s=server: media(s.uuid, "Ejected"), 120, interval=1, what="ISO ejected"
        )
    log = site.arges.log.read_text()
    assert "DHCP (" not in log and "ProxyDHCP" not in log, "Arges served no DHCP"
    isos = list(site.data_dir.glob("media/*.iso"))
    assert len(isos) == 2, "one ISO per server"
    figure(capsys, f"virtual media: agent ISO {isos[0].stat().st_size / 2**20:.1f} MiB")
    figure(capsys, f"virtual media, both servers: {time.monotonic() - started:.0f} s")
