"""The main job end to end on real firmware: Arges (``arges up``, its own process) and a lab of
SeaBIOS+iPXE and OVMF servers, from power-on to a Running TalosCluster (bootstrapped and its
kubeconfig fetched through the stand-in's Talos API), upgraded, scaled down (the worker reset
by Talos, then wiped by the agent), and back to clean servers when it is deleted.

Both DHCP modes: ProxyDHCP beside the lab's dnsmasq (the steps of :mod:`arges.lab.demo`,
checked in detail), and Arges' full DHCP (the README's main command, ``arges demo``, as a
user runs it). The phases' durations are printed as figures.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from arges.agent import target
from arges.kube.client import KubeClient
from arges.kube.resources import SECRETS, SERVER_BINDINGS, SERVERS
from arges.lab import datacenter
from arges.lab import demo as steps
from arges.lab.plan import LabSpec
from arges.lab.state import LabServer, LabState
from tests.integration.clusters.capi import CapiPlayer, install
from tests.integration.conftest import eventually
from tests.integration.lab.conftest import (
    NETWORK,
    assert_nothing_left,
    lab_unavailable,
    one_lab_at_a_time,
)

pytestmark = [
    pytest.mark.lab,
    pytest.mark.slow,
    pytest.mark.timeout(1800),
    pytest.mark.skipif(lab_unavailable() is not None, reason=str(lab_unavailable())),
]


def figure(capsys: pytest.CaptureFixture[str], text: str) -> None:
    with capsys.disabled():
        print(f"\n  [e2e] {text}", flush=True)


@pytest.fixture(autouse=True)
def _one_lab_at_a_time() -> Iterator[None]:
    # Autouse, so set up before (and torn down after) the fixtures that make the lab.
    with one_lab_at_a_time():
        yield


@dataclass
class Site:
    """Arges and a lab, both taken down by the fixture whatever happens."""

    data_dir: Path
    arges: steps.Arges
    lines: list[str] = field(default_factory=list)
    kube: KubeClient | None = None
    lab: LabState | None = None

    def say(self, line: str) -> None:
        self.lines.append(f"{time.strftime('%H:%M:%S')} {line}")

    async def start(self, spec: LabSpec) -> steps.Demo:
        self.kube = await self.arges.start()
        self.lab = await datacenter.up(spec, self.data_dir, progress=self.say)
        return steps.Demo(self.kube, self.lab, self.arges.log, self.say)


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    data_dir = tmp_path / "data"
    running = Site(data_dir, steps.Arges(data_dir, "proxy"))
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


def disk_config(server: LabServer) -> dict[str, Any] | None:
    """The machine config the stand-in wrote to the server's first disk, if any."""
    with server.disks[0].path.open("rb") as disk:
        head = disk.read(1 << 20)
    try:
        return yaml.safe_load(target.decode(head))  # type: ignore[no-any-return]
    except ValueError:
        return None


def expected_inventory(server: LabServer) -> dict[str, Any]:
    """What QEMU was given for ``server`` (:meth:`LabServer.machine`), as Arges reports it."""
    smbios = server.machine(None).smbios
    return {
        "system": {
            "uuid": server.uuid,
            "manufacturer": smbios.manufacturer,
            "productName": smbios.product,
            "version": smbios.version,
            "serialNumber": smbios.serial,
            "skuNumber": smbios.sku,
            "family": smbios.family,
        },
        "cpus": 1,
        "memory": server.memory_mib * 2**20,
        "disks": [(d.size, d.serial, "virtio") for d in server.disks],
        "macs": server.macs,
    }


def reported_inventory(obj: dict[str, Any]) -> dict[str, Any]:
    hw = obj["status"]["hardware"]
    return {
        "system": hw["system"],
        "cpus": hw["compute"]["totalThreadCount"],
        "memory": hw["memory"]["totalSize"],
        "disks": [(d["size"], d["serialNumber"], d["type"]) for d in hw["storage"]["devices"]],
        "macs": [i["mac"] for i in hw["network"]["interfaces"]],
    }


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(c for c in obj["status"]["conditions"] if c["type"] == kind)


def calls(server: LabServer, rpc: str) -> int:
    """How many ``rpc`` calls the stand-in's apid on ``server`` logged to its console."""
    text = server.console_log.read_bytes().decode(errors="replace")
    return sum(1 for line in text.splitlines() if line.rstrip().endswith(f": {rpc}"))


def installer(server: LabServer) -> str | None:
    config = disk_config(server)
    return None if config is None else str(config["machine"]["install"]["image"])


async def secret(kube: KubeClient, name: str, key: str) -> str:
    data = (await kube.get(SECRETS, name, steps.NAMESPACE))["data"]
    return base64.b64decode(data[key]).decode()


async def test_the_main_job_with_proxydhcp_beside_the_site_dhcp_server(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()
    demo = await site.start(LabSpec(servers=3, firmware="mixed"))
    kube, lab = site.kube, site.lab
    assert kube is not None and lab is not None
    assert [s.firmware for s in lab.servers] == ["bios", "uefi", "bios"]
    figure(capsys, f"Arges and the lab up in {time.monotonic() - started:.0f} s")

    took = await demo.discovered()
    figure(capsys, f"power-on to every server registered: {took:.0f} s")
    servers, _ = await demo.objects()
    for lab_server in lab.servers:
        got = reported_inventory(servers[lab_server.uuid])
        assert got == expected_inventory(lab_server), f"{lab_server.name}'s inventory"
        booted = condition(servers[lab_server.uuid], "PXEBooted")
        assert booted["reason"] == "Agent"

    await demo.accept()
    took = await demo.available()
    figure(capsys, f"accepted to wiped, clean and powered off: {took:.0f} s")
    servers, _ = await demo.objects()
    for obj in servers.values():
        assert condition(obj, "Wipe")["status"] == "True"

    await demo.create_cluster()
    await the_neighbour_cannot_take_a_config(kube, lab, capsys)
    took = await demo.configs_delivered()
    figure(capsys, f"bind to both configs delivered and installed: {took:.0f} s")
    servers, bindings = await demo.objects()
    assert len(bindings) == 2, "exactly two servers bound"
    for lab_server in lab.servers:
        binding = bindings.get(lab_server.uuid)
        if binding is None:
            spare = servers[lab_server.uuid]["status"]
            assert (spare["isClean"], spare["power"]) == (True, "off"), "the third stays available"
            continue
        obj = servers[lab_server.uuid]
        own = [a["address"] for a in obj["status"]["addresses"]]
        delivered = condition(obj, "ConfigDelivered")["message"]
        assert delivered.endswith(f"delivered to {own[0]}"), "over its own network stack"
        config = disk_config(lab_server)
        assert config is not None, f"{lab_server.name} has its config on disk"
        assert config["machine"]["type"] == binding["spec"]["role"]
        assert config["cluster"]["controlPlane"]["endpoint"] == steps.ENDPOINT
    members = {s.name: s for s in lab.servers if s.uuid in bindings}
    roles = {name: bindings[s.uuid]["spec"]["role"] for name, s in members.items()}
    (cp,) = [members[n] for n, r in roles.items() if r == "controlplane"]
    (worker,) = [members[n] for n, r in roles.items() if r == "worker"]

    took = await demo.running()
    figure(capsys, f"configs installed to Running (bootstrap, kubeconfig): {took:.0f} s")
    kubeconfig = yaml.safe_load(await secret(kube, "demo-kubeconfig", "kubeconfig"))
    assert kubeconfig["clusters"][0]["cluster"]["server"] == steps.ENDPOINT
    assert kubeconfig["current-context"] == "admin@demo"
    assert calls(cp, "Bootstrap") == 1 and calls(worker, "Bootstrap") == 0, "bootstrapped once"

    new = "ghcr.io/siderolabs/installer:v1.11.7"
    took = await demo.upgrade(new)
    figure(capsys, f"Talos upgrade of both members (one at a time): {took:.0f} s")
    assert calls(cp, "Upgrade") == calls(worker, "Upgrade") == 1, "each upgraded once"
    await eventually(lambda: installer(cp) == new, timeout=120, what="the new config on disk")

    took = await demo.scale_workers(0)
    figure(capsys, f"scale-down to the worker released (Talos resets it): {took:.0f} s")
    assert calls(worker, "Reset") == 1

    # The worker reboots into the agent to be wiped while the cluster is deleted.
    took = await demo.delete_cluster(also=[worker])
    figure(capsys, f"cluster deleted to both servers wiped and available: {took:.0f} s")
    server = await kube.get(SERVERS, worker.uuid)
    assert condition(server, "TalosReset")["status"] == "True"
    assert condition(server, "PXEBooted")["reason"] == "Agent", "Talos rebooted into the agent"
    assert calls(cp, "Reset") == 1, "deleting the cluster resets the control plane"
    assert await kube.list(SERVER_BINDINGS) == []
    for lab_server in lab.servers:
        obj = await kube.get(SERVERS, lab_server.uuid)
        assert obj["status"]["isClean"] is True and obj["status"]["power"] == "off"
        assert disk_config(lab_server) is None, f"{lab_server.name}'s disk was wiped"
    figure(capsys, f"proxy mode, whole job: {time.monotonic() - started:.0f} s")


def kernel_config_url(server: LabServer) -> str | None:
    """The ``talos.config=`` URL of the server's current boot, as its kernel printed it on
    the serial console (as anyone with the console, or sniffing the iPXE script, sees it)."""
    text = server.console_log.read_text(errors="replace") if server.console_log.exists() else ""
    found = re.findall(r"Kernel command line: .*?talos\.config=(\S+)", text)
    return found[-1] if found else None


def from_address(address: str, url: str) -> int:
    """The HTTP status of GET ``url`` sent from ``address`` on the lab network."""
    out = subprocess.run(
        NETWORK.in_namespace(
            *("curl", "-s", "--max-time", "30", "-o", "/dev/null", "-w", "%{http_code}"),
            *("--interface", address, url),
        ),
        capture_output=True,
        text=True,
        check=False,
    )
    return int(out.stdout or 0)


def lab_address(action: str, address: str) -> None:
    """Add (``add``) or remove (``del``) ``address`` on the lab's bridge, to send from it."""
    argv = NETWORK.in_namespace("ip", "addr", action, f"{address}/32", "dev", NETWORK.bridge)
    subprocess.run(argv, check=action == "add", capture_output=True)


async def the_neighbour_cannot_take_a_config(
    kube: KubeClient, lab: LabState, capsys: pytest.CaptureFixture[str]
) -> None:
    """While a bound server boots its target, the lab's third server (its address, its NIC)
    asks for that server's config with the very URL its kernel was given, and for a boot of
    its UUID: refused each time, and the server's credential is left as it was.

    The bound server's QEMU is stopped meanwhile (SIGSTOP), so its credential is certainly
    live, neither used nor spent, when the neighbour tries it."""

    async def bound() -> set[str]:
        names = {b["metadata"]["name"] for b in await kube.list(SERVER_BINDINGS)}
        return names if len(names) == 2 else set()

    bindings = await eventually(bound, timeout=120, interval=0.5, what="two servers bound")
    neighbour = next(s for s in lab.servers if s.uuid not in bindings)
    booting = [s for s in lab.servers if s.uuid in bindings]

    def seen() -> tuple[LabServer, str] | None:
        return next(((s, u) for s in booting if (u := kernel_config_url(s))), None)

    victim, url = await eventually(seen, timeout=600, interval=0.2, what="a target kernel")
    url = url.replace("uuid=&", f"uuid={victim.uuid}&")
    pid = int(victim.pid_file.read_text())
    os.kill(pid, signal.SIGSTOP)
    address = (await kube.get(SERVERS, neighbour.uuid))["status"]["addresses"][0]["address"]
    lab_address("add", address)
    try:
        before = (await kube.get(SERVERS, victim.uuid))["status"]["bootCredential"]
        assert before["purpose"] == "config" and before.get("sha256"), "live when tried"
        base = url.split("/configdata")[0]
        own_nic, their_nic = neighbour.macs[0].replace(":", "-"), victim.macs[0].replace(":", "-")
        tries = {
            "their URL": from_address(address, url),
            "a boot of their UUID from their NIC": from_address(
                address, f"{base}/ipxe?uuid={victim.uuid}&mac={their_nic}"
            ),
            "a boot of their UUID from its own NIC": from_address(
                address, f"{base}/ipxe?uuid={victim.uuid}&mac={own_nic}"
            ),
        }
        after = (await kube.get(SERVERS, victim.uuid))["status"]["bootCredential"]
    finally:
        lab_address("del", address)
        os.kill(pid, signal.SIGCONT)
    assert tries == dict.fromkeys(tries, 403), tries
    assert after == before, "nothing was spent or replaced"
    figure(capsys, f"{neighbour.name} ({address}) refused {victim.name}'s config: {tries}")


async def test_the_readme_main_command_with_arges_as_the_only_dhcp_server(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "data"
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "arges",
        "demo",
        "--data-dir",
        str(data_dir),
        "--servers",
        "2",
        "--dhcp-mode",
        "full",
        "--no-keep",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    text = out.decode()
    print(text)
    assert proc.returncode == 0, text
    installed = [line for line in text.splitlines() if "machine config installed" in line]
    assert len(installed) == 2, "both servers (one BIOS, one UEFI) installed their configs"
    assert any("controlplane:" in line for line in installed)
    assert any("worker:" in line for line in installed)
    assert "taloscluster.cluster.arges.dev/demo" in text
    figure(capsys, f"full DHCP mode, arges demo (2 servers): {time.monotonic() - started:.0f} s")
    for line in text.splitlines():
        if "done:" in line:
            figure(capsys, f"full DHCP mode, {line.split('done: ', 1)[1]}")
    assert not NETWORK.exists()
    assert_nothing_left(data_dir / "lab")


async def test_a_cluster_api_machine_installs_its_bootstrap_data_on_real_firmware(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()
    demo = await site.start(LabSpec(servers=1, firmware="bios"))
    kube, lab = site.kube, site.lab
    assert kube is not None and lab is not None
    (lab_server,) = lab.servers
    await demo.discovered()
    await demo.accept()
    await demo.available()
    await install(site.data_dir / "kubeconfig", "cluster-api", "cabpt", "cacppt")
    player = CapiPlayer(kube)
    await player.create_cluster()
    await eventually(player.infrastructure_provisioned, timeout=60, what="MetalCluster provisioned")
    bound = time.monotonic()
    await player.create_machine("lab-cp-0", control_plane=True)
    took = await demo.configs_delivered(members=1)
    figure(
        capsys, f"MetalMachine to its bootstrap data installed: {time.monotonic() - bound:.0f} s"
    )
    metal = await player.metal_machine("lab-cp-0")
    assert metal["spec"]["providerID"] == f"arges://{lab_server.uuid}"
    config = disk_config(lab_server)
    assert config is not None, "the bootstrap data is on the server's disk"
    assert config["machine"]["type"] == "controlplane"
    assert config["machine"]["kubelet"]["extraConfig"]["providerID"] == metal["spec"]["providerID"]
    assert config["cluster"]["clusterName"] == player.name

    await asyncio.wait_for(player.delete_machine("lab-cp-0"), 120)
    took = await demo.available()
    figure(capsys, f"MetalMachine deleted to the server wiped and available: {took:.0f} s")
    assert disk_config(lab_server) is None
    figure(capsys, f"Cluster API on the lab, whole run: {time.monotonic() - started:.0f} s")
