"""Simulated servers: the fake BMC's power state drives a machine that boots like a real one.

Each :class:`SimServer` watches its fake BMC (``arges.power.fake``). When it is powered on or
cycled it "network-boots": it asks the boot service's ``/ipxe`` for its UUID over HTTP, then
runs what it was given, as a real machine would. Every request leaves from its own loopback
address (127.0.0.<10 + index>), and carries the credential its iPXE script gave this boot:

- the agent: registers through ``/agent/v1/register`` (its inventory and its own address)
  with the ``arges.token=`` of its kernel arguments, then follows the instructions (wait,
  wipe, reboot, poweroff), reporting over ``/agent/v1/report``;
- the target Environment: fetches the ``talos.config=`` URL of the iPXE script (its empty
  ``uuid=`` filled in, as Talos does; its ``token=`` is the boot's credential), checks it is
  a machine config, reports ``installed`` with that credential, and then runs a fake Talos
  API (:class:`arges.talos.fakeapi.FakeTalosNode`) on its address, as an installed Talos
  node runs apid, at the Talos version of the installer image in its config;
- boot from disk: an installed machine runs its fake Talos API again (the same node: its
  state survives reboots, as on a disk).

Its "disk" holds the config it installed, and then what ApplyConfiguration staged. When its
Talos reboots (an upgrade, a config change that needs it, a reset) the machine reboots
through its BMC's reset, so it network-boots and asks ``/ipxe`` again; a reset wipes the
disk first. The control planes of one cluster share one fake etcd. The fake Talos API needs
the cluster's OS CA to issue its serving certificate; a real node takes it from its machine
config (a worker asks a control plane's trustd), the simulation reads it from the cluster's
secrets bundle (a test's shortcut): the TalosCluster's, or for a Cluster API machine the one
CABPT keeps.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import re
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import yaml

from arges.kube.client import KubeClient
from arges.kube.errors import Unavailable
from arges.kube.resources import SECRETS, SERVER_BINDINGS, Resource
from arges.power import fake
from arges.power.base import BootDevice, PowerState
from arges.talos.components import tag
from arges.talos.fakeapi import FakeEtcd, FakeTalosNode, issue_identity
from arges.talos.secrets import SecretsBundle
from arges.tasks import cancel_and_wait
from arges.wire import REGISTER_PATH, REPORT_PATH

BOOTS = ("on", "cycle", "reset")
RETRY = 0.25
"""Seconds before a machine asks again, unless told otherwise (``honours_retry_after``)."""
RETRIED = (aiohttp.ClientError, TimeoutError)
"""What a request of a machine tries again: a failed connection, and an answer that did not
come within its session's timeout (aiohttp raises a bare TimeoutError for that; uncaught, it
ended the machine's boot, and the machine never asked again)."""
ETCDS: dict[str, FakeEtcd] = {}
"""Each cluster's etcd, by the cluster id of its secrets bundle."""


def uuid_of(index: int) -> str:
    """The SMBIOS UUID of simulated server ``index``."""
    return f"5a5a0000-0000-4000-8000-{index:012d}"


def bmc_of(index: int) -> str:
    """The address of simulated server ``index``'s fake BMC (its port: 623)."""
    return f"sim-bmc-{index}"


@dataclass
class SimServer:
    """One simulated server (see the module docstring)."""

    index: int
    base_url: str
    talos_port: int
    kube: KubeClient
    boots: list[str] = field(default_factory=list)
    """What each boot ran: ``agent``, ``target`` or ``disk``."""
    installed: str | None = None
    """The machine config on its disk."""
    pauses: dict[str, float] = field(default_factory=dict)
    """Seconds to linger at a step, so a test can act there: ``boot`` (before asking
    /ipxe), ``install`` (between fetching the config and reporting it installed), ``talos``
    (between the install and its Talos API answering)."""
    gates: dict[str, asyncio.Event] = field(default_factory=dict)
    """Steps (``install``, ``talos``: as in ``pauses``) held until the test sets their event,
    so a test acts there however slow the machine is."""
    talos: FakeTalosNode | None = None
    """Its Talos API: state (etcd bootstrapped or not) survives reboots, as on a disk."""
    script: str = ""
    """The iPXE script of its last boot (with that boot's credential)."""
    config_url: str = ""
    """The ``talos.config=`` URL its last target boot fetched (uuid filled in)."""
    credential: str = ""
    """Its current boot's credential."""
    _session: aiohttp.ClientSession | None = None
    tick: float = 0.05
    """Seconds between looks at its BMC (a fleet of thousands looks less often)."""
    poll: float = 0.1
    """Seconds between the agent's reports while it waits for an instruction."""
    honours_retry_after: bool = False
    """Whether a refusal's ``Retry-After`` is waited out before asking again, as Arges' agent
    does (a fleet's machines); else it asks again after 0.25 s (a test's few machines, to be
    quick)."""
    reboots: list[str] = field(default_factory=list)
    """Why its Talos rebooted it, in order (``upgrade``, ``apply``, ``reset``)."""
    downtime: list[tuple[float, float | None]] = field(default_factory=list)
    """(from, to) monotonic times of each reboot its Talos asked for, until its Talos API
    served again (None while it has not)."""
    _serving: FakeTalosNode | None = None
    _seen: int = 0
    _task: asyncio.Task[None] | None = None

    @property
    def uuid(self) -> str:
        return uuid_of(self.index)

    @property
    def address(self) -> str:
        return str(ipaddress.IPv4Address("127.0.0.10") + self.index)

    @property
    def session(self) -> aiohttp.ClientSession:
        """Its HTTP client, leaving from its own address."""
        if self._session is None:
            connector = aiohttp.TCPConnector(local_addr=(self.address, 0))
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def bmc_address(self) -> str:
        return bmc_of(self.index)

    @property
    def machine(self) -> fake.FakeMachine:
        return fake.MACHINES.setdefault(f"{self.bmc_address}:623", fake.FakeMachine())

    @property
    def machine_type(self) -> str | None:
        if self.installed is None:
            return None
        return str(yaml.safe_load(self.installed)["machine"]["type"])

    @property
    def installer_version(self) -> str:
        """The Talos version of the installer image its config names."""
        doc = yaml.safe_load(self.installed or "") or {}
        image = ((doc.get("machine") or {}).get("install") or {}).get("image")
        return tag(image) or "v1.11.6"

    def power_on(self) -> None:
        """Someone pressed the power button (a rack just powered up boots from the network)."""
        self.machine.power = PowerState.ON
        self.machine.boot_device = BootDevice.NETWORK
        self.machine.actions.append("on")

    async def run(self) -> None:
        """Follow the BMC: boot on power-on or cycle, stop on power-off."""
        try:
            while True:
                booted = self._booted_again()
                if self.machine.power == PowerState.OFF:
                    await self._halt()
                elif booted or self._task is None:
                    await self._halt()
                    self._task = asyncio.create_task(self._boot())
                await asyncio.sleep(self.tick)
        finally:
            await self._halt()

    def _booted_again(self) -> bool:
        """Whether its BMC powered it on, cycled or reset it since the last look."""
        actions = self.machine.actions[self._seen :]
        self._seen += len(actions)
        return any(a in BOOTS for a in actions)

    async def _halt(self) -> None:
        if self._task is not None:
            task, self._task = self._task, None
            # cancel_and_wait: a cancellation of run() itself that meets this wait must not
            # be taken for the boot's own (it once was, and run() looped on after a test).
            with contextlib.suppress(Exception):
                await cancel_and_wait(task)
        if self._serving is not None:
            await self._serving.stop()
            self._serving = None

    async def _boot(self) -> None:
        if self.machine.boot_device == BootDevice.DISK:
            self.boots.append("disk")
            if self.installed is not None:
                await self._run_talos()
            await asyncio.Event().wait()
        await asyncio.sleep(self.pauses.get("boot", 0))
        script = await self._get(
            f"{self.base_url}/ipxe", {"uuid": self.uuid, "mac": self._mac("-")}
        )
        self.script = script
        if "exit" in script.split():
            self.boots.append("disk")
            if self.installed is not None:
                await self._run_talos()
            await asyncio.Event().wait()
        match = re.search(r"talos\.config=(\S+)", script)
        if match:
            self.boots.append("target")
            await self._install(match.group(1))
        else:
            token = re.search(r"arges\.token=(\S+)", script)
            self.credential = token.group(1) if token else ""
            self.boots.append("agent")
            await self._agent()

    async def ipxe(self, **params: str) -> tuple[int, str]:
        """Ask ``/ipxe`` once more as this machine (its address, UUID and MAC, plus
        ``params``), as its firmware does at a boot; the agent credential of the answer is
        the one it uses from now on (the earlier one is spent by this boot)."""
        query = {"uuid": self.uuid, "mac": self._mac("-"), **params}
        async with self.session.get(f"{self.base_url}/ipxe", params=query) as resp:
            script = await resp.text()
        token = re.search(r"arges\.token=(\S+)", script)
        if resp.status == 200 and token:
            self.credential = token.group(1)
        return resp.status, script

    def _mac(self, sep: str) -> str:
        low = [f"{self.index >> shift & 0xFF:02x}" for shift in (16, 8, 0)]
        return sep.join(["52", "54", "00", *low])

    def _hardware(self) -> dict[str, Any]:
        return {
            "system": {"uuid": self.uuid, "manufacturer": "Sim", "productName": "Server"},
            "compute": {
                "processorCount": 1,
                "totalCoreCount": 4,
                "totalThreadCount": 4,
                "processors": [{"manufacturer": "Sim", "coreCount": 4, "threadCount": 4}],
            },
            "memory": {"totalSize": 8 * 2**30},
            "storage": {
                "deviceCount": 1,
                "totalSize": 2**34,
                "devices": [{"name": "sda", "type": "SSD", "size": 2**34}],
            },
            "network": {
                "interfaceCount": 1,
                "interfaces": [{"name": "eth0", "mac": self._mac(":"), "link": "up"}],
            },
        }

    async def _get(self, url: str, params: dict[str, str] | None = None) -> str:
        """GET until it answers 200, as firmware and Talos retry (Arges may be restarting,
        or too busy to answer before the session's timeout)."""
        while True:
            wait = RETRY
            with contextlib.suppress(*RETRIED):
                async with self.session.get(url, params=params) as resp:
                    if resp.status == 200:
                        return await resp.text()
                    wait = self._wait(resp)
            await asyncio.sleep(wait)

    async def _post(self, path: str, body: dict[str, Any], base: str | None = None) -> Any:
        """POST with its boot's credential until it answers 200, as the agent retries (an
        answer that does not come within the session's timeout too)."""
        headers = {"Authorization": f"Bearer {self.credential}"}
        while True:
            wait = RETRY
            with contextlib.suppress(*RETRIED):
                async with self.session.post(
                    (base or self.base_url) + path, json=body, headers=headers
                ) as resp:
                    if resp.status == 200:
                        return await resp.json()
                    wait = self._wait(resp)
            await asyncio.sleep(wait)

    def _wait(self, refusal: aiohttp.ClientResponse) -> float:
        """Seconds before asking again after ``refusal`` (see ``honours_retry_after``)."""
        after = refusal.headers.get("Retry-After", "")
        return float(after) if self.honours_retry_after and after.isdigit() else RETRY

    async def _agent(self) -> None:
        instruction = await self._post(
            REGISTER_PATH,
            {"uuid": self.uuid, "hardware": self._hardware(), "addresses": [self.address]},
        )
        while True:
            action = instruction["action"]
            if action == "wipe":
                await self._post(REPORT_PATH, {"uuid": self.uuid, "phase": "wiping"})
                self.installed = None
                self.talos = None
                instruction = await self._post(
                    REPORT_PATH,
                    {
                        "uuid": self.uuid,
                        "phase": "wiped",
                        "wiped": [{"name": "sda", "size": 2**34, "bytesZeroed": 2**21}],
                    },
                )
            elif action == "reboot":
                self.machine.actions.append("reset")
                await asyncio.Event().wait()
            elif action == "poweroff":
                self.machine.power = PowerState.OFF
                await asyncio.Event().wait()
            else:
                await asyncio.sleep(self.poll)
                instruction = await self._post(REPORT_PATH, {"uuid": self.uuid, "phase": "idle"})

    async def _install(self, url: str) -> None:
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
        self.credential = query.get("token", [""])[0]
        url = url.replace("uuid=&", f"uuid={self.uuid}&")
        self.config_url = url
        config = await self._get(url)
        doc = yaml.safe_load(config)
        assert doc["version"] == "v1alpha1" and doc["machine"]["type"] in ("controlplane", "worker")
        await asyncio.sleep(self.pauses.get("install", 0))
        if (gate := self.gates.get("install")) is not None:
            await gate.wait()
        self.installed = config
        self.talos = None
        origin = url.split("/configdata")[0]
        await self._post(REPORT_PATH, {"uuid": self.uuid, "phase": "installed"}, origin)
        await asyncio.sleep(self.pauses.get("talos", 0))
        if (gate := self.gates.get("talos")) is not None:
            await gate.wait()
        await self._run_talos()
        await asyncio.Event().wait()

    async def _run_talos(self) -> None:
        if self.talos is None:
            binding = await self._read(SERVER_BINDINGS, self.uuid)
            consumer = binding["spec"]["consumerRef"]
            namespace = consumer.get("namespace") or "default"
            if consumer["kind"] == "MetalMachine":
                # CABPT keeps a Cluster API cluster's bundle in <cluster>-talos, key bundle.
                cluster = binding["metadata"]["labels"]["cluster.x-k8s.io/cluster-name"]
                name, key = f"{cluster}-talos", "bundle"
            else:
                name, key = f"{consumer['name']}-secrets", "secrets.yaml"
            secret = await self._read(SECRETS, name, namespace)
            bundle = SecretsBundle.from_yaml(base64.b64decode(secret["data"][key]).decode())
            hostname = f"sim-{self.index}"
            self.talos = FakeTalosNode(
                issue_identity(bundle.os, [self.address], hostname),
                address=self.address,
                port=self.talos_port,
                machine_type=self.machine_type or "worker",
                hostname=hostname,
                talos_version=self.installer_version,
                config=self.installed,
                etcd=ETCDS.setdefault(bundle.cluster_id, FakeEtcd()),
                on_reboot=self._reboot,
                persist=self._persist,
            )
        if self._serving is None:
            await self.talos.start()
            self._serving = self.talos
            if self.downtime and self.downtime[-1][1] is None:
                self.downtime[-1] = (self.downtime[-1][0], time.monotonic())

    async def _read(self, res: Resource, name: str, namespace: str | None = None) -> Any:
        """An object, read until the API answers, through the plane's client of the moment:
        a test that restarts the plane gives its machines the new plane's client, and a read
        that meets the restart is tried again, as a node's services retry (one that failed
        once left the machine's boot dead, never to answer Talos' API)."""
        while True:
            with contextlib.suppress(Unavailable):
                return await self.kube.get(res, name, namespace)
            await asyncio.sleep(0.25)

    async def silence(self) -> None:
        """Its Talos API stops answering (until the machine boots again)."""
        if self._serving is not None:
            await self._serving.stop()
            self._serving = None

    async def _reboot(self, why: str) -> None:
        """Its Talos reboots: through the BMC's reset, as the firmware sees a reboot."""
        self.reboots.append(why)
        self.downtime.append((time.monotonic(), None))
        self.machine.actions.append("reset")

    def _persist(self, config: str | None) -> None:
        """What its Talos keeps on disk; a reset wipes it (and the next membership is a new
        node)."""
        self.installed = config
        if config is None:
            self.talos = None
