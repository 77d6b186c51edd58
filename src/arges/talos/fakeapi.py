"""A Talos node's apid in memory, for tests and the lab's stand-in: the MachineService calls
Arges makes, served over gRPC and mutual TLS from the same protocol bindings the client uses
(``talos_linux_api.v1_6_0``, see :mod:`arges.talos.api`).

A :class:`FakeTalosNode` holds what a node's calls read and change: its machine type,
Talos version, machine config (running and staged), boot time, services, and its place in
the cluster's etcd (:class:`FakeEtcd`, shared by the control planes of one cluster). What
each RPC answers is in :mod:`arges.talos.fakemachine`, which follows Talos v1.11
(``internal/app/machined/internal/server/v1alpha1/v1alpha1_server.go``).

Nothing runs behind the answers: no etcd, no kubelet, no installer. Upgrade, a rebooting
ApplyConfiguration and Reset run a short sequence in the background (install, then reboot)
and reboot through :attr:`FakeTalosNode.on_reboot`: by default the node stops serving for
``reboot_seconds`` and comes back with a new boot time, the staged config and the upgraded
version; a simulated machine passes its own, which boots the machine again.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import itertools
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import grpclib.server
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from arges.talos.components import tag
from arges.talos.fakemachine import ApplyCall, Guarded, MachineService, ResetCall, UpgradeCall
from arges.talos.secrets import CertAndKey
from arges.talos.talosconfig import os_leaf
from arges.talos.tls import server_context
from arges.tasks import cancel_and_wait

SERVER_VALIDITY = dt.timedelta(hours=8760)
CONTROL_PLANE_SERVICES = (
    "apid",
    "containerd",
    "cri",
    "etcd",
    "kubelet",
    "machined",
    "trustd",
    "udevd",
)
WORKER_SERVICES = ("apid", "containerd", "cri", "kubelet", "machined", "udevd")

DEFAULT_KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters:
    - name: talos
      cluster:
        server: https://127.0.0.1:6443
        certificate-authority-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg==
contexts:
    - name: admin@talos
      context:
        cluster: talos
        namespace: default
        user: admin@talos
current-context: admin@talos
users:
    - name: admin@talos
      user:
        client-certificate-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg==
        client-key-data: LS0tLS1CRUdJTiBFQyBQUklWQVRFIEtFWS0tLS0tCg==
"""

Reboot = Callable[[str], Awaitable[None]]
"""Reboots a node; the argument says why: ``upgrade``, ``apply`` or ``reset``."""


def server_certificate(
    ca: CertAndKey,
    addresses: list[str],
    hostname: str,
    now: dt.datetime | None = None,
) -> CertAndKey:
    """apid's server certificate as a control-plane node issues it for itself from the OS CA
    ``ca`` (``internal/app/machined/pkg/controllers/secrets/api.go``): Ed25519, CN the
    hostname, SANs the node's IP addresses (entries that are not IPs become DNS names) and
    the hostname, extended key usage serverAuth and clientAuth, valid for one year.

    Raises:
        InvalidSecrets: when the OS CA key is not Ed25519.
    """
    sans: list[x509.GeneralName] = []
    for address in addresses:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(address)))
        except ValueError:
            sans.append(x509.DNSName(address))
    sans.append(x509.DNSName(hostname))
    return os_leaf(
        ca,
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)]),
        [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
        SERVER_VALIDITY,
        sans=sans,
        now=now,
    )


def bound_socket(address: str, port: int) -> socket.socket:
    """A TCP socket bound to ``address:port`` (port 0: any free one) for a fake Talos
    service to serve on, as grpclib's ``Server.start(sock=...)`` takes it.

    Raises:
        OSError: the address cannot be bound (the socket is closed first).
    """
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((address, port))
    except OSError:
        sock.close()
        raise
    return sock


@dataclass(frozen=True)
class Identity:
    """What apid serves with (PEM): the OS CA certificate its clients must be issued by, and
    its own certificate and key."""

    ca: bytes
    crt: bytes
    key: bytes


def issue_identity(ca: CertAndKey, addresses: list[str], hostname: str) -> Identity:
    """An :class:`Identity` issued by the OS CA ``ca`` for ``addresses`` and ``hostname``.

    A node issues its certificate when it boots, long before anyone connects; dating it a
    minute back keeps an immediate handshake clear of clock granularity (OpenSSL checks
    notBefore against the coarse clock, which lags by a few ms).

    Raises:
        InvalidSecrets: when the OS CA key is not Ed25519.
    """
    issued = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    leaf = server_certificate(ca, addresses, hostname, now=issued)
    return Identity(ca.crt, leaf.crt, leaf.key)


class FakeEtcd:
    """One cluster's etcd as its control planes' fake apids report it: bootstrapped once; a
    control plane is a member from the bootstrap on (the node bootstrapped, and every control
    plane running then or booting later) until it leaves (a graceful Reset); a member is
    healthy while its node serves and its ``etcd`` service is not marked unhealthy. The
    cluster-wide upgrade lock is held by a control plane from its accepted Upgrade until it
    is back."""

    def __init__(self) -> None:
        self.bootstrapped = False
        self.upgrade_lock: FakeTalosNode | None = None
        self._ids = itertools.count(0x8E0C_0000_0000_0001)
        self._nodes: list[FakeTalosNode] = []
        self._members: dict[int, FakeTalosNode] = {}
        self._left: set[int] = set()

    def register(self, node: FakeTalosNode) -> None:
        """A control plane of this cluster exists (it joins once etcd is bootstrapped)."""
        if node not in self._nodes:
            self._nodes.append(node)
        self._join(node)

    def bootstrap(self, node: FakeTalosNode) -> None:
        """etcd is bootstrapped on ``node``; the running control planes join."""
        self.bootstrapped = True
        self._join(node)
        for other in self._nodes:
            if other.serving:
                self._join(other)

    def _join(self, node: FakeTalosNode) -> None:
        if not self.bootstrapped or id(node) in self._left or self.member_id(node) is not None:
            return
        self._members[next(self._ids)] = node

    def leave(self, node: FakeTalosNode) -> None:
        """``node`` leaves etcd for good (this node never joins again)."""
        self._left.add(id(node))
        self._members = {k: v for k, v in self._members.items() if v is not node}
        if self.upgrade_lock is node:
            self.upgrade_lock = None

    def member_id(self, node: FakeTalosNode) -> int | None:
        """``node``'s member id, None when it is not a member."""
        return next((k for k, v in self._members.items() if v is node), None)

    def members(self) -> list[tuple[int, FakeTalosNode]]:
        """The members, by id."""
        return sorted(self._members.items())

    def healthy(self, node: FakeTalosNode) -> bool:
        """Whether ``node``'s member answers (see the class docstring)."""
        return node.serving and "etcd" not in node.unhealthy

    def leader(self) -> int:
        """The leader's id: the first healthy member (0 when none)."""
        return next((k for k, v in self.members() if self.healthy(v)), 0)


class FakeTalosNode:
    """A Talos node's apid (see the module docstring), over mTLS with ``identity``.

    State a test (or the lab's stand-in) reads or sets: :attr:`calls` (RPC names received, in
    order, including refused ones), :attr:`bootstrapped`, :attr:`not_ready_bootstraps` (how
    many Bootstrap calls still answer FAILED_PRECONDITION "bootstrap is not available yet"),
    :attr:`talos_version`, :attr:`config` (the running machine config) and :attr:`staged`
    (what the next boot runs), :attr:`boot_time`, :attr:`unhealthy` (services reported
    unhealthy), :attr:`refused_images` (installer images Upgrade refuses, with why),
    :attr:`failing_images` (images whose install fails, so the node comes back on its old
    version), :attr:`reset_requests`, :attr:`upgrade_requests`, :attr:`apply_requests`
    (what each call asked), :attr:`upgrades` (installs actually run, by image).
    :attr:`port` is the bound port once :meth:`start` returns. ``persist`` is called with
    the config to keep whenever the staged config changes (the stand-in writes it to disk).
    """

    def __init__(
        self,
        identity: Identity,
        *,
        address: str = "127.0.0.1",
        port: int = 0,
        machine_type: str = "controlplane",
        hostname: str = "talos-node",
        kubeconfig: str = DEFAULT_KUBECONFIG,
        talos_version: str = "v1.11.6",
        config: str | None = None,
        etcd: FakeEtcd | None = None,
        on_reboot: Reboot | None = None,
        persist: Callable[[str | None], None] | None = None,
        reboot_seconds: float = 0.5,
        install_seconds: float = 0.2,
    ) -> None:
        if machine_type not in ("controlplane", "worker"):
            raise ValueError(f"machine_type must be controlplane or worker, not {machine_type!r}")
        self.identity = identity
        self.address = address
        self.port = port
        self.machine_type = machine_type
        self.hostname = hostname
        self.kubeconfig = kubeconfig
        self.talos_version = talos_version
        self.config = config
        self.staged = config
        self.etcd = etcd or FakeEtcd()
        self.on_reboot = on_reboot
        self.persist = persist
        self.reboot_seconds = reboot_seconds
        self.install_seconds = install_seconds
        self.calls: list[str] = []
        self.not_ready_bootstraps = 0
        self.boot_time = 0
        self.unhealthy: set[str] = set()
        self.refused_images: dict[str, str] = {}
        self.failing_images: set[str] = set()
        self.reset_requests: list[ResetCall] = []
        self.upgrade_requests: list[UpgradeCall] = []
        self.apply_requests: list[ApplyCall] = []
        self.upgrades: list[str] = []
        self.wiped = False
        self._next_version: str | None = None
        self._sequence: asyncio.Task[None] | None = None
        self._ssl = server_context(identity.ca, identity.crt, identity.key)
        self._server: grpclib.server.Server | None = None
        if self.control_plane:
            self.etcd.register(self)

    @property
    def control_plane(self) -> bool:
        """Whether the node runs etcd and the control plane (machine type controlplane)."""
        return self.machine_type == "controlplane"

    @property
    def serving(self) -> bool:
        """Whether apid listens (False while the node is down or rebooting)."""
        return self._server is not None

    @property
    def bootstrapped(self) -> bool:
        """Whether etcd was bootstrapped on this node."""
        return self.etcd.bootstrapped and self.etcd.member_id(self) is not None

    @property
    def etcd_member(self) -> bool:
        """Whether this node is a member of the cluster's etcd."""
        return self.etcd.member_id(self) is not None

    @property
    def busy(self) -> bool:
        """Whether an upgrade, reboot or reset sequence is running (Talos' sequence lock)."""
        return self._sequence is not None and not self._sequence.done()

    def services(self) -> list[tuple[str, str, bool | None]]:
        """(id, state, healthy) of each service, as ServiceList reports them: etcd is
        Preparing (health unknown) until the node is a member."""
        out: list[tuple[str, str, bool | None]] = []
        names = CONTROL_PLANE_SERVICES if self.control_plane else WORKER_SERVICES
        for name in names:
            if name == "etcd" and not self.etcd_member:
                out.append((name, "Preparing", None))
            else:
                out.append((name, "Running", name not in self.unhealthy))
        return out

    async def start(self) -> None:
        """Boot: the staged config and an upgraded version take effect, the boot time moves
        on, a control plane joins etcd if it was bootstrapped; then listen on
        ``address:port`` (port 0: any free one, then stored in :attr:`port`)."""
        self.config = self.staged
        if self._next_version is not None:
            self.talos_version, self._next_version = self._next_version, None
        self.boot_time = max(int(time.time()), self.boot_time + 1)
        sock = bound_socket(self.address, self.port)
        self.port = sock.getsockname()[1]
        self._server = grpclib.server.Server([Guarded(self, MachineService(self))])
        await self._server.start(sock=sock, ssl=self._ssl)
        if self.control_plane:
            self.etcd.register(self)
        if self.etcd.upgrade_lock is self:
            self.etcd.upgrade_lock = None

    async def stop(self) -> None:
        """Stop listening and drop open connections."""
        if self._server is not None:
            server, self._server = self._server, None
            server.close()
            await server.wait_closed()

    async def close(self) -> None:
        """Stop, and end a running sequence (the node is switched off)."""
        if self._sequence is not None:
            await cancel_and_wait(self._sequence)
        await self.stop()

    def begin(self, sequence: Coroutine[Any, Any, None]) -> None:
        """Run ``sequence`` in the background (an RPC answers before it runs)."""
        self._sequence = asyncio.get_running_loop().create_task(sequence)

    def stage(self, config: str | None) -> None:
        """Keep ``config`` for the next boot (and on disk, through ``persist``)."""
        self.staged = config
        if self.persist is not None:
            self.persist(config)

    async def reboot(self, why: str) -> None:
        """Reboot through :attr:`on_reboot`, or in place (see the module docstring)."""
        if self.on_reboot is not None:
            await self.on_reboot(why)
            return
        await self.stop()
        await asyncio.sleep(self.reboot_seconds)
        await self.start()

    async def upgrade(self, image: str) -> None:
        """The upgrade sequence: install ``image`` (or fail to, for :attr:`failing_images`),
        then reboot into it."""
        await asyncio.sleep(self.install_seconds)
        self.upgrades.append(image)
        if image not in self.failing_images:
            self._next_version = tag(image) or self.talos_version
        await self.reboot("upgrade")

    async def reset(self, graceful: bool, reboot: bool) -> None:
        """The reset sequence: a graceful control plane leaves etcd; STATE and EPHEMERAL are
        wiped (the config is gone) in ``install_seconds``; then reboot, or stop serving
        (powered off)."""
        await asyncio.sleep(self.install_seconds)
        if graceful and self.control_plane:
            self.etcd.leave(self)
        self.wiped = True
        self.stage(None)
        if reboot:
            await self.reboot("reset")
        else:
            await self.stop()

    async def __aenter__(self) -> FakeTalosNode:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
