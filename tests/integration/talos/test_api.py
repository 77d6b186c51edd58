"""The Talos API client against a fake apid speaking the same protocol, over real mTLS."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import ssl
from collections.abc import AsyncIterator
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from arges.talos import secrets
from arges.talos.api import TalosApi
from arges.talos.configgen import ClusterInput, machine_config
from arges.talos.documents import encode
from arges.talos.errors import InvalidSecrets, NotReady, RequestFailed, Unreachable
from arges.talos.fakeapi import FakeEtcd, FakeTalosNode, Identity, issue_identity
from arges.talos.fakemachine import ApplyCall, ResetCall, UpgradeCall
from arges.talos.patches import apply, patch_set
from arges.talos.secrets import CertAndKey, SecretsBundle
from arges.talos.talosconfig import (
    ClientCredentials,
    admin_certificate,
    credentials,
    os_leaf,
    talosconfig,
)
from arges.talos.tls import client_context
from tests.integration.conftest import eventually

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
    async with FakeTalosNode(identity(bundle), address=HOST, kubeconfig=KUBECONFIG) as n:
        yield n


@pytest.fixture
async def worker(bundle: SecretsBundle) -> AsyncIterator[FakeTalosNode]:
    async with FakeTalosNode(identity(bundle), address=HOST, machine_type="worker") as n:
        yield n


def identity(bundle: SecretsBundle, hostname: str = "talos-node") -> Identity:
    return issue_identity(bundle.os, [HOST], hostname)


def client_cert(bundle: SecretsBundle, role: str) -> CertAndKey:
    """A client certificate for ``role`` from the bundle's OS CA (talosctl's shape)."""
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, role)])
    return os_leaf(
        bundle.os, subject, [ExtendedKeyUsageOID.CLIENT_AUTH], dt.timedelta(days=1), now=earlier()
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


@pytest.mark.parametrize(("graceful", "reboot"), [(True, True), (False, False)])
async def test_reset_wipes_state_and_ephemeral(
    api: TalosApi, node: FakeTalosNode, graceful: bool, reboot: bool
) -> None:
    await api.bootstrap(HOST, node.port)
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
    await eventually(lambda: node.wiped)
    assert node.etcd_member is not graceful, "a graceful reset leaves etcd first"
    assert node.staged is None, "STATE is wiped: no config for the next boot"


async def test_version_is_the_talos_tag(bundle: SecretsBundle, api: TalosApi) -> None:
    async with FakeTalosNode(identity(bundle), address=HOST, talos_version="v1.11.6") as n:
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


def config(bundle: SecretsBundle, machine_type: str = "controlplane", **patch: Any) -> str:
    """A node's machine config, with strategic ``patch`` sections merged in."""
    spec = ClusterInput(cluster_name="lab", endpoint="https://10.5.0.10:6443")
    docs = [machine_config(bundle, machine_type, spec)]  # type: ignore[arg-type]
    return render_patched(docs, patch)


def render_patched(docs: list[dict[str, Any]], patch: dict[str, Any]) -> str:
    if patch:
        docs = apply(docs, [patch_set("test", [], [yaml.safe_dump(patch)])])
    return encode(docs)


async def test_upgrade_reboots_into_the_new_version(bundle: SecretsBundle, api: TalosApi) -> None:
    async with FakeTalosNode(identity(bundle), address=HOST, machine_type="worker") as n:
        booted = await api.boot_time(HOST, n.port)
        await api.upgrade(HOST, n.port, image="ghcr.io/siderolabs/installer:v1.11.7")
        assert n.upgrade_requests == [
            UpgradeCall("ghcr.io/siderolabs/installer:v1.11.7", True, False, False)
        ]
        await eventually(lambda: n.serving and n.talos_version == "v1.11.7")
        assert await api.version(HOST, n.port) == "v1.11.7"
        assert await api.boot_time(HOST, n.port) > booted
        assert n.upgrades == ["ghcr.io/siderolabs/installer:v1.11.7"]


async def test_a_second_upgrade_during_the_first_is_acknowledged_and_ignored(
    bundle: SecretsBundle, api: TalosApi
) -> None:
    async with FakeTalosNode(
        identity(bundle), address=HOST, machine_type="worker", install_seconds=1
    ) as n:
        image = "ghcr.io/siderolabs/installer:v1.11.7"
        await api.upgrade(HOST, n.port, image=image)
        await api.upgrade(HOST, n.port, image=image)
        await eventually(lambda: n.serving and n.talos_version == "v1.11.7", timeout=10)
        assert len(n.upgrade_requests) == 2 and n.upgrades == [image], "installed once"


async def test_an_image_that_does_not_pull_is_refused(api: TalosApi, node: FakeTalosNode) -> None:
    node.refused_images["bad:v1"] = "not found"
    with pytest.raises(RequestFailed) as caught:
        await api.upgrade(HOST, node.port, image="bad:v1")
    assert "error validating installer image 'bad:v1': not found" in caught.value.message
    assert node.upgrades == [] and not node.busy


async def test_a_failed_install_comes_back_on_the_old_version(
    bundle: SecretsBundle, api: TalosApi
) -> None:
    async with FakeTalosNode(identity(bundle), address=HOST, machine_type="worker") as n:
        booted = n.boot_time
        n.failing_images.add("broken:v1.11.7")
        await api.upgrade(HOST, n.port, image="broken:v1.11.7")
        await eventually(lambda: n.serving and n.boot_time > booted)
        assert await api.version(HOST, n.port) == "v1.11.6"


async def test_a_control_plane_upgrade_needs_a_healthy_etcd_that_keeps_quorum(
    bundle: SecretsBundle, api: TalosApi
) -> None:
    etcd = FakeEtcd()
    nodes = [
        FakeTalosNode(identity(bundle, f"cp-{i}"), address=HOST, hostname=f"cp-{i}", etcd=etcd)
        for i in range(3)
    ]
    for n in nodes:
        await n.start()
    try:
        await api.bootstrap(HOST, nodes[0].port)
        assert [m.hostname for m in await api.etcd_members(HOST, nodes[1].port)] == [
            "cp-0",
            "cp-1",
            "cp-2",
        ]
        nodes[2].unhealthy.add("etcd")
        with pytest.raises(RequestFailed) as caught:
            await api.upgrade(HOST, nodes[0].port, image="installer:v1.11.7")
        assert "is not healthy; all members must be healthy" in caught.value.message
        status = await api.etcd_status(HOST, nodes[2].port)
        assert status.errors and status.leader == etcd.members()[0][0]
        nodes[2].unhealthy.clear()
        await api.reset(HOST, nodes[2].port, graceful=True, reboot=False)
        await eventually(lambda: len(etcd.members()) == 2)
        with pytest.raises(RequestFailed) as caught:
            await api.upgrade(HOST, nodes[0].port, image="installer:v1.11.7")
        assert "etcd member count(2) is insufficient to maintain quorum" in caught.value.message
        assert all(n.upgrades == [] for n in nodes)
    finally:
        for n in nodes:
            await n.close()


async def test_only_one_control_plane_upgrades_at_a_time(
    bundle: SecretsBundle, api: TalosApi
) -> None:
    etcd = FakeEtcd()
    nodes = [
        FakeTalosNode(identity(bundle, f"cp-{i}"), address=HOST, etcd=etcd, install_seconds=1)
        for i in range(3)
    ]
    for n in nodes:
        await n.start()
    try:
        await api.bootstrap(HOST, nodes[0].port)
        await api.upgrade(HOST, nodes[0].port, image="installer:v1.11.7")
        with pytest.raises(RequestFailed) as caught:
            await api.upgrade(HOST, nodes[1].port, image="installer:v1.11.7")
        assert "failed to acquire upgrade lock" in caught.value.message
        await eventually(lambda: nodes[0].serving and nodes[0].talos_version == "v1.11.7")
        await api.upgrade(HOST, nodes[1].port, image="installer:v1.11.7")
    finally:
        for n in nodes:
            await n.close()


async def test_etcd_answers_only_on_control_planes_that_run_it(
    api: TalosApi, node: FakeTalosNode, worker: FakeTalosNode
) -> None:
    with pytest.raises(NotReady) as not_yet:
        await api.etcd_members(HOST, node.port)
    assert not_yet.value.code == "UNAVAILABLE"
    with pytest.raises(RequestFailed) as never:
        await api.etcd_status(HOST, worker.port)
    assert never.value.code == "UNIMPLEMENTED"
    await api.bootstrap(HOST, node.port)
    status = await api.etcd_status(HOST, node.port)
    assert status.errors == () and status.member_id == status.leader != 0


async def test_services_report_their_health(api: TalosApi, node: FakeTalosNode) -> None:
    before = {s.id: s for s in await api.services(HOST, node.port)}
    assert before["etcd"].state == "Preparing" and before["etcd"].healthy is None
    await api.bootstrap(HOST, node.port)
    node.unhealthy.add("kubelet")
    after = {s.id: s for s in await api.services(HOST, node.port)}
    assert after["etcd"].healthy is True and after["apid"].healthy is True
    assert after["kubelet"].healthy is False and "not healthy" in after["kubelet"].message


async def test_apply_in_place_when_talos_allows_it(bundle: SecretsBundle, api: TalosApi) -> None:
    running = config(bundle)
    async with FakeTalosNode(identity(bundle), address=HOST, config=running) as n:
        booted = n.boot_time
        newer = config(bundle, machine={"kubelet": {"image": "ghcr.io/siderolabs/kubelet:v1.34.2"}})
        dry = await api.apply_configuration(HOST, n.port, config=newer, mode="auto", dry_run=True)
        assert dry.mode == "no-reboot" and "Dry run summary" in dry.details
        assert n.config == running
        applied = await api.apply_configuration(HOST, n.port, config=newer, mode="no-reboot")
        assert applied.mode == "no-reboot"
        assert n.config == n.staged == newer and n.boot_time == booted
        assert [c.applied for c in n.apply_requests] == ["NO_REBOOT", "NO_REBOOT"]


async def test_a_change_talos_cannot_make_in_place_reboots(
    bundle: SecretsBundle, api: TalosApi
) -> None:
    running = config(bundle)
    async with FakeTalosNode(identity(bundle), address=HOST, config=running) as n:
        booted = n.boot_time
        newer = config(bundle, machine={"env": {"HTTP_PROXY": "http://proxy:3128"}})
        with pytest.raises(RequestFailed) as refused:
            await api.apply_configuration(HOST, n.port, config=newer, mode="no-reboot")
        assert refused.value.code == "INVALID_ARGUMENT"
        assert "can't be applied in immediate mode: machine.env" in refused.value.message
        applied = await api.apply_configuration(HOST, n.port, config=newer, mode="auto")
        assert applied.mode == "reboot" and "machine.env" in applied.details
        await eventually(lambda: n.serving and n.boot_time > booted)
        assert n.config == newer
        assert n.apply_requests[-1] == ApplyCall("AUTO", "REBOOT", False, newer)


async def test_a_config_without_v1alpha1_is_invalid(api: TalosApi, node: FakeTalosNode) -> None:
    with pytest.raises(RequestFailed) as caught:
        await api.apply_configuration(
            HOST, node.port, config="apiVersion: v1alpha1\nkind: SideroLinkConfig\n", mode="auto"
        )
    assert caught.value.code == "INVALID_ARGUMENT"
    assert node.apply_requests == []
