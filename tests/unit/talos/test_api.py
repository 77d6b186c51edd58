"""How the Talos API client reads answers: error classes, relayed errors, the kubeconfig
archive; and the fake apid's server certificate."""

from __future__ import annotations

import gzip
import io
import ipaddress
import tarfile

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from grpclib.const import Status
from talos_linux_api.v1_6_0 import common, machine
from talos_linux_api.v1_6_0.google import rpc

from arges.talos import secrets
from arges.talos.api import _check, _extract_kubeconfig, _status_error
from arges.talos.errors import NotReady, RequestFailed
from arges.talos.fakeapi import server_certificate
from arges.talos.fakemachine import kubeconfig_archive

NODE = "10.5.0.2:50000"


def tar_gz(name: str, data: bytes) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue())


@pytest.mark.parametrize(
    ("status", "message", "expected"),
    [
        (Status.FAILED_PRECONDITION, "bootstrap is not available yet", NotReady),
        (Status.FAILED_PRECONDITION, "time is not in sync yet", NotReady),
        (Status.UNAVAILABLE, "connection error", NotReady),
        (
            Status.FAILED_PRECONDITION,
            "bootstrap can only be performed on a control plane node",
            RequestFailed,
        ),
        (Status.FAILED_PRECONDITION, "method is not supported in container mode", RequestFailed),
        (Status.PERMISSION_DENIED, "not authorized", RequestFailed),
        (Status.UNKNOWN, "failed to leave cluster", RequestFailed),
    ],
)
def test_statuses_are_classified(status: Status, message: str, expected: type) -> None:
    error = _status_error(NODE, "Bootstrap", status, message)
    assert type(error) is expected
    assert error.code == status.name
    assert str(error) == f"Bootstrap on {NODE}: {status.name}: {message}"


def test_a_relayed_node_error_raises_with_its_status() -> None:
    relayed = machine.Reset(
        metadata=common.Metadata(
            hostname="cp-1",
            error="time is not in sync yet",
            status=rpc.Status(code=Status.FAILED_PRECONDITION.value),
        )
    )
    with pytest.raises(NotReady) as caught:
        _check("10.5.0.2", 50000, "Reset", [machine.Reset(), relayed])
    assert caught.value.node == f"{NODE} (cp-1)"


def test_a_relayed_error_without_status_is_a_failure() -> None:
    relayed = machine.Reset(metadata=common.Metadata(error="boom"))
    with pytest.raises(RequestFailed) as caught:
        _check("10.5.0.2", 50000, "Reset", [relayed])
    assert caught.value.code == "UNKNOWN"


def test_answers_without_errors_pass() -> None:
    _check("10.5.0.2", 50000, "Reset", [machine.Reset(actor_id="x")])


def test_the_kubeconfig_archive_round_trips() -> None:
    assert _extract_kubeconfig(NODE, kubeconfig_archive("apiVersion: v1\n")) == "apiVersion: v1\n"
    assert _extract_kubeconfig(NODE, tar_gz("./kubeconfig", b"kind: Config\n")) == "kind: Config\n"


@pytest.mark.parametrize(
    "archive",
    [b"", b"not gzip", gzip.compress(b"not a tar"), tar_gz("other", b"x"), b"\x1f\x8b\x08garbage"],
)
def test_a_bad_kubeconfig_archive_fails_clearly(archive: bytes) -> None:
    with pytest.raises(RequestFailed) as caught:
        _extract_kubeconfig(NODE, archive)
    assert caught.value.rpc == "Kubeconfig"


def test_the_fake_server_certificate_is_apids() -> None:
    bundle = secrets.generate()
    identity = server_certificate(bundle.os, ["10.5.0.2", "cp-1.lab"], "cp-1")
    cert = identity.certificate()
    cert.verify_directly_issued_by(bundle.os.certificate())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.5.0.2")]
    assert sans.get_values_for_type(x509.DNSName) == ["cp-1.lab", "cp-1"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku
    assert identity.key.startswith(b"-----BEGIN ED25519 PRIVATE KEY-----")
