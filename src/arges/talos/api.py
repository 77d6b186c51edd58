"""Calls to a Talos node's API (apid, TCP 50000) that a provisioner makes.

The calls and their semantics follow Talos' own client (``pkg/machinery/client``) and the
MachineService definition (``api/machine/machine.proto``, ``api/common/common.proto``),
``reference/talos-capi.md`` §4.3: Bootstrap (once, on one control-plane node), Kubeconfig
(the admin kubeconfig, streamed as a gzip'd tar), Reset, Version; for roll-outs Upgrade
(``talosctl upgrade``), ApplyConfiguration (``talosctl apply-config``, and what
``talosctl upgrade-k8s`` sends), SystemStat (the boot time, which tells a reboot happened),
ServiceList (service health), EtcdMemberList and EtcdStatus (etcd's health, as Talos
checks it before an upgrade). Calls go straight to the node (no ``nodes`` metadata, so apid
does not proxy).

Protocol bindings: the PyPI package ``talos-linux-api-v1-6-0`` (betterproto 2 messages and
a grpclib stub generated from Talos v1.6.0's protos), pinned with betterproto and grpclib.
It imports and streams correctly on Python 3.11, and the messages used here are identical
in Talos v1.6.0 and v1.11 (§4.4), so there is no reason to generate stubs of our own.

Errors (:mod:`arges.talos.errors`): :class:`Unreachable` for connections refused, reset or
timed out and TLS failures, always within ``timeout`` seconds; :class:`NotReady` for
FAILED_PRECONDITION and UNAVAILABLE, except FAILED_PRECONDITION answers Talos gives for
what will never work (a worker asked to bootstrap, a method the platform mode lacks),
which are :class:`RequestFailed` like every other status. A per-node ``metadata.error``
in an answer is mapped the same way, by its status code. Nothing from grpclib or
betterproto escapes.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import ssl
import tarfile
import zlib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from betterproto.lib.google.protobuf import Empty
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError, StreamTerminatedError
from talos_linux_api.v1_6_0 import common, machine

from arges.talos.errors import NotReady, RequestFailed, TalosApiError, Unreachable
from arges.talos.talosconfig import ClientCredentials
from arges.talos.tls import client_context

T = TypeVar("T")

APID_PORT = 50000
# A kubeconfig is a few KiB; more than this is not one.
MAX_KUBECONFIG = 1 << 20
WIPED_ON_RESET = ("STATE", "EPHEMERAL")
RETRYABLE = frozenset({Status.FAILED_PRECONDITION, Status.UNAVAILABLE})
# FAILED_PRECONDITION messages of v1alpha1_server.go that no amount of waiting changes.
PERMANENT_PRECONDITIONS = (
    "bootstrap can only be performed on a control plane node",
    "method is not supported in ",
)
UPGRADE_TIMEOUT = 300.0
"""Seconds an Upgrade call may take: Talos pulls and checks the installer image before it
answers."""

ApplyMode = Literal["auto", "no-reboot", "reboot", "staged", "try"]
MODES: dict[ApplyMode, machine.ApplyConfigurationRequestMode] = {
    mode: machine.ApplyConfigurationRequestMode.from_string(mode.upper().replace("-", "_"))
    for mode in ("auto", "no-reboot", "reboot", "staged", "try")
}
MODE_NAMES: dict[machine.ApplyConfigurationRequestMode, ApplyMode] = {
    v: k for k, v in MODES.items()
}


@dataclass(frozen=True)
class Applied:
    """What ApplyConfiguration did: ``mode`` as Talos resolved it (AUTO becomes ``reboot`` or
    ``no-reboot``), Talos' ``details`` (with a dry run, the diff) and ``warnings``."""

    mode: ApplyMode
    details: str
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class EtcdMember:
    """One etcd member as EtcdMemberList lists it; ``started`` is False for a member that
    was added but never ran (etcd reports no name for it)."""

    id: int
    hostname: str
    learner: bool
    started: bool


@dataclass(frozen=True)
class EtcdMemberStatus:
    """EtcdStatus of the node's own member: its id, the leader's id, the errors etcd reports
    (none when healthy), and whether it is a learner."""

    member_id: int
    leader: int
    errors: tuple[str, ...]
    learner: bool


@dataclass(frozen=True)
class Service:
    """One Talos service as ServiceList shows it: ``state`` (e.g. ``Running``,
    ``Preparing``), ``healthy`` (None when Talos does not know: no health check, or not
    checked yet) and the last health message."""

    id: str
    state: str
    healthy: bool | None
    message: str


class TalosApi:
    """Calls to a Talos node's apid (TCP 50000), mTLS with a talosconfig's credentials.

    The server certificate is verified against ``credentials.ca`` (the cluster's OS CA) and
    must name the address called (apid's certificates carry the node's IPs as SANs).
    ``timeout`` (seconds) bounds each call as a whole: connecting, TLS and the answer.

    Raises:
        InvalidSecrets: (from the constructor) when the credentials do not load.
    """

    def __init__(self, credentials: ClientCredentials, *, timeout: float = 10.0) -> None:
        self._ssl: ssl.SSLContext = client_context(credentials.ca, credentials.crt, credentials.key)
        self._timeout = timeout

    async def bootstrap(self, address: str, port: int = APID_PORT) -> bool:
        """Bootstrap etcd on that control-plane node. True: this call bootstrapped it;
        False: it already was (AlreadyExists is success, per CACPPT).

        Raises:
            NotReady: "bootstrap is not available yet", "time is not in sync yet".
            RequestFailed: the node is a worker, or any other refusal.
            Unreachable: see the module docstring.
        """
        try:
            response = await self._call(
                address,
                port,
                "Bootstrap",
                lambda stub: stub.bootstrap(machine.BootstrapRequest()),
            )
        except RequestFailed as exc:
            if exc.code == Status.ALREADY_EXISTS.name:
                return False
            raise
        _check(address, port, "Bootstrap", response.messages)
        return True

    async def kubeconfig(self, address: str, port: int = APID_PORT) -> str:
        """The admin kubeconfig (the streamed gzip'd tar's single file ``kubeconfig``), as
        ``client.Kubeconfig`` / ``extractKubeconfig`` read it. Only control planes have it.

        Raises:
            RequestFailed: a worker (UNIMPLEMENTED), or an archive without the file.
            NotReady, Unreachable: see the module docstring.
        """

        async def fetch(stub: machine.MachineServiceStub) -> bytes:
            chunks = bytearray()
            async for data in stub.kubeconfig(Empty()):
                _check(address, port, "Kubeconfig", [data])
                chunks += data.bytes
                if len(chunks) > MAX_KUBECONFIG:
                    raise RequestFailed(
                        _node(address, port), "Kubeconfig", "the archive is too large"
                    )
            return bytes(chunks)

        archive = await self._call(address, port, "Kubeconfig", fetch)
        return _extract_kubeconfig(_node(address, port), archive)

    async def upgrade(self, address: str, port: int = APID_PORT, *, image: str) -> None:
        """Upgrade the node to the Talos of installer ``image`` (``talosctl upgrade
        --image``): Talos pulls and checks the image, answers, then installs it and reboots.
        ``preserve`` is set, as every Talos since v1.8 does regardless (a single-member
        etcd keeps its data); no ``force``, so a control plane refuses while etcd is
        unhealthy or another control plane holds the upgrade lock. The call may take up to
        :data:`UPGRADE_TIMEOUT` seconds.

        Raises:
            RequestFailed: the image cannot be pulled, etcd refuses (e.g. "etcd member count
                (2) is insufficient to maintain quorum"), or any other refusal.
            NotReady, Unreachable: see the module docstring.
        """
        request = machine.UpgradeRequest(image=image, preserve=True)
        response = await self._call(
            address,
            port,
            "Upgrade",
            lambda stub: stub.upgrade(request),
            limit=max(UPGRADE_TIMEOUT, self._timeout),
        )
        _check(address, port, "Upgrade", response.messages)

    async def apply_configuration(
        self,
        address: str,
        port: int = APID_PORT,
        *,
        config: str,
        mode: ApplyMode,
        dry_run: bool = False,
    ) -> Applied:
        """Apply machine config ``config`` (YAML) in ``mode``, as ``talosctl apply-config
        --mode`` does: ``no-reboot`` applies it in place or is refused, ``reboot`` stages it
        and reboots, ``auto`` picks one of those two (:mod:`arges.talos.applymode` says
        which), ``staged`` keeps it for the next boot. ``dry_run`` only says what would
        happen.

        Raises:
            RequestFailed: an invalid config, or one that ``no-reboot`` cannot apply in place
                (INVALID_ARGUMENT, with Talos' reason).
            NotReady, Unreachable: see the module docstring.
        """
        request = machine.ApplyConfigurationRequest(
            data=config.encode(), mode=MODES[mode], dry_run=dry_run
        )
        response = await self._call(
            address, port, "ApplyConfiguration", lambda stub: stub.apply_configuration(request)
        )
        _check(address, port, "ApplyConfiguration", response.messages)
        if not response.messages:
            raise RequestFailed(_node(address, port), "ApplyConfiguration", "an empty answer")
        first = response.messages[0]
        return Applied(MODE_NAMES.get(first.mode, mode), first.mode_details, tuple(first.warnings))

    async def boot_time(self, address: str, port: int = APID_PORT) -> int:
        """When the node last booted, in seconds since the epoch (SystemStat ``boot_time``):
        a different value means it rebooted since.

        Raises:
            RequestFailed, NotReady, Unreachable: see the module docstring.
        """
        response = await self._call(
            address, port, "SystemStat", lambda stub: stub.system_stat(Empty())
        )
        _check(address, port, "SystemStat", response.messages)
        if not response.messages:
            raise RequestFailed(_node(address, port), "SystemStat", "an empty answer")
        return int(response.messages[0].boot_time)

    async def services(self, address: str, port: int = APID_PORT) -> list[Service]:
        """The node's services and their health (ServiceList, ``talosctl services``).

        Raises:
            RequestFailed, NotReady, Unreachable: see the module docstring.
        """
        response = await self._call(
            address, port, "ServiceList", lambda stub: stub.service_list(Empty())
        )
        _check(address, port, "ServiceList", response.messages)
        return [
            Service(
                s.id,
                s.state,
                None if s.health.unknown else s.health.healthy,
                s.health.last_message,
            )
            for message in response.messages
            for s in message.services
        ]

    async def etcd_members(self, address: str, port: int = APID_PORT) -> list[EtcdMember]:
        """The etcd cluster's members as this control plane sees them (EtcdMemberList).

        Raises:
            RequestFailed: a worker (UNIMPLEMENTED), or etcd failing.
            NotReady, Unreachable: see the module docstring.
        """
        response = await self._call(
            address,
            port,
            "EtcdMemberList",
            lambda stub: stub.etcd_member_list(machine.EtcdMemberListRequest()),
        )
        _check(address, port, "EtcdMemberList", response.messages)
        return [
            EtcdMember(m.id, m.hostname, m.is_learner, bool(m.hostname))
            for message in response.messages
            for m in message.members
        ]

    async def etcd_status(self, address: str, port: int = APID_PORT) -> EtcdMemberStatus:
        """The status of this control plane's own etcd member (EtcdStatus).

        Raises:
            RequestFailed: a worker (UNIMPLEMENTED), or etcd failing.
            NotReady, Unreachable: see the module docstring.
        """
        response = await self._call(
            address, port, "EtcdStatus", lambda stub: stub.etcd_status(Empty())
        )
        _check(address, port, "EtcdStatus", response.messages)
        if not response.messages:
            raise RequestFailed(_node(address, port), "EtcdStatus", "an empty answer")
        status = response.messages[0].member_status
        return EtcdMemberStatus(
            status.member_id, status.leader, tuple(status.errors), status.is_learner
        )

    async def reset(
        self,
        address: str,
        port: int = APID_PORT,
        *,
        graceful: bool = True,
        reboot: bool = True,
    ) -> None:
        """Reset wiping STATE and EPHEMERAL (the typical de-provision): the node forgets its
        config and data and, with ``reboot``, boots again (into the network boot Arges
        serves). ``graceful`` makes a control plane leave etcd first.

        Raises:
            RequestFailed, NotReady, Unreachable: see the module docstring.
        """
        request = machine.ResetRequest(
            graceful=graceful,
            reboot=reboot,
            system_partitions_to_wipe=[
                machine.ResetPartitionSpec(label=label, wipe=True) for label in WIPED_ON_RESET
            ],
        )
        response = await self._call(address, port, "Reset", lambda stub: stub.reset(request))
        _check(address, port, "Reset", response.messages)

    async def version(self, address: str, port: int = APID_PORT) -> str:
        """The node's Talos version tag, e.g. ``v1.11.6``.

        Raises:
            RequestFailed: also when the answer carries no version.
            NotReady, Unreachable: see the module docstring.
        """
        response = await self._call(address, port, "Version", lambda stub: stub.version(Empty()))
        _check(address, port, "Version", response.messages)
        tags = [m.version.tag for m in response.messages if m.version.tag]
        if not tags:
            raise RequestFailed(_node(address, port), "Version", "the answer has no version tag")
        return tags[0]

    async def _call(
        self,
        address: str,
        port: int,
        rpc: str,
        call: Callable[[machine.MachineServiceStub], Awaitable[T]],
        *,
        limit: float | None = None,
    ) -> T:
        """Run ``call`` on a fresh channel to the node, within ``limit`` seconds (default:
        the client's timeout), with every failure turned into a :class:`TalosApiError`."""
        node = _node(address, port)
        channel = Channel(address, port, ssl=self._ssl)
        limit = limit or self._timeout
        try:
            async with asyncio.timeout(limit):
                return await call(machine.MachineServiceStub(channel))
        except TalosApiError:
            raise
        except TimeoutError as exc:
            raise Unreachable(node, rpc, f"no answer within {limit:g}s") from exc
        except GRPCError as exc:
            raise _status_error(node, rpc, exc.status, exc.message or "") from exc
        except ssl.SSLCertVerificationError as exc:
            raise Unreachable(
                node, rpc, f"TLS: the server certificate is not trusted: {exc.verify_message}"
            ) from exc
        except ssl.SSLError as exc:
            raise Unreachable(node, rpc, f"TLS: {exc.reason or exc}") from exc
        except OSError as exc:
            raise Unreachable(node, rpc, f"connection failed: {exc}") from exc
        except StreamTerminatedError as exc:
            # apid refuses an untrusted client certificate after the TLS 1.3 handshake, which
            # the client sees as the connection dropping at its first read.
            raise Unreachable(
                node,
                rpc,
                "the connection was dropped, as apid does to untrusted client certificates",
            ) from exc
        except Exception as exc:
            # Anything else from grpclib, h2 or betterproto is an answer we cannot read.
            raise RequestFailed(
                node, rpc, f"unreadable answer: {type(exc).__name__}: {exc}"
            ) from exc
        finally:
            channel.close()


def _node(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _status_error(node: str, rpc: str, status: Status, message: str) -> TalosApiError:
    retryable = status in RETRYABLE and not message.startswith(PERMANENT_PRECONDITIONS)
    cls = NotReady if retryable else RequestFailed
    return cls(node, rpc, message, code=status.name)


def _check(address: str, port: int, rpc: str, messages: Iterable[Any]) -> None:
    """Raise for the first per-node ``metadata.error`` (set when apid relays a failure)."""
    for message in messages:
        metadata: common.Metadata = message.metadata
        if metadata.error:
            try:
                status = Status(metadata.status.code) if metadata.status.code else Status.UNKNOWN
            except ValueError:
                status = Status.UNKNOWN
            where = _node(address, port)
            if metadata.hostname:
                where = f"{where} ({metadata.hostname})"
            raise _status_error(where, rpc, status, metadata.error)


def _extract_kubeconfig(node: str, archive: bytes) -> str:
    """The text of ``kubeconfig``, the single file of the archive (only the first member is
    read, so a hostile archive costs no more than that)."""
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
            member = tar.next()
            if member is None or member.name.removeprefix("./") != "kubeconfig":
                raise RequestFailed(node, "Kubeconfig", "the archive holds no kubeconfig file")
            ok = member.isreg() and member.size <= MAX_KUBECONFIG
            stream = tar.extractfile(member) if ok else None
            if stream is None:
                raise RequestFailed(
                    node, "Kubeconfig", "kubeconfig in the archive is not a file of at most 1 MiB"
                )
            return stream.read().decode()
    except (tarfile.TarError, gzip.BadGzipFile, zlib.error, EOFError, UnicodeDecodeError) as exc:
        raise RequestFailed(node, "Kubeconfig", f"the archive is unreadable: {exc}") from exc
