"""The Talos API client against a fake apid speaking the same protocol, over real mTLS."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import ssl
from collections.abc import AsyncIterator

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from arges.talos import secrets
from arges.talos.api import TalosApi
from arges.talos.errors import InvalidSecrets, NotReady, RequestFailed, Unreachable
from arges.talos.fakeapi import FakeTalosNode, ResetCall
from arges.talos.secrets import CertAndKey, SecretsBundle
from arges.talos.talosconfig import (
    ClientCredentials,
    admin_certificate,
    credentials,
    os_leaf,
    talosconfig,
)
from arges.talos.tls import client_context

HOST = "127.0.0.1"

KUBECONFIG = (
    "apiVersion: v1\nkind: Config\nclusters:\n"
    + "".join(
        f"- name: c{i}\n  cluster:\n    server: https://10.5.0.{i}:6443\n" for i in range(200)
    )
    + "current-context: admin@c0\n"
)


def earlier() -> dt.datetime:
    """A minute ago: certificates used the instant they are made would race OpenSSL's coarse
    clock (it checks notBefore in whole seconds against a clock a few ms behind)."""
    return dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)


@pytest.fixture(scope="module")
def bundle() -> SecretsBundle:
    return secrets.generate(earlier())


@pytest.fixture(scope="module")
def other_bundle() -> SecretsBundle:
    return secrets.generate(earlier())


@pytest.fixture(scope="module")
def api(bundle: SecretsBundle) -> TalosApi:
    client = admin_certificate(bundle, earlier())
    return TalosApi(
        credentials(talosconfig(bundle, "lab", endpoints=[HOST], client=client)), timeout=5
    )


@pytest.fixture
async def node(bundle: SecretsBundle) -> AsyncIterator[FakeTalosNode]:
    async with FakeTalosNode(bundle, address=HOST, kubeconfig=KUBECONFIG) as n:
        yield n


@pytest.fixture
async def worker(bundle: SecretsBundle) -> AsyncIterator[FakeTalosNode]:
    async with FakeTalosNode(bundle, address=HOST, machine_type="worker") as n:
        yield n


def client_cert(bundle: SecretsBundle, role: str) -> CertAndKey:
    """A client certificate for ``role`` from the bundle's OS CA (talosctl's shape)."""
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, role)])
    return os_leaf(
        bundle, subject, [ExtendedKeyUsageOID.CLIENT_AUTH], dt.timedelta(days=1), now=earlier()
    )


async def test_bootstrap_once_then_already_bootstrapped(api: TalosApi, node: FakeTalosNode) -> None:
    assert await api.bootstrap(HOST, node.port) is True
    assert node.bootstrapped
    assert await api.bootstrap(HOST, node.port) is False
    assert node.calls == ["Bootstrap", "Bootstrap"]


async def test_bootstrap_not_ready_until_the_node_is(api: TalosApi, node: FakeTalosNode) -> None:
    node.not_ready_bootstraps = 2
    for _ in range(2):
        with pytest.raises(NotReady) as caught:
            await api.bootstrap(HOST, node.port)
        assert caught.value.code == "FAILED_PRECONDITION"
        assert "bootstrap is not available yet" in str(caught.value)
        assert not node.bootstrapped
    assert await api.bootstrap(HOST, node.port) is True


async def test_bootstrap_on_a_worker_is_refused_for_good(
    api: TalosApi, worker: FakeTalosNode
) -> None:
    # Talos says FAILED_PRECONDITION, but waiting will not make a worker a control plane.
    with pytest.raises(RequestFailed) as caught:
        await api.bootstrap(HOST, worker.port)
    assert caught.value.code == "FAILED_PRECONDITION"
    assert "can only be performed on a control plane node" in caught.value.message
    assert not isinstance(caught.value, NotReady)
    assert not worker.bootstrapped


async def test_kubeconfig_round_trips_through_the_streamed_archive(
    api: TalosApi, node: FakeTalosNode
) -> None:
    assert await api.kubeconfig(HOST, node.port) == KUBECONFIG
    assert node.calls == ["Kubeconfig"]


async def test_kubeconfig_on_a_worker_fails(api: TalosApi, worker: FakeTalosNode) -> None:
    with pytest.raises(RequestFailed) as caught:
        await api.kubeconfig(HOST, worker.port)
    assert caught.value.code == "UNIMPLEMENTED"


async def test_leave_etcd_forfeits_leadership_then_leaves(
    api: TalosApi, node: FakeTalosNode
) -> None:
    assert node.etcd_member
    await api.leave_etcd(HOST, node.port)
    assert not node.etcd_member
    assert node.calls == ["EtcdForfeitLeadership", "EtcdLeaveCluster"]


async def test_leave_etcd_on_a_worker_fails(api: TalosApi, worker: FakeTalosNode) -> None:
    with pytest.raises(RequestFailed) as caught:
        await api.leave_etcd(HOST, worker.port)
    assert caught.value.rpc == "EtcdForfeitLeadership"
    assert worker.calls == ["EtcdForfeitLeadership"]


@pytest.mark.parametrize(("graceful", "reboot"), [(True, True), (False, False)])
async def test_reset_wipes_state_and_ephemeral(
    api: TalosApi, node: FakeTalosNode, graceful: bool, reboot: bool
) -> None:
    await api.reset(HOST, node.port, graceful=graceful, reboot=reboot)
    assert node.reset_requests == [
        ResetCall(
            graceful=graceful,
            reboot=reboot,
            system_partitions=(("STATE", True), ("EPHEMERAL", True)),
            user_disks=(),
            mode="ALL",
        )
    ]
    assert node.etcd_member is not graceful


async def test_version_is_the_talos_tag(bundle: SecretsBundle, api: TalosApi) -> None:
    async with FakeTalosNode(bundle, address=HOST, talos_version="v1.11.6") as n:
        assert await api.version(HOST, n.port) == "v1.11.6"


async def test_roles_are_enforced(bundle: SecretsBundle, node: FakeTalosNode) -> None:
    reader = client_cert(bundle, "os:reader")
    api = TalosApi(ClientCredentials(bundle.os.crt, reader.crt, reader.key), timeout=5)
    assert await api.version(HOST, node.port) == "v1.11.6"
    with pytest.raises(RequestFailed) as caught:
        await api.bootstrap(HOST, node.port)
    assert caught.value.code == "PERMISSION_DENIED"
    assert not node.bootstrapped


async def test_another_clusters_talosconfig_is_unreachable(
    other_bundle: SecretsBundle, node: FakeTalosNode
) -> None:
    api = TalosApi(credentials(talosconfig(other_bundle, "other")), timeout=5)
    with pytest.raises(Unreachable) as caught:
        await api.bootstrap(HOST, node.port)
    assert "TLS" in caught.value.message
    assert node.calls == []
    assert not node.bootstrapped


async def test_a_client_certificate_from_another_ca_is_refused(
    bundle: SecretsBundle, other_bundle: SecretsBundle, node: FakeTalosNode
) -> None:
    # Trusts the node, but presents a certificate apid does not trust.
    foreign = admin_certificate(other_bundle)
    api = TalosApi(ClientCredentials(bundle.os.crt, foreign.crt, foreign.key), timeout=5)
    with pytest.raises(Unreachable):
        await api.bootstrap(HOST, node.port)
    assert node.calls == []
    assert not node.bootstrapped


async def test_a_connection_without_client_certificate_is_refused_by_tls(
    bundle: SecretsBundle, node: FakeTalosNode
) -> None:
    admin = credentials(talosconfig(bundle, "lab"))
    with_cert = client_context(admin.ca, admin.crt, admin.key)
    without_cert = ssl.create_default_context(cadata=bundle.os.crt.decode())
    without_cert.set_alpn_protocols(["h2"])

    async def first_frame(ctx: ssl.SSLContext) -> bytes:
        """What the server sends after the HTTP/2 preface (b"" when it drops us)."""
        try:
            reader, writer = await asyncio.open_connection(HOST, node.port, ssl=ctx)
        except (ssl.SSLError, ConnectionError):
            return b""
        try:
            writer.write(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            await writer.drain()
            return await asyncio.wait_for(reader.read(9), 5)
        except (ssl.SSLError, ConnectionError):
            return b""
        finally:
            writer.close()

    # With the admin certificate the server answers with its SETTINGS frame header...
    assert len(await first_frame(with_cert)) == 9
    # ...without one the TLS layer closes the connection before any HTTP/2.
    assert await first_frame(without_cert) == b""
    assert node.calls == []


async def test_a_closed_port_is_unreachable(api: TalosApi) -> None:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port = sock.getsockname()[1]
    with pytest.raises(Unreachable) as caught:
        await api.version(HOST, port)
    assert caught.value.node == f"{HOST}:{port}"


async def test_a_silent_listener_is_unreachable_after_the_timeout(bundle: SecretsBundle) -> None:
    api = TalosApi(credentials(talosconfig(bundle, "lab")), timeout=0.3)
    server = await asyncio.start_server(lambda r, w: None, HOST, 0)
    try:
        port = server.sockets[0].getsockname()[1]
        with pytest.raises(Unreachable) as caught:
            await api.bootstrap(HOST, port)
        assert "no answer within 0.3s" in caught.value.message
    finally:
        server.close()


async def test_a_server_certificate_for_another_name_is_not_trusted(
    api: TalosApi, node: FakeTalosNode
) -> None:
    # The node's certificate names 127.0.0.1 and its hostname, not "localhost".
    with pytest.raises(Unreachable) as caught:
        await api.version("localhost", node.port)
    assert "TLS" in caught.value.message
    assert node.calls == []


def test_unusable_credentials_are_invalid_secrets(bundle: SecretsBundle) -> None:
    with pytest.raises(InvalidSecrets):
        TalosApi(ClientCredentials(bundle.os.crt, b"not a certificate", b"nor a key"))
