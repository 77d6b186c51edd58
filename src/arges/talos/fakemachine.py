"""The fake apid's MachineService: how each RPC answers, as Talos v1.11 does
(``internal/app/machined/internal/server/v1alpha1/v1alpha1_server.go``), over the state of a
:class:`arges.talos.fakeapi.FakeTalosNode`.

- every call is recorded, then authorized by the roles in the client certificate's O, as
  machined's authorizer does (PERMISSION_DENIED "not authorized");
- ``Bootstrap``: FAILED_PRECONDITION "bootstrap is not available yet" while
  ``not_ready_bootstraps`` lasts, FAILED_PRECONDITION "bootstrap can only be performed on a
  control plane node" on a worker, ALREADY_EXISTS "etcd data directory is not empty" once
  bootstrapped;
- ``Kubeconfig``: a gzip'd tar holding one file, ``kubeconfig`` (mode 0600), streamed as
  ``common.Data`` chunks; UNIMPLEMENTED "kubeconfig is only available on control plane
  nodes" on a worker;
- ``Upgrade``: an image in ``refused_images`` fails validation (as a pull would); a control
  plane without ``force`` refuses with etcd's reasons (two members cannot keep quorum, a
  member that is not healthy, one member without ``preserve``) or when another control
  plane holds the upgrade lock; otherwise it acknowledges and runs the upgrade sequence (a
  worker that is already in one acknowledges and does nothing, the sequence being locked);
- ``ApplyConfiguration``: the config must hold a ``v1alpha1`` document (INVALID_ARGUMENT
  otherwise); NO_REBOOT and TRY apply what :mod:`arges.talos.applymode` allows in place and
  refuse the rest (INVALID_ARGUMENT with Talos' reason), STAGED keeps it for the next boot,
  REBOOT keeps it and reboots, AUTO is one of NO_REBOOT and REBOOT; a dry run changes
  nothing and says what would happen. TRY is not rolled back after its timeout;
- ``Reset``: partitions other than Talos' system labels, or with mode USER_DISKS, are
  refused with Talos' messages; then the reset sequence runs;
- ``EtcdMemberList``, ``EtcdStatus``: UNIMPLEMENTED on a worker, UNAVAILABLE "etcd is not
  running on this node" on a control plane that is not a member; a member that is not
  healthy reports the error etcd would;
- ``ServiceList``, ``SystemStat`` (the boot time), ``Version`` (the tag, platform
  ``metal``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gzip
import io
import logging
import secrets
import tarfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import grpclib.const
import grpclib.server
from betterproto.lib.google.protobuf import Empty
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from talos_linux_api.v1_6_0 import common, machine

from arges.talos.applymode import reboot_reason, v1alpha1
from arges.talos.errors import InvalidInput
from arges.talos.talosconfig import ADMIN_ROLE

if TYPE_CHECKING:
    from arges.talos.fakeapi import FakeTalosNode

CHUNK = 256
SYSTEM_LABELS = frozenset({"EFI", "BIOS", "BOOT", "META", "STATE", "EPHEMERAL"})
Mode = machine.ApplyConfigurationRequestMode

log = logging.getLogger(__name__)

ADMIN, OPERATOR, READER = ADMIN_ROLE, "os:operator", "os:reader"
ANYONE = frozenset({ADMIN, OPERATOR, READER})
# machined's authorization rules for the RPCs served here (anything else: admin only).
RULES: dict[str, frozenset[str]] = {
    "Bootstrap": frozenset({ADMIN}),
    "Kubeconfig": frozenset({ADMIN}),
    "Reset": frozenset({ADMIN}),
    "Upgrade": frozenset({ADMIN}),
    "ApplyConfiguration": frozenset({ADMIN}),
    "EtcdMemberList": ANYONE,
    "EtcdStatus": ANYONE,
    "ServiceList": ANYONE,
    "SystemStat": ANYONE,
    "Version": ANYONE,
}


@dataclass(frozen=True)
class ResetCall:
    """What one Reset asked: ``system_partitions`` as (label, wipe) pairs in request order,
    ``mode`` the WipeMode name (ALL, SYSTEM_DISK, USER_DISKS)."""

    graceful: bool
    reboot: bool
    system_partitions: tuple[tuple[str, bool], ...]
    user_disks: tuple[str, ...]
    mode: str


@dataclass(frozen=True)
class UpgradeCall:
    """What one Upgrade asked."""

    image: str
    preserve: bool
    stage: bool
    force: bool


@dataclass(frozen=True)
class ApplyCall:
    """What one ApplyConfiguration asked (``mode`` as requested: AUTO, NO_REBOOT, ...) and
    the mode it resolved to (``applied``: REBOOT or NO_REBOOT for AUTO); ``at`` is when it
    arrived (``time.monotonic()``), to order calls made to different nodes."""

    mode: str
    applied: str
    dry_run: bool
    config: str
    at: float = field(default_factory=time.monotonic, compare=False)


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


QUERIES = frozenset({"EtcdMemberList", "EtcdStatus", "ServiceList", "SystemStat", "Version"})
"""Calls that change nothing (not logged: Arges asks them all the time)."""


def _roles(cert: dict[str, Any] | None) -> set[str]:
    if not cert:
        return set()
    return {
        value for rdn in cert.get("subject", ()) for key, value in rdn if key == "organizationName"
    }


class Guarded:
    """The service's handlers, each first recorded and then authorized by role."""

    def __init__(self, node: FakeTalosNode, service: MachineService) -> None:
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
            if name not in QUERIES:
                log.info("%s: %s", self._node.hostname, name)
            allowed = RULES.get(name, frozenset({ADMIN}))
            if not allowed & _roles(stream.peer.cert()):
                raise GRPCError(Status.PERMISSION_DENIED, "not authorized")
            await func(stream)

        return guarded


class MachineService(machine.MachineServiceBase):
    """The RPCs (see the module docstring) over one node's state."""

    def __init__(self, node: FakeTalosNode) -> None:
        self._node = node

    def _control_plane_only(self, api: str) -> None:
        if not self._node.control_plane:
            raise GRPCError(Status.UNIMPLEMENTED, f"{api} is only available on control plane nodes")

    def _etcd_running(self) -> int:
        member = self._node.etcd.member_id(self._node)
        if member is None:
            raise GRPCError(Status.UNAVAILABLE, "etcd is not running on this node")
        return member

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
        if node.etcd.bootstrapped:
            raise GRPCError(Status.ALREADY_EXISTS, "etcd data directory is not empty")
        node.etcd.bootstrap(node)
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

    async def upgrade(self, upgrade_request: machine.UpgradeRequest) -> machine.UpgradeResponse:
        node, request = self._node, upgrade_request
        node.upgrade_requests.append(
            UpgradeCall(request.image, request.preserve, request.stage, request.force)
        )
        refusal = node.refused_images.get(request.image)
        if refusal is not None:
            raise GRPCError(
                Status.UNKNOWN, f"error validating installer image {request.image!r}: {refusal}"
            )
        if node.control_plane and not request.force:
            self._check_etcd_for_upgrade(request.preserve)
        ack = machine.UpgradeResponse(
            messages=[machine.Upgrade(ack="Upgrade request received", actor_id=_actor())]
        )
        if node.busy:
            # The sequence is locked: Talos logs the refusal and has answered already.
            return ack
        if node.control_plane and not request.force:
            node.etcd.upgrade_lock = node
        node.begin(node.upgrade(request.image))
        return ack

    def _check_etcd_for_upgrade(self, preserve: bool) -> None:
        """``etcd.ValidateForUpgrade`` and the upgrade mutex (``pkg/etcd/etcd.go``)."""
        etcd = self._node.etcd
        if etcd.upgrade_lock is not None and etcd.upgrade_lock is not self._node:
            raise GRPCError(
                Status.UNKNOWN,
                "failed to acquire upgrade lock: mutex: Locked by another session",
            )
        members = etcd.members()
        if not preserve and len(members) == 1:
            raise GRPCError(
                Status.UNKNOWN,
                "error validating etcd for upgrade: only 1 etcd member found; assuming this "
                "is not an HA setup and refusing to upgrade; if this is a single-node "
                "cluster, use --preserve to upgrade",
            )
        if len(members) == 2:
            raise GRPCError(
                Status.UNKNOWN,
                "error validating etcd for upgrade: etcd member count(2) is insufficient to "
                "maintain quorum if upgrade commences",
            )
        for member_id, member in members:
            if not etcd.healthy(member):
                raise GRPCError(
                    Status.UNKNOWN,
                    f"error validating etcd for upgrade: etcd member {member_id:016x} is not "
                    "healthy; all members must be healthy to perform an upgrade",
                )

    async def apply_configuration(
        self, apply_configuration_request: machine.ApplyConfigurationRequest
    ) -> machine.ApplyConfigurationResponse:
        node, request = self._node, apply_configuration_request
        try:
            data = request.data.decode()
            document = v1alpha1(data)
        except (UnicodeDecodeError, InvalidInput) as exc:
            raise GRPCError(Status.INVALID_ARGUMENT, str(exc)) from exc
        if document is None:
            raise GRPCError(
                Status.INVALID_ARGUMENT,
                "the applied machine configuration doesn't contain v1alpha1 config, did you "
                "mean to patch the machine config instead?",
            )
        reason = reboot_reason(node.config, data)
        mode = request.mode
        details = "Applied configuration with a reboot"
        if mode in (Mode.NO_REBOOT, Mode.TRY):
            if reason is not None:
                raise GRPCError(Status.INVALID_ARGUMENT, reason)
            details = "Applied configuration without a reboot"
        elif mode == Mode.STAGED:
            details = "Staged configuration to be applied after the next reboot"
        elif mode == Mode.AUTO:
            mode = Mode(Mode.REBOOT if reason is not None else Mode.NO_REBOOT)
            if reason is None:
                details = "Applied configuration without a reboot"
            else:
                details += f": {reason}"
        answer = machine.ApplyConfigurationResponse(
            messages=[machine.ApplyConfiguration(mode=mode, mode_details=details)]
        )
        node.apply_requests.append(
            ApplyCall(request.mode.name or "", mode.name or "", request.dry_run, data)
        )
        if request.dry_run:
            diff = "No changes." if data == node.config else "(the documents differ)"
            answer.messages[
                0
            ].mode_details = (
                f"Dry run summary:\n{details} (skipped in dry-run).\nConfig diff:\n\n{diff}"
            )
            return answer
        node.stage(data)
        if mode in (Mode.NO_REBOOT, Mode.TRY):
            node.config = data
        elif mode == Mode.REBOOT:
            node.begin(node.reboot("apply"))
        return answer

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
        self._node.begin(self._node.reset(reset_request.graceful, reset_request.reboot))
        return machine.ResetResponse(messages=[machine.Reset(actor_id=_actor())])

    async def etcd_member_list(
        self, etcd_member_list_request: machine.EtcdMemberListRequest
    ) -> machine.EtcdMemberListResponse:
        self._control_plane_only("etcd member list")
        self._etcd_running()
        members = [
            machine.EtcdMember(
                id=member_id,
                hostname=node.hostname,
                peer_urls=[f"https://{node.address}:2380"],
                client_urls=[f"https://{node.address}:2379"],
            )
            for member_id, node in self._node.etcd.members()
        ]
        return machine.EtcdMemberListResponse(messages=[machine.EtcdMembers(members=members)])

    async def etcd_status(
        self, betterproto_lib_google_protobuf_empty: Empty
    ) -> machine.EtcdStatusResponse:
        self._control_plane_only("etcd status")
        member = self._etcd_running()
        etcd = self._node.etcd
        errors = [] if etcd.healthy(self._node) else ["etcdserver: unhealthy cluster"]
        status = machine.EtcdMemberStatus(
            member_id=member, protocol_version="3.5.0", leader=etcd.leader(), errors=errors
        )
        return machine.EtcdStatusResponse(messages=[machine.EtcdStatus(member_status=status)])

    async def service_list(
        self, betterproto_lib_google_protobuf_empty: Empty
    ) -> machine.ServiceListResponse:
        services = [
            machine.ServiceInfo(
                id=name,
                state=state,
                health=machine.ServiceHealth(
                    unknown=healthy is None,
                    healthy=bool(healthy),
                    last_message="" if healthy is not False else f"{name} is not healthy",
                ),
            )
            for name, state, healthy in self._node.services()
        ]
        return machine.ServiceListResponse(messages=[machine.ServiceList(services=services)])

    async def system_stat(
        self, betterproto_lib_google_protobuf_empty: Empty
    ) -> machine.SystemStatResponse:
        return machine.SystemStatResponse(
            messages=[machine.SystemStat(boot_time=self._node.boot_time)]
        )

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


def _actor() -> str:
    return secrets.token_hex(16)
