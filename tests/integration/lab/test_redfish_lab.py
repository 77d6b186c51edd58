"""Redfish BMCs in the lab, end to end on real firmware: ``arges up`` (its own process) and a
lab whose servers have a Redfish BMC (sushy-tools' emulator driving QEMU) beside an IPMI one.

The Redfish server goes through the whole life an IPMI one does (discovered, wiped, powered
off, allocated, installed) with Arges driving it through sushy over HTTPS, its certificate
verified against the lab's CA from the BMC Secret. Durations are printed as figures.
"""

from __future__ import annotations

import base64
import re
import time

import pytest

from arges.kube.resources import SECRETS, SERVER_BINDINGS, SERVERS
from arges.lab.plan import LabSpec
from tests.e2e.test_main_job import Site, condition, disk_config, figure, site
from tests.integration.lab.conftest import arges, lab_unavailable

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
