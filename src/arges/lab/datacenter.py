"""The virtual datacenter as a whole: brought up, looked at, and taken down.

:func:`up` checks the host (:mod:`arges.lab.preflight`) and that Arges answers (its
kubeconfig in ``DATA_DIR``), plans the servers (:mod:`arges.lab.plan`), and then, writing
``DATA_DIR/lab/state.json`` first so that nothing it creates is ever forgotten:

1. each server's run directory, raw disks (sparse files) and, for UEFI, its own copy of
   OVMF's variable store; with Redfish BMCs, the lab's CA and the BMCs' certificate;
2. the provisioning network with one tap per NIC (:class:`~arges.lab.network.LabNetwork`);
3. the servers' Secrets and Servers in Arges (:mod:`arges.lab.records`);
4. the supervisor (:mod:`arges.lab.supervisor`), which runs dnsmasq, the BMCs and the
   servers' QEMU processes, detached, and says when they are up.

IPMI BMCs listen on UDP and Redfish BMCs on TCP; every BMC port is taken free on both, so a
lab's ports never depend on its mix.

A failure at any step removes everything created so far, Arges' objects included.

:func:`down` removes a lab, however far it got and whether or not its supervisor is still
alive: the supervisor, then any Redfish BMC or QEMU process it left (found by their command
lines and pid files), then any process still in the lab's namespace, then the namespace and
the host link, the lab's BMC Secrets in Arges, and ``DATA_DIR/lab``. It leaves the Server
objects in Arges (they are the inventory record; ``kubectl delete server`` is the operator's
call). It is safe to run twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import random
import secrets
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from arges.errors import ArgesError
from arges.kube.client import KubeClient
from arges.kube.connection import ConfigError, from_kubeconfig
from arges.kube.errors import KubeError
from arges.kube.resources import SERVERS
from arges.lab import preflight, tls
from arges.lab.network import LabNetwork, NetworkError
from arges.lab.plan import LabSpec, PlanError, plan
from arges.lab.records import forget, record
from arges.lab.state import (
    ArgesRecord,
    Credentials,
    LabServer,
    LabState,
    StateError,
    load_state,
    save_credentials,
    save_state,
)

log = logging.getLogger(__name__)

BMC_BASE_PORT = 6230
"""The first lab BMC's port (the lab's BMCs take the free ports from here up)."""
PASSWORD_BYTES = 12
"""Random bytes per BMC password: 16 characters, within IPMI 2.0's 20-byte limit."""
SUPERVISOR_LOG = "supervisor.log"
STOP_TIMEOUT = 30.0


class LabError(ArgesError):
    """The lab cannot do what was asked; the message says why and what to do instead."""


def lab_dir(data_dir: Path) -> Path:
    """Where a lab keeps its files (absolute: the supervisor runs from ``/``)."""
    return data_dir.absolute() / "lab"


def arges_hint(data_dir: Path, network: LabNetwork) -> str:
    """The ``arges up`` command line that serves this lab's network, for messages that ask
    the user to start Arges first."""
    return (
        f"start Arges first: arges up --data-dir {data_dir} --boot-address "
        f"{network.host_address} --dhcp-interface {network.host_link}"
    )


async def connect(data_dir: Path, network: LabNetwork) -> KubeClient:
    """A client for the Arges whose kubeconfig is in ``data_dir``, once it has answered.

    Raises:
        LabError: no kubeconfig, or Arges does not answer.
    """
    path = data_dir / "kubeconfig"
    try:
        connection = from_kubeconfig(path)
    except ConfigError as exc:
        raise LabError(
            f"Arges is not running with --data-dir {data_dir} ({exc}); "
            f"{arges_hint(data_dir, network)}"
        ) from exc
    kube = KubeClient(connection, component="arges-lab")
    try:
        await kube.list(SERVERS)
    except KubeError as exc:
        await kube.close()
        raise LabError(
            f"Arges does not answer at {connection.server} ({exc}); {arges_hint(data_dir, network)}"
        ) from exc
    return kube


def free_ports(count: int, start: int = BMC_BASE_PORT, address: str = "127.0.0.1") -> list[int]:
    """The first ``count`` ports from ``start`` up that nothing has bound on ``address``,
    neither in UDP (IPMI) nor in TCP (Redfish).

    Raises:
        LabError: when there are not that many below 65536.
    """
    ports: list[int] = []
    for port in range(start, 65536):
        if not all(_bindable(address, port, kind) for kind in _SOCKET_KINDS):
            continue
        ports.append(port)
        if len(ports) == count:
            return ports
    raise LabError(f"no {count} free ports from {start} up for the BMCs")


_SOCKET_KINDS = (socket.SOCK_DGRAM, socket.SOCK_STREAM)


def _bindable(address: str, port: int, kind: socket.SocketKind) -> bool:
    with socket.socket(socket.AF_INET, kind) as sock:
        try:
            sock.bind((address, port))
        except OSError:
            return False
    return True


def _existing(network: LabNetwork, directory: Path) -> str | None:
    if (directory / "state.json").exists():
        return f"a lab is already up in {directory}"
    if network.exists():
        return f"network namespace {network.namespace} already exists"
    if Path(f"/sys/class/net/{network.host_link}").exists():
        return f"link {network.host_link} already exists"
    return None


async def up(
    spec: LabSpec,
    data_dir: Path,
    *,
    rng: random.Random | None = None,
    progress: Callable[[str], None] = lambda _: None,
    start_timeout: float = 120.0,
) -> LabState:
    """Bring a lab up (see the module docstring); returns its state.

    Raises:
        LabError: the host cannot run the lab, a lab exists already, Arges does not answer,
            the options cannot make a lab, or a step failed (after removing what it made).
    """
    network = spec.network
    uefi = spec.firmware != "bios"
    found = preflight.problems(uefi=uefi, site_dhcp=spec.site_dhcp, bmc=spec.bmc != "redfish")
    if found:
        raise LabError("the lab cannot run on this host:\n" + "\n".join(f"  - {p}" for p in found))
    directory = lab_dir(data_dir)
    already = _existing(network, directory)
    if already:
        raise LabError(
            f"{already}: only one lab runs on a machine; remove it first with "
            f"arges lab down --data-dir {data_dir}"
        )
    ovmf = preflight.ovmf_images() if uefi else None
    try:
        servers = plan(spec, directory, free_ports(spec.servers), rng or random.SystemRandom())
    except PlanError as exc:
        raise LabError(str(exc)) from exc
    kube = await connect(data_dir, network)
    credentials = {
        s.name: Credentials(username=s.bmc_username, password=secrets.token_urlsafe(PASSWORD_BYTES))
        for s in servers
    }
    state = LabState(
        created=dt.datetime.now(dt.UTC).replace(microsecond=0),
        network=network,
        site_dhcp=spec.site_dhcp,
        qemu=spec.qemu,
        ovmf_code=ovmf[0] if ovmf else None,
        servers=servers,
        arges=ArgesRecord(kubeconfig=data_dir / "kubeconfig"),
    )
    try:
        progress(f"creating {len(servers)} server(s): disks and firmware variables")
        ca = await asyncio.to_thread(
            _create_files, directory, state, credentials, ovmf[1] if ovmf else None
        )
        progress(f"creating the network: namespace {network.namespace}, link {network.host_link}")
        await asyncio.to_thread(network.create, [t for s in servers for t in s.taps])
        progress("recording the servers' BMCs in Arges")
        assert state.arges is not None
        try:
            await record(kube, servers, credentials, state.arges, ca)
        finally:
            save_state(directory, state)
        progress("starting the supervisor: site DHCP, BMCs, servers")
        state.supervisor_pid = await asyncio.to_thread(_start_supervisor, directory, start_timeout)
        save_state(directory, state)
    except BaseException as exc:
        await _teardown(directory, state, kube, forget_servers=True)
        await kube.close()
        if isinstance(exc, LabError | NetworkError | KubeError | OSError | StateError):
            raise LabError(
                f"the lab did not come up: {exc}\neverything it had created has been removed"
            ) from exc
        raise
    await kube.close()
    return state


def _create_files(
    directory: Path,
    state: LabState,
    credentials: dict[str, Credentials],
    ovmf_vars: Path | None,
) -> str:
    """The state (first: ``down`` must always find it), the credentials, the TLS of Redfish
    BMCs, and each server's run directory, sparse raw disks and own copy of OVMF's variable
    store. Returns the lab's CA certificate (PEM; empty without Redfish BMCs)."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    save_state(directory, state)
    save_credentials(directory, credentials)
    ca = ""
    if any(s.bmc_kind == "redfish" for s in state.servers):
        ca = tls.create(directory / "tls").ca.read_text()
    for server in state.servers:
        server.run_dir.mkdir(parents=True, exist_ok=True)
        for disk in server.disks:
            with disk.path.open("wb") as f:
                f.truncate(disk.size)
        if server.firmware == "uefi":
            assert ovmf_vars is not None
            shutil.copyfile(ovmf_vars, server.ovmf_vars)
    return ca


def _start_supervisor(directory: Path, timeout: float) -> int:
    """Start the supervisor detached; its pid once it reports ready.

    Raises:
        LabError: it reported an error, died, or said nothing within ``timeout`` seconds.
    """
    read_end, write_end = os.pipe()
    try:
        with (directory / SUPERVISOR_LOG).open("ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "arges.lab.supervisor", str(directory), str(write_end)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                pass_fds=(write_end,),
                start_new_session=True,
                cwd="/",
            )
    finally:
        os.close(write_end)
    with os.fdopen(read_end) as reader:
        ready, _, _ = select.select([reader], [], [], timeout)
        line = reader.readline() if ready else ""
    try:
        message = json.loads(line) if line else {}
    except ValueError:
        message = {}
    if message.get("ready"):
        return proc.pid
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    if "error" in message:
        raise LabError(str(message["error"]))
    tail = (directory / SUPERVISOR_LOG).read_text(errors="replace").strip().splitlines()[-3:]
    raise LabError(
        f"the supervisor did not report within {timeout:.0f} s: {' | '.join(tail) or 'no log'}"
    )


async def down(data_dir: Path, *, network: LabNetwork | None = None) -> list[str]:
    """Remove the lab (see the module docstring); returns what was done, line by line."""
    directory = lab_dir(data_dir)
    report: list[str] = []
    try:
        state = load_state(directory)
    except StateError as exc:
        report.append(f"the lab's state is unreadable ({exc}); removing what can be found")
        state = None
    net = state.network if state is not None else (network or LabNetwork())
    kube = None
    if state is not None and state.arges is not None and state.arges.secrets:
        try:
            kube = await connect(data_dir, net)
        except LabError as exc:
            report.append(f"the BMC Secrets stay in Arges: {exc}")
    try:
        report += await _teardown(directory, state, kube, forget_servers=False, network=net)
    finally:
        if kube is not None:
            await kube.close()
    return report


async def _teardown(
    directory: Path,
    state: LabState | None,
    kube: KubeClient | None,
    *,
    forget_servers: bool,
    network: LabNetwork | None = None,
) -> list[str]:
    net = network or (state.network if state is not None else LabNetwork())
    report = await asyncio.to_thread(_remove_local, directory, state, net)
    if kube is not None and state is not None and state.arges is not None:
        problems = await forget(kube, state.arges, servers=forget_servers)
        what = "BMC Secrets and Servers" if forget_servers else "BMC Secrets"
        report.append(f"deleted the lab's {what} from Arges")
        report += [f"could not delete {p}" for p in problems]
    return report


def _remove_local(directory: Path, state: LabState | None, net: LabNetwork) -> list[str]:
    report: list[str] = []
    pid = state.supervisor_pid if state is not None else None
    if pid and _is_ours(pid, "arges.lab.supervisor", str(directory)):
        _terminate([pid])
        report.append(f"stopped the supervisor (pid {pid})")
    leftovers = [p for p in _pids_of("arges.lab.redfish", str(directory)) if p != pid]
    for server in state.servers if state is not None else []:
        qemu = _read_pid(server.pid_file)
        if qemu is not None and _is_ours(qemu, "qemu", str(server.run_dir)):
            leftovers.append(qemu)
    leftovers += [p for p in _namespace_pids(net) if p not in leftovers]
    if leftovers:
        _terminate(leftovers)
        report.append(f"stopped {len(leftovers)} process(es) left in the lab: {leftovers}")
    if net.exists() or Path(f"/sys/class/net/{net.host_link}").exists():
        net.destroy()
        report.append(f"removed namespace {net.namespace} and link {net.host_link}")
    if directory.exists():
        shutil.rmtree(directory, ignore_errors=True)
        report.append(f"removed {directory}")
    return report


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _cmdline(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return None


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _is_ours(pid: int, *needles: str) -> bool:
    """Whether ``pid`` is alive and its command line holds every one of ``needles`` (a pid
    from a stale file may belong to something else by now)."""
    cmdline = _cmdline(pid)
    return cmdline is not None and _alive(pid) and all(n in cmdline for n in needles)


def _pids_of(*needles: str) -> list[int]:
    """Live processes whose command lines hold every one of ``needles``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _is_ours(int(entry.name), *needles):
            found.append(int(entry.name))
    return found


def _namespace_pids(network: LabNetwork) -> list[int]:
    out = subprocess.run(
        ["ip", "netns", "pids", network.namespace], capture_output=True, text=True, check=False
    )
    return [int(p) for p in out.stdout.split() if p.isdigit()] if out.returncode == 0 else []


def _terminate(pids: list[int], timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM, then SIGKILL whatever still runs after ``timeout`` seconds."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        for pid in pids:
            if _alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        if not any(_alive(p) for p in pids):
            return


@dataclass(frozen=True)
class ServerStatus:
    """One lab server as ``arges lab status`` shows it."""

    server: LabServer
    qemu_pid: int | None
    """QEMU's pid while the server is powered on, else None."""


@dataclass(frozen=True)
class LabStatus:
    """What :func:`status` found: the lab's recorded state, whether its supervisor runs,
    and each server's."""

    state: LabState
    supervisor_running: bool
    servers: list[ServerStatus]


def status(data_dir: Path) -> LabStatus:
    """The lab in ``data_dir`` and whether its processes run.

    Raises:
        LabError: there is no lab, or its state cannot be read.
    """
    directory = lab_dir(data_dir)
    try:
        state = load_state(directory)
    except StateError as exc:
        raise LabError(f"the lab's state is unreadable: {exc}") from exc
    if state is None:
        raise LabError(f"no lab in {data_dir} (arges lab up --data-dir {data_dir} makes one)")
    servers = []
    for server in state.servers:
        pid = _read_pid(server.pid_file)
        running = pid is not None and _is_ours(pid, "qemu", str(server.run_dir))
        servers.append(ServerStatus(server, pid if running else None))
    supervisor = state.supervisor_pid is not None and _is_ours(
        state.supervisor_pid, "arges.lab.supervisor", str(directory)
    )
    return LabStatus(state, supervisor, servers)
