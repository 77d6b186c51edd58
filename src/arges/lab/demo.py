"""The main job on the lab, step by step: what ``arges demo`` runs and the end-to-end tests check.

1. start Arges (``arges up`` as its own process, on the lab's network, with the stand-in for
   Talos as the ``default`` Environment: no Talos image can be had here; see
   :mod:`arges.lab.standin`);
2. bring the lab up (``arges lab up``): servers that power on and network-boot;
3. wait until every server is discovered, accept them, wait until they are wiped, clean and
   powered off;
4. create a TalosCluster of one control plane (holding the endpoint as its VIP) and one
   worker, wait until both members have fetched their machine configs (and written them to
   disk), then until the cluster is Running: etcd bootstrapped and the kubeconfig fetched
   through Talos' API, every member answering it;
5. show ``kubectl get servers,talosclusters``.

Each wait shows which server is where as it changes (:func:`where`), and on a timeout says
which servers are stuck where, with the end of their serial consoles and of Arges' log.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from arges.api.binding import ServerBinding, releasing
from arges.api.server import Server
from arges.errors import ArgesError
from arges.kube.client import KubeClient
from arges.kube.connection import ConfigError, from_kubeconfig
from arges.kube.errors import AlreadyExists, KubeError, NotFound
from arges.kube.resources import (
    ENVIRONMENTS,
    SERVER_BINDINGS,
    SERVER_CLASSES,
    SERVERS,
    TALOS_CLUSTERS,
    Resource,
)
from arges.lab import datacenter
from arges.lab.network import LabNetwork
from arges.lab.plan import LabSpec
from arges.lab.records import LAB_LABEL
from arges.lab.state import LabServer, LabState
from arges.metal.conditions import find
from arges.metal.stage import WIPE, Stage, stage

Say = Callable[[str], None]
Object = dict[str, Any]

CLUSTER = "demo"
NAMESPACE = "default"
SERVER_CLASS = "lab"
"""The demo's ServerClass: the lab's servers only (never a real server Arges also knows)."""
VIP = "10.88.0.100"
ENDPOINT = f"https://{VIP}:6443"
"""The demo cluster's control-plane endpoint: a Talos VIP on the lab network, held by the
control plane (the stand-in answers Talos' API and trustd there; no Kubernetes API)."""
VIP_PATCH = f"""\
machine:
  network:
    interfaces:
      - deviceSelector:
          physical: true
        dhcp: true
        vip:
          ip: {VIP}
"""
"""The control planes' patch giving them the endpoint as a shared VIP (Talos' own way)."""


class DemoFailed(ArgesError):
    """A step did not finish; the message says which, where each server is, and shows the
    relevant logs."""


def _condition(obj: Object | None, kind: str) -> Object | None:
    conditions = ((obj or {}).get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c.get("type") == kind), None)


def _true(obj: Object | None, kind: str) -> bool:
    found = _condition(obj, kind)
    return found is not None and found.get("status") == "True"


def where(server: Object | None, binding: Object | None) -> str:
    """Where one server is in its life (``docs/architecture.md``, "A server's life"), in
    words, from its Server and ServerBinding (None: absent)."""
    srv = Server.from_json(server) if server is not None else None
    bnd = ServerBinding.from_json(binding) if binding is not None else None
    current = stage(srv, bnd, releasing=releasing(binding))
    role = (bnd.spec.role if bnd is not None else None) or "member"
    if current is Stage.CLEAN:
        power = srv.status.power if srv is not None else None
        return f"clean and available (power {power or 'unknown'})"
    if current is Stage.WIPE_FAILED:
        wipe = find(srv.status.conditions if srv is not None else None, WIPE)
        return f"wipe failed: {wipe.message if wipe is not None else ''}"
    return {
        Stage.UNREGISTERED: "powered on, not registered yet",
        Stage.REGISTERED: "registered, waiting to be accepted",
        Stage.ACCEPTED: "accepted, waiting to be wiped",
        Stage.WIPING: "wiping its disks",
        Stage.ALLOCATED: f"{role}: allocated",
        Stage.BOOTING: f"{role}: booting its target environment",
        Stage.CONFIG_DELIVERED: f"{role}: machine config delivered",
        Stage.INSTALLED: f"{role}: machine config installed",
        Stage.RELEASED: f"{role}: released, to be wiped",
    }[current]


def describe(cluster: Object | None) -> str:
    """The cluster's phase and each member's state and roll-out, in one line."""
    if cluster is None:
        return "gone"
    status = cluster.get("status") or {}
    members = ", ".join(
        f"{m['role']} {m['state']}"
        + (f" Talos {m['talosVersion']}" if m.get("talosVersion") else "")
        + (f" ({m['message']})" if m.get("message") else "")
        for m in status.get("members") or []
    )
    return f"{status.get('phase') or 'Pending'}; members: {members or 'none'}"


def summary(server: Object) -> str:
    """One line of inventory: product, CPUs, memory, disks."""
    hw = (server.get("status") or {}).get("hardware") or {}
    system = hw.get("system") or {}
    cores = (hw.get("compute") or {}).get("totalCoreCount", 0)
    memory = (hw.get("memory") or {}).get("totalSize", 0) / 2**30
    disks = (hw.get("storage") or {}).get("devices") or []
    sizes = ", ".join(f"{d.get('size', 0) / 2**30:.0f} GiB" for d in disks)
    product = f"{system.get('manufacturer', '')} {system.get('productName', '')}".strip()
    return f"{product}, {cores} core(s), {memory:.1f} GiB, disks: {sizes or 'none'}"


def tail(path: Path, lines: int = 15) -> str:
    """The last ``lines`` lines of a log, printable (empty if it cannot be read)."""
    try:
        text = path.read_bytes().decode(errors="replace")
    except OSError:
        return ""
    kept = [line.rstrip("\r") for line in text.splitlines() if line.strip()][-lines:]
    return "\n".join(
        "    | " + "".join(c if c.isprintable() else "?" for c in line) for line in kept
    )


@dataclass
class Arges:
    """``arges up`` as its own process, logging to ``DATA_DIR/arges.log``."""

    data_dir: Path
    dhcp_mode: str = "proxy"
    network: LabNetwork = field(default_factory=LabNetwork)
    process: asyncio.subprocess.Process | None = None

    @property
    def log(self) -> Path:
        return self.data_dir / "arges.log"

    def argv(self) -> list[str]:
        """The ``arges up`` command line that serves the lab's network."""
        argv = [
            sys.executable,
            "-m",
            "arges",
            "up",
            "--data-dir",
            str(self.data_dir),
            "--boot-address",
            self.network.host_address,
            "--dhcp-interface",
            self.network.host_link,
            "--dhcp-mode",
            self.dhcp_mode,
            "--talos-stand-in",
        ]
        if self.dhcp_mode == "full":
            argv += ["--dhcp-network", self.network.subnet]
        return argv

    async def start(self, within: float = 600.0) -> KubeClient:
        """Start it and wait until its API answers and both built-in Environments are
        Ready (the first start builds the agent image from Debian packages).

        Raises:
            DemoFailed: it exited or did not get ready in time (with its log).
        """
        await asyncio.to_thread(self.data_dir.mkdir, parents=True, exist_ok=True)
        out = await asyncio.to_thread(self.log.open, "ab")
        try:
            self.process = await asyncio.create_subprocess_exec(
                *self.argv(), stdin=subprocess.DEVNULL, stdout=out, stderr=out
            )
        finally:
            out.close()
        deadline = time.monotonic() + within
        kube: KubeClient | None = None
        while time.monotonic() < deadline:
            if self.process.returncode is not None:
                raise DemoFailed(f"arges up exited ({self.process.returncode}):\n{tail(self.log)}")
            if kube is None:
                with contextlib.suppress(ConfigError):
                    kube = KubeClient(from_kubeconfig(self.data_dir / "kubeconfig"))
            if kube is not None:
                with contextlib.suppress(KubeError):
                    envs = await kube.list(ENVIRONMENTS)
                    ready = {e["metadata"]["name"] for e in envs if _true(e, "Ready")}
                    if {"agent", "default"} <= ready:
                        return kube
            await asyncio.sleep(1)
        if kube is not None:
            await kube.close()
        raise DemoFailed(f"arges up did not get ready in {within:.0f} s:\n{tail(self.log)}")

    async def stop(self) -> None:
        """SIGTERM (Arges shuts down cleanly), then SIGKILL after a minute."""
        if self.process is None or self.process.returncode is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(60):
                await self.process.wait()
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


class Demo:
    """The steps of the main job against a running Arges and lab (see the module docstring)."""

    def __init__(self, kube: KubeClient, lab: LabState, arges_log: Path, say: Say) -> None:
        self.kube = kube
        self.lab = lab
        self.arges_log = arges_log
        self.say = say
        self._shown: dict[str, str] = {}

    async def objects(self) -> tuple[dict[str, Object], dict[str, Object]]:
        """The lab's Servers and their ServerBindings, by UUID."""
        servers = {s["metadata"]["name"]: s for s in await self.kube.list(SERVERS)}
        bindings = {b["metadata"]["name"]: b for b in await self.kube.list(SERVER_BINDINGS)}
        uuids = {s.uuid for s in self.lab.servers}
        return (
            {k: v for k, v in servers.items() if k in uuids},
            {k: v for k, v in bindings.items() if k in uuids},
        )

    def _show(self, servers: dict[str, Object], bindings: dict[str, Object]) -> None:
        for lab_server in self.lab.servers:
            server = servers.get(lab_server.uuid)
            now = where(server, bindings.get(lab_server.uuid))
            if self._shown.get(lab_server.name) != now:
                self._shown[lab_server.name] = now
                extra = ""
                if now.startswith("registered") and server is not None:
                    extra = f" ({summary(server)})"
                self.say(f"{lab_server.name} ({lab_server.firmware}): {now}{extra}")

    async def wait(
        self,
        what: str,
        done: Callable[[dict[str, Object], dict[str, Object]], bool],
        within: float,
    ) -> float:
        """Poll until ``done(servers, bindings)``, showing changes; returns the seconds taken.

        Raises:
            DemoFailed: not done within ``within`` seconds.
        """
        self.say(f"waiting until {what} (at most {within / 60:.0f} min)")
        started = time.monotonic()
        while True:
            servers, bindings = await self.objects()
            self._show(servers, bindings)
            if done(servers, bindings):
                return time.monotonic() - started
            if time.monotonic() - started > within:
                raise DemoFailed(self._stuck(what, within, servers, bindings))
            await asyncio.sleep(2)

    def _stuck(
        self, what: str, within: float, servers: dict[str, Object], bindings: dict[str, Object]
    ) -> str:
        lines = [f"not done after {within:.0f} s: {what}"]
        for s in self.lab.servers:
            lines.append(f"  {s.name}: {where(servers.get(s.uuid), bindings.get(s.uuid))}")
            lines.append(f"  {s.name}'s console ({s.console_log}):\n{tail(s.console_log)}")
        lines.append(f"  Arges' log ({self.arges_log}):\n{tail(self.arges_log, 25)}")
        return "\n".join(lines)

    async def discovered(self, within: float = 900.0) -> float:
        """Wait until every lab server has registered its inventory; the seconds it took."""

        def done(servers: dict[str, Object], _: dict[str, Object]) -> bool:
            return all(
                (servers.get(s.uuid, {}).get("status") or {}).get("hardware")
                for s in self.lab.servers
            )

        return await self.wait("every server has registered", done, within)

    async def accept(self) -> None:
        """Accept every lab server (``spec.accepted: true``): Arges wipes each before use."""
        for server in self.lab.servers:
            await self.kube.patch(SERVERS, server.uuid, {"spec": {"accepted": True}})
        self.say(f"accepted {len(self.lab.servers)} server(s): they are wiped before use")

    async def available(
        self, within: float = 900.0, servers: list[LabServer] | None = None
    ) -> float:
        """Wait until ``servers`` (all the lab's by default) are clean, powered off and unbound;
        the seconds it took."""
        wanted = servers or self.lab.servers

        def done(found: dict[str, Object], bindings: dict[str, Object]) -> bool:
            return all(
                s.uuid not in bindings
                and (found.get(s.uuid, {}).get("status") or {}).get("isClean") is True
                and (found.get(s.uuid, {}).get("status") or {}).get("power") == "off"
                for s in wanted
            )

        return await self.wait("the servers are wiped, clean and powered off", done, within)

    async def create_cluster(self, control_planes: int = 1, workers: int = 1) -> None:
        """Create the lab's ServerClass (if missing) and a TalosCluster of ``control_planes``
        and ``workers`` drawn from it."""
        with contextlib.suppress(AlreadyExists):
            await self.kube.create(
                SERVER_CLASSES,
                {
                    "metadata": {"name": SERVER_CLASS},
                    "spec": {
                        "selector": {"matchExpressions": [{"key": LAB_LABEL, "operator": "Exists"}]}
                    },
                },
            )
        pool = {"serverClassRef": {"name": SERVER_CLASS}}
        await self.kube.create(
            TALOS_CLUSTERS,
            {
                "metadata": {"name": CLUSTER},
                "spec": {
                    "endpoint": ENDPOINT,
                    "controlPlane": {
                        "replicas": control_planes,
                        "strategicPatches": [VIP_PATCH],
                        **pool,
                    },
                    "workers": [{"name": "workers", "replicas": workers, **pool}],
                },
            },
            NAMESPACE,
        )
        self.say(
            f"created TalosCluster {CLUSTER}: {control_planes} control plane(s), "
            f"{workers} worker(s), endpoint {ENDPOINT}"
        )

    async def configs_delivered(self, members: int = 2, within: float = 900.0) -> float:
        """Wait until ``members`` bindings report their machine config installed; the seconds
        it took."""

        def done(_: dict[str, Object], bindings: dict[str, Object]) -> bool:
            installed = [b for b in bindings.values() if _true(b, "Installed")]
            return len(bindings) == members and len(installed) == members

        return await self.wait(
            f"{members} members have fetched and installed their machine configs", done, within
        )

    async def cluster_state(
        self, done: Callable[[Object], bool], what: str, within: float
    ) -> float:
        """Poll the demo cluster until ``done(cluster)``, showing its phase and members'
        roll-out as they change; the seconds taken.

        Raises:
            DemoFailed: not done within ``within`` seconds.
        """
        shown = ""
        self.say(f"waiting until {what} (at most {within / 60:.0f} min)")
        started = time.monotonic()
        while True:
            try:
                cluster: Object | None = await self.kube.get(TALOS_CLUSTERS, CLUSTER, NAMESPACE)
            except NotFound:
                cluster = None
            now = describe(cluster)
            if now != shown:
                shown = now
                self.say(f"cluster {CLUSTER}: {now}")
            servers, bindings = await self.objects()
            self._show(servers, bindings)
            if cluster is not None and done(cluster):
                return time.monotonic() - started
            if time.monotonic() - started > within:
                raise DemoFailed(self._stuck(what, within, servers, bindings) + f"\n  {now}")
            await asyncio.sleep(2)

    async def running(self, within: float = 600.0) -> float:
        """Wait until the cluster is Running (bootstrapped, kubeconfig fetched, every member
        answering Talos' API and up to date)."""
        return await self.cluster_state(
            lambda c: (
                (c.get("status") or {}).get("phase") == "Running"
                and bool((c.get("status") or {}).get("kubeconfigSecret"))
            ),
            "the cluster is Running (etcd bootstrapped, kubeconfig fetched)",
            within,
        )

    async def upgrade(self, installer: str, within: float = 900.0) -> float:
        """Roll the members to Talos installer ``installer``; the seconds until every member
        runs it and the cluster is Running again."""
        version = installer.rsplit(":", 1)[1]
        await self.kube.patch(
            TALOS_CLUSTERS, CLUSTER, {"spec": {"installerImage": installer}}, NAMESPACE
        )
        self.say(f"upgrading TalosCluster {CLUSTER} to {installer}")

        def done(cluster: Object) -> bool:
            status = cluster.get("status") or {}
            members = status.get("members") or []
            return (
                status.get("phase") == "Running"
                and bool(members)
                and all(m.get("talosVersion") == version for m in members)
            )

        return await self.cluster_state(done, f"every member runs Talos {version}", within)

    async def scale_workers(self, replicas: int, within: float = 900.0) -> float:
        """Scale the worker pool to ``replicas``; the seconds until the cluster is Running
        with them (those released are then reset and wiped: :meth:`available` waits)."""
        await self.kube.patch(
            TALOS_CLUSTERS,
            CLUSTER,
            {"spec": {"workers": [{"name": "workers", "replicas": replicas}]}},
            NAMESPACE,
        )
        self.say(f"scaled the workers of TalosCluster {CLUSTER} to {replicas}")
        return await self.cluster_state(
            lambda c: (
                (c.get("status") or {}).get("phase") == "Running"
                and (c.get("status") or {}).get("workerCount") == f"{replicas}/{replicas}"
            ),
            f"the cluster runs {replicas} worker(s)",
            within,
        )

    async def delete_cluster(
        self, within: float = 900.0, also: list[LabServer] | None = None
    ) -> float:
        """Delete the demo cluster; returns the seconds until its servers (and ``also``,
        released before) are clean again."""
        bound = [s for s in self.lab.servers if s.uuid in (await self.objects())[1]]
        bound += [s for s in also or [] if s not in bound]
        await self.kube.delete(TALOS_CLUSTERS, CLUSTER, NAMESPACE)
        self.say(f"deleted TalosCluster {CLUSTER}: its servers are released and wiped")
        await gone(self.kube, TALOS_CLUSTERS, CLUSTER, NAMESPACE, within)
        return await self.available(within, bound)


async def gone(
    kube: KubeClient, res: Resource, name: str, namespace: str | None, within: float
) -> None:
    """Wait until ``name`` no longer exists.

    Raises:
        DemoFailed: it still exists after ``within`` seconds.
    """
    if not await kube.wait_deleted(res, name, namespace, within=within):
        raise DemoFailed(f"{res.kind} {name} still exists after {within:.0f} s")


async def forget_lab(kube: KubeClient, within: float = 120.0) -> None:
    """Remove what a demo leaves in Arges: its cluster, then every lab Server (a lab's
    servers are gone with it; a later lab's cluster must not wait for them)."""
    with contextlib.suppress(NotFound):
        await kube.delete(TALOS_CLUSTERS, CLUSTER, NAMESPACE)
    await gone(kube, TALOS_CLUSTERS, CLUSTER, NAMESPACE, within)
    for server in await kube.list(SERVERS, label_selector=LAB_LABEL):
        with contextlib.suppress(NotFound):
            await kube.delete(SERVERS, server["metadata"]["name"])
    for server in await kube.list(SERVERS, label_selector=LAB_LABEL):
        await gone(kube, SERVERS, server["metadata"]["name"], None, within)


def kubectl_get(kubeconfig: Path) -> str:
    """``kubectl get servers,talosclusters -A -o wide`` as text (a note if kubectl is missing)."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return "(kubectl is not installed; `arges cluster list` shows the cluster)"
    result = subprocess.run(
        [kubectl, "--kubeconfig", str(kubeconfig), "get", "servers,talosclusters", "-A"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return result.stdout + result.stderr


async def run(
    data_dir: Path,
    spec: LabSpec,
    *,
    dhcp_mode: str,
    say: Say,
    keep: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """The whole main job (see the module docstring) with Arges' state in ``data_dir`` (an
    absolute path); ``keep`` is awaited before tearing down (e.g. until Ctrl-C), None tears
    down at once.

    Raises:
        DemoFailed: a step failed (everything was torn down).
        datacenter.LabError: the lab cannot run here.
    """
    arges = Arges(data_dir, dhcp_mode, spec.network)
    started = time.monotonic()
    kube: KubeClient | None = None
    lab_up = False
    try:
        say(f"starting Arges (log: {arges.log})")
        kube = await arges.start()
        say(f"Arges is up: kubeconfig {data_dir / 'kubeconfig'}")
        await forget_lab(kube)
        lab = await datacenter.up(spec, data_dir, progress=lambda m: say(f"lab: {m}"))
        lab_up = True
        demo = Demo(kube, lab, arges.log, say)
        took = {"discovered": await demo.discovered()}
        await demo.accept()
        took["wiped"] = await demo.available()
        await demo.create_cluster()
        took["configs delivered"] = await demo.configs_delivered()
        took["running"] = await demo.running()
        say("done: " + ", ".join(f"{k} in {v:.0f} s" for k, v in took.items()))
        table = await asyncio.to_thread(kubectl_get, data_dir / "kubeconfig")
        say(f"total {time.monotonic() - started:.0f} s\n\n{table}")
        say(
            "Look around:\n"
            f"  export KUBECONFIG={data_dir / 'kubeconfig'}\n"
            "  kubectl get servers -o wide; kubectl describe taloscluster demo\n"
            f"  arges lab status --data-dir {data_dir}\n"
            f"  arges lab console lab-1 --data-dir {data_dir}\n"
            f"  arges cluster talosconfig demo --kubeconfig {data_dir / 'kubeconfig'}"
        )
        if keep is not None:
            await keep()
    finally:
        say("tearing down: the cluster, the lab, then Arges")
        if kube is not None:
            with contextlib.suppress(KubeError, DemoFailed):
                await forget_lab(kube)
        if lab_up:
            await datacenter.down(data_dir, network=spec.network)
        if kube is not None:
            await kube.close()
        await arges.stop()
        say(f"stopped; Arges' state is kept in {data_dir}")
