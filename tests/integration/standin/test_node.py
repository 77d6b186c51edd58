"""The lab's stand-in, on the loopback: what it makes of rendered machine configs, a worker
getting its apid certificate from a control plane's trustd with the machine token, and both
answering Arges' Talos API client with the cluster's admin credentials."""

from __future__ import annotations

import base64
import socket

import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import NameOID
from grpclib.exceptions import GRPCError

from arges.lab.standin.node import admin_kubeconfig, facts, identity
from arges.talos import secrets
from arges.talos.api import TalosApi
from arges.talos.configgen import ClusterInput
from arges.talos.fakeapi import FakeTalosNode
from arges.talos.faketrustd import FakeTrustd, request_identity
from arges.talos.patches import patch_set
from arges.talos.render import render
from arges.talos.talosconfig import credentials, talosconfig

CP, WORKER = "127.0.0.1", "127.0.0.2"
VIP = "machine:\n  network:\n    interfaces:\n      - deviceSelector: {physical: true}\n        vip: {ip: 127.0.0.1}\n"


def free_port(address: str) -> int:
    with socket.socket() as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def bundle() -> secrets.SecretsBundle:
    return secrets.generate()


def configs(bundle: secrets.SecretsBundle) -> tuple[str, str]:
    spec = ClusterInput(
        "lab",
        f"https://{CP}:6443",
        install_image="ghcr.io/siderolabs/installer:v1.11.5",
    )
    vip = patch_set("pool", [], [VIP])
    return render(bundle, "controlplane", spec, [vip]), render(bundle, "worker", spec)


def test_the_facts_of_a_config(bundle: secrets.SecretsBundle) -> None:
    cp, worker = configs(bundle)
    mine = facts(cp, [CP])
    assert (mine.machine_type, mine.hostname, mine.talos_version) == (
        "controlplane",
        "talos-127-0-0-1",
        "v1.11.5",
    )
    assert mine.vips == (CP,) and mine.endpoint_host == CP and mine.os_ca.key
    theirs = facts(worker, [WORKER])
    assert theirs.machine_type == "worker" and theirs.os_ca.key == b"" and theirs.vips == ()
    assert theirs.token == mine.token == bundle.trustd_token


def test_the_admin_kubeconfig_is_signed_by_the_clusters_kubernetes_ca(
    bundle: secrets.SecretsBundle,
) -> None:
    doc = yaml.safe_load(admin_kubeconfig(facts(configs(bundle)[0], [CP])))
    assert doc["clusters"][0]["cluster"]["server"] == f"https://{CP}:6443"
    assert base64.b64decode(doc["clusters"][0]["cluster"]["certificate-authority-data"]) == (
        bundle.k8s.crt
    )
    cert = x509.load_pem_x509_certificate(
        base64.b64decode(doc["users"][0]["user"]["client-certificate-data"])
    )
    cert.verify_directly_issued_by(bundle.k8s.certificate())
    org = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value
    assert (org, doc["current-context"]) == ("system:masters", "admin@lab")


async def test_a_worker_gets_its_certificate_from_the_control_planes_trustd(
    bundle: secrets.SecretsBundle,
) -> None:
    cp_config, worker_config = configs(bundle)
    cp, worker = facts(cp_config, [CP]), facts(worker_config, [WORKER])
    trustd_port = free_port(CP)
    cp_identity = await identity(cp, trustd_port=trustd_port)
    trustd = FakeTrustd(cp_identity, cp.os_ca, cp.token, address=CP, port=trustd_port)
    await trustd.start()
    try:
        with pytest.raises(GRPCError):
            await request_identity(CP, cp.os_ca.crt, "wrong.token", [WORKER], "w", port=trustd_port)
        worker_identity = await identity(worker, trustd_port=trustd_port)
    finally:
        await trustd.stop()
    cert = x509.load_pem_x509_certificate(worker_identity.crt)
    cert.verify_directly_issued_by(bundle.os.certificate())
    api = TalosApi(credentials(talosconfig(bundle, "lab")), timeout=5)
    apid_port = free_port(CP)
    for address, node, ident in ((CP, cp, cp_identity), (WORKER, worker, worker_identity)):
        async with FakeTalosNode(
            ident,
            address=address,
            port=apid_port,
            machine_type=node.machine_type,
            talos_version=node.talos_version,
        ):
            assert await api.version(address, apid_port) == "v1.11.5"
