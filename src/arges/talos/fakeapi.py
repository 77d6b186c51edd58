"""A Talos node's apid in memory, for tests: the MachineService calls Arges makes, served
over gRPC and mutual TLS from the same protocol bindings the client uses
(``talos_linux_api.v1_6_0``, see :mod:`arges.talos.api`).

It answers as Talos v1.11 does (``internal/app/machined/internal/server/v1alpha1/
v1alpha1_server.go``, ``internal/app/machined/pkg/system/services/machined.go``):

- TLS: a server certificate from the cluster's OS CA for the node's address; a client
  certificate issued by that CA is required (others fail the handshake); the roles in the
  certificate's O are checked per RPC as machined's authorizer does (PERMISSION_DENIED
  "not authorized");
- ``Bootstrap``: FAILED_PRECONDITION "bootstrap is not available yet" while
  :attr:`FakeTalosNode.not_ready_bootstraps` lasts, FAILED_PRECONDITION "bootstrap can only
  be performed on a control plane node" on a worker, ALREADY_EXISTS "etcd data directory is
  not empty" once bootstrapped;
- ``Kubeconfig``: a gzip'd tar holding one file, ``kubeconfig`` (mode 0600), streamed as
  ``common.Data`` chunks; UNIMPLEMENTED "kubeconfig is only available on control plane
  nodes" on a worker;
- ``EtcdForfeitLeadership`` / ``EtcdLeaveCluster``: UNIMPLEMENTED "... is only available
  on control plane nodes" on a worker; leaving clears :attr:`FakeTalosNode.etcd_member`.
  A node that is no longer a member answers UNKNOWN (Talos then fails to find its local
  member; the exact text is the fake's);
- ``Reset``: recorded in :attr:`FakeTalosNode.reset_requests`; a graceful reset of a
  control plane leaves etcd first; system partitions with mode USER_DISKS are refused with
  Talos' message;
- ``Version``: the configured tag, platform ``metal``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gzip
import io
import ipaddress
import secrets
import socket
import tarfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpclib.const
import grpclib.server
from betterproto.lib.google.protobuf import Empty
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from talos_linux_api.v1_6_0 import common, machine

from arges.talos.secrets import CertAndKey, SecretsBundle
from arges.talos.talosconfig import ADMIN_ROLE, os_leaf
from arges.talos.tls import server_context

SERVER_VALIDITY = dt.timedelta(hours=8760)
CHUNK = 256
SYSTEM_LABELS = frozenset({"EFI", "BIOS", "BOOT", "META", "STATE", "EPHEMERAL"})

ADMIN, OPERATOR, READER = ADMIN_ROLE, "os:operator", "os:reader"
# machined's authorization rules for the RPCs served here (anything else: admin only).
RULES: dict[str, frozenset[str]] = {
    "Bootstrap": frozenset({ADMIN}),
    "Kubeconfig": frozenset({ADMIN}),
    "EtcdForfeitLeadership": frozenset({ADMIN}),
    "EtcdLeaveCluster": frozenset({ADMIN}),
    "Reset": frozenset({ADMIN}),
    "Version": frozenset({ADMIN, OPERATOR, READER}),
}

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


def server_certificate(
    bundle: SecretsBundle,
    addresses: list[str],
    hostname: str,
    now: dt.datetime | None = None,
) -> CertAndKey:
    """apid's server certificate as a control-plane node issues it for itself from the OS CA
    (``internal/app/machined/pkg/controllers/secrets/api.go``): Ed25519, CN the hostname,
    SANs the node's IP addresses (entries that are not IPs become DNS names) and the
    hostname, extended key usage serverAuth and clientAuth, valid for one year.

    Raises:
        InvalidSecrets: when the bundle's OS CA key is not Ed25519.
    """
    sans: list[x509.GeneralName] = []
    for address in addresses:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(address)))
        except ValueError:
            sans.append(x509.DNSName(address))
    sans.append(x509.DNSName(hostname))
    return os_leaf(
        bundle,
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)]),
        [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
        SERVER_VALIDITY,
        sans=sans,
        now=now,
    )


@dataclass(frozen=True)
class ResetCall:
    """What one Reset asked: ``system_partitions`` as (label, wipe) pairs in request order,
    ``mode`` the WipeMode name (ALL, SYSTEM_DISK, USER_DISKS)."""

    graceful: bool
    reboot: bool
    system_partitions: tuple[tuple[str, bool], ...]
    user_disks: tuple[str, ...]
    mode: str


def kubeconfig_archive(text: str) -> bytes:
    """``text`` as Talos wraps it for the Kubeconfig RPC: a gzip'd tar with one regular file,
    ``kubeconfig``, mode 0600."""
    data = text.encode()
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("kubeconfig")
        info.size = len(data)
        info.mode = 0o600
        info.mtime = int(dt.datetime.now(dt.UTC).timestamp())
        tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue())


class FakeTalosNode:
    """A Talos node's apid for tests: the MachineService RPCs Arges calls, over mTLS with a
    server certificate issued by the cluster's OS CA for ``address``.

    State a test reads or sets: :attr:`calls` (RPC names received, in order, including
    refused ones), :attr:`bootstrapped`, :attr:`etcd_member` (True for a control plane until
    EtcdLeaveCluster), :attr:`not_ready_bootstraps` (how many Bootstrap calls still answer
    FAILED_PRECONDITION "bootstrap is not available yet"), :attr:`reset_requests`
    (:class:`ResetCall` records). :attr:`port` is the bound port once :meth:`start` returns.
    """

    def __init__(
        self,
        bundle: SecretsBundle,
        *,
        address: str = "127.0.0.1",
        port: int = 0,
        machine_type: str = "controlplane",
        hostname: str = "talos-node",
        kubeconfig: str = DEFAULT_KUBECONFIG,
        talos_version: str = "v1.11.6",
    ) -> None:
        if machine_type not in ("controlplane", "worker"):
            raise ValueError(f"machine_type must be controlplane or worker, not {machine_type!r}")
        self.address = address
        self.port = port
        self.machine_type = machine_type
        self.hostname = hostname
        self.kubeconfig = kubeconfig
        self.talos_version = talos_version
        self.calls: list[str] = []
        self.bootstrapped = False
        self.etcd_member = machine_type == "controlplane"
        self.not_ready_bootstraps = 0
        self.reset_requests: list[ResetCall] = []
        # A node issues its certificate when it boots, long before anyone connects; dating
        # it a minute back keeps a test's immediate handshake clear of clock granularity
        # (OpenSSL checks notBefore against the coarse clock, which lags by a few ms).
        issued = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
        identity = server_certificate(bundle, [address], hostname, now=issued)
        self._ssl = server_context(bundle.os.crt, identity.crt, identity.key)
        self._server: grpclib.server.Server | None = None

    @property
    def control_plane(self) -> bool:
        """Whether the node runs etcd and the control plane (machine type controlplane)."""
        return self.machine_type == "controlplane"

    async def start(self) -> None:
        """Listen on ``address:port`` (port 0: any free one, then stored in :attr:`port`)."""
        family = socket.AF_INET6 if ":" in self.address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.address, self.port))
        except OSError:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        self._server = grpclib.server.Server([_Guarded(self, _MachineService(self))])
        await self._server.start(sock=sock, ssl=self._ssl)

    async def stop(self) -> None:
        """Stop listening and drop open connections."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> FakeTalosNode:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def _roles(cert: dict[str, Any] | None) -> set[str]:
    if not cert:
        return set()
    return {
        value for rdn in cert.get("subject", ()) for key, value in rdn if key == "organizationName"
    }


class _Guarded:
    """The service's handlers, each first recorded and then authorized by role."""

    def __init__(self, node: FakeTalosNode, service: _MachineService) -> None:
        self._node = node
        self._service = service

    def __mapping__(self) -> dict[str, grpclib.const.Handler]:
        mapping = {}
        for route, handler in self._service.__mapping__().items():
            mapping[route] = handler._replace(func=self._guard(route, handler.func))
        return mapping

    def _guard(
        self, route: str, func: Callable[[grpclib.server.Stream[Any, Any]], Awaitable[None]]
    ) -> Callable[[grpclib.server.Stream[Any, Any]], Awaitable[None]]:
        name = route.rsplit("/", 1)[1]

        async def guarded(stream: grpclib.server.Stream[Any, Any]) -> None:
            self._node.calls.append(name)
            allowed = RULES.get(name, frozenset({ADMIN}))
            if not allowed & _roles(stream.peer.cert()):
                raise GRPCError(Status.PERMISSION_DENIED, "not authorized")
            await func(stream)

        return guarded


class _MachineService(machine.MachineServiceBase):
    def __init__(self, node: FakeTalosNode) -> None:
        self._node = node

    def _control_plane_only(self, api: str) -> None:
        if not self._node.control_plane:
            raise GRPCError(Status.UNIMPLEMENTED, f"{api} is only available on control plane nodes")

    async def bootstrap(
        self, bootstrap_request: machine.BootstrapRequest
    ) -> machine.BootstrapResponse:
        node = self._node
        if node.not_ready_bootstraps > 0:
            node.not_ready_bootstraps -= 1
            raise GRPCError(Status.FAILED_PRECONDITION, "bootstrap is not available yet")
        if not node.control_plane:
            raise GRPCError(
                Status.FAILED_PRECONDITION,
                "bootstrap can only be performed on a control plane node",
            )
        if node.bootstrapped:
            raise GRPCError(Status.ALREADY_EXISTS, "etcd data directory is not empty")
        node.bootstrapped = True
        return machine.BootstrapResponse(messages=[machine.Bootstrap()])

    # The generated base declares its stream methods as coroutines returning an iterator;
    # grpclib calls them as the async generators they are.
    async def kubeconfig(  # type: ignore[override,misc]
        self, betterproto_lib_google_protobuf_empty: Empty
    ) -> AsyncIterator[common.Data]:
        self._control_plane_only("kubeconfig")
        archive = kubeconfig_archive(self._node.kubeconfig)
        for offset in range(0, len(archive), CHUNK):
            yield common.Data(bytes=archive[offset : offset + CHUNK])
            await asyncio.sleep(0)

    async def etcd_forfeit_leadership(
        self, etcd_forfeit_leadership_request: machine.EtcdForfeitLeadershipRequest
    ) -> machine.EtcdForfeitLeadershipResponse:
        self._control_plane_only("etcd forfeit leadership")
        if not self._node.etcd_member:
            raise GRPCError(Status.UNKNOWN, "failed to forfeit leadership: not an etcd member")
        return machine.EtcdForfeitLeadershipResponse(
            messages=[machine.EtcdForfeitLeadership(member=self._node.hostname)]
        )

    async def etcd_leave_cluster(
        self, etcd_leave_cluster_request: machine.EtcdLeaveClusterRequest
    ) -> machine.EtcdLeaveClusterResponse:
        self._control_plane_only("etcd leave")
        if not self._node.etcd_member:
            raise GRPCError(Status.UNKNOWN, "failed to leave cluster: not an etcd member")
        self._node.etcd_member = False
        return machine.EtcdLeaveClusterResponse(messages=[machine.EtcdLeaveCluster()])

    async def reset(self, reset_request: machine.ResetRequest) -> machine.ResetResponse:
        mode = reset_request.mode
        partitions = tuple((p.label, p.wipe) for p in reset_request.system_partitions_to_wipe)
        if partitions and mode == machine.ResetRequestWipeMode.USER_DISKS:
            raise GRPCError(
                Status.UNKNOWN,
                "reset failed: invalid input, wipe mode USER_DISKS doesn't support "
                "SystemPartitionsToWipe parameter",
            )
        for label, _ in partitions:
            if label not in SYSTEM_LABELS:
                raise GRPCError(Status.UNKNOWN, f"failed to get volume status with label {label!r}")
        self._node.reset_requests.append(
            ResetCall(
                graceful=reset_request.graceful,
                reboot=reset_request.reboot,
                system_partitions=partitions,
                user_disks=tuple(reset_request.user_disks_to_wipe),
                mode=mode.name or str(int(mode)),
            )
        )
        if reset_request.graceful and self._node.control_plane:
            self._node.etcd_member = False
        return machine.ResetResponse(messages=[machine.Reset(actor_id=secrets.token_hex(16))])

    async def version(
        self, betterproto_lib_google_protobuf_empty: Empty
    ) -> machine.VersionResponse:
        return machine.VersionResponse(
            messages=[
                machine.Version(
                    version=machine.VersionInfo(
                        tag=self._node.talos_version, os="linux", arch="amd64"
                    ),
                    platform=machine.PlatformInfo(name="metal", mode="metal"),
                    features=machine.FeaturesInfo(rbac=True),
                )
            ]
        )
