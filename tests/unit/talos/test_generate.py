"""Configs, secrets and talosconfig as talosctl generates them (reference/talos-capi.md §1)."""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from arges.cli.main import main
from arges.talos import secrets as talos_secrets
from arges.talos.configgen import ClusterInput, machine_config
from arges.talos.documents import decode, encode
from arges.talos.errors import InvalidInput, InvalidSecrets, UnsupportedVersion
from arges.talos.render import render
from arges.talos.talosconfig import admin_certificate, credentials, talosconfig

SCHEMA = Path(__file__).parents[4] / "shared" / "talos" / "config.schema.v1.11.json"
SPEC = ClusterInput("demo", "https://10.5.0.10:6443")


@pytest.fixture(scope="module")
def bundle() -> talos_secrets.SecretsBundle:
    return talos_secrets.generate()


@pytest.fixture(scope="module")
def validator():
    if not SCHEMA.exists():
        pytest.skip(f"Talos' schema is not at {SCHEMA} (shared/ is absent)")
    import jsonschema

    return jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text()))


@pytest.mark.parametrize("role", ["controlplane", "worker"])
def test_configs_validate_against_the_v1_11_schema(bundle, validator, role) -> None:
    (doc,) = decode(render(bundle, role, SPEC))
    assert doc.pop("persist") is True, "talosctl always writes persist: true (not in the schema)"
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(doc)]
    assert errors == []
    assert doc["machine"]["type"] == role


def test_worker_and_controlplane_differ_as_talosctl_makes_them(bundle) -> None:
    cp = machine_config(bundle, "controlplane", SPEC)
    worker = machine_config(bundle, "worker", SPEC)
    assert cp["machine"]["ca"]["key"] and worker["machine"]["ca"]["key"] == ""
    assert cp["cluster"]["ca"]["key"] and worker["cluster"]["ca"]["key"] == ""
    for absent in (
        "apiServer",
        "etcd",
        "aggregatorCA",
        "serviceAccount",
        "secretboxEncryptionSecret",
    ):
        assert absent in cp["cluster"] and absent not in worker["cluster"]
    assert "nodeLabels" in cp["machine"] and "nodeLabels" not in worker["machine"]
    assert cp["cluster"]["apiServer"]["certSANs"] == ["10.5.0.10"]
    assert cp["cluster"]["controlPlane"]["endpoint"] == "https://10.5.0.10:6443"
    assert cp["machine"]["install"] == {
        "disk": "/dev/sda",
        "image": "ghcr.io/siderolabs/installer:v1.11.6",
        "wipe": False,
    }
    assert cp["machine"]["kubelet"]["image"] == "ghcr.io/siderolabs/kubelet:v1.34.1"
    assert '        key: ""\n' in encode([worker]), "an empty key is written as yaml.v3 does"


def test_ipv6_endpoints_get_ipv6_networks(bundle) -> None:
    cp = machine_config(bundle, "controlplane", ClusterInput("v6", "https://[fd00::10]:6443"))
    assert cp["cluster"]["network"]["podSubnets"] == ["fc00:db8:10::/56"]


def test_certificates_chain_and_carry_talos_attributes(bundle) -> None:
    now = dt.datetime.now(dt.UTC)
    expected = {
        "etcd": ("etcd", ec.EllipticCurvePrivateKey),
        "k8s": ("kubernetes", ec.EllipticCurvePrivateKey),
        "k8s_aggregator": (None, ec.EllipticCurvePrivateKey),
        "os": ("talos", ed25519.Ed25519PrivateKey),
    }
    for field, (org, key_type) in expected.items():
        pair = getattr(bundle, field)
        cert, key = pair.certificate(), pair.private_key()
        assert isinstance(key, key_type)
        cert.verify_directly_issued_by(cert)
        orgs = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
        assert orgs == ([org] if org else []) and (org or len(cert.subject) == 0)
        assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
        assert ku.critical and ku.value.digital_signature and ku.value.key_cert_sign
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
        assert (
            len(cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest)
            == 20
        )
        lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
        assert lifetime == dt.timedelta(days=3650)
        assert abs(cert.not_valid_before_utc - now) < dt.timedelta(minutes=5)
    assert b"EC PRIVATE KEY" in bundle.etcd.key
    assert b"BEGIN ED25519 PRIVATE KEY" in bundle.os.key
    sa = bundle.k8s_service_account.private_key()
    assert isinstance(sa, rsa.RSAPrivateKey) and sa.key_size == 4096
    assert b"BEGIN RSA PRIVATE KEY" in bundle.k8s_service_account.key


def test_tokens_ids_and_freshness() -> None:
    a, b = talos_secrets.generate(), talos_secrets.generate()
    for tok in (a.bootstrap_token, a.trustd_token):
        assert re.fullmatch(r"[0-9a-z]{6}\.[0-9a-z]{16}", tok)
    assert len(base64.urlsafe_b64decode(a.cluster_id)) == 32 and a.cluster_id.endswith("=")
    assert len(base64.b64decode(a.cluster_secret)) == 32
    assert len(base64.b64decode(a.secretbox_secret)) == 32
    assert (
        a.cluster_id != b.cluster_id
        and a.os.key != b.os.key
        and a.bootstrap_token != b.bootstrap_token
    )


def test_a_bundle_gives_byte_stable_configs(bundle) -> None:
    again = talos_secrets.SecretsBundle.from_yaml(bundle.to_yaml())
    assert again == bundle
    for role in ("controlplane", "worker"):
        assert render(bundle, role, SPEC) == render(again, role, SPEC)


def test_secrets_and_talosconfig_text_is_what_pyyaml_writes(bundle) -> None:
    # Written by libyaml now: the same text as before, so a Secret written by an earlier
    # version reads the same and is not rewritten for its style.
    for text in (bundle.to_yaml(), talosconfig(bundle, "demo", ["10.5.0.10", "10.5.0.11"])):
        assert text == yaml.safe_dump(yaml.safe_load(text), sort_keys=False, indent=4)


def test_talosconfig_has_an_admin_client_certificate(bundle) -> None:
    creds = credentials(talosconfig(bundle, "demo", ["10.5.0.10"]))
    assert creds.ca == bundle.os.crt
    cert = x509.load_pem_x509_certificate(creds.crt)
    cert.verify_directly_issued_by(bundle.os.certificate())
    assert isinstance(cert.public_key(), ed25519.Ed25519PublicKey)
    assert cert.subject.rfc4514_string() == "O=os:admin"
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CLIENT_AUTH
    ]
    assert not cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == dt.timedelta(days=365)
    doc = yaml.safe_load(talosconfig(bundle, "demo"))
    assert doc["context"] == "demo" and doc["contexts"]["demo"]["endpoints"] == []
    assert admin_certificate(bundle).key != admin_certificate(bundle).key


@pytest.mark.parametrize("version", ["v1.12", "1.10", "v2.0", "latest"])
def test_unknown_versions_are_refused(bundle, version) -> None:
    with pytest.raises(UnsupportedVersion, match=r"supported: v1\.11"):
        render(bundle, "worker", ClusterInput("c", "https://e:6443", talos_version=version))
    assert machine_config(
        bundle, "worker", ClusterInput("c", "https://e:6443", talos_version="1.11.3")
    )


@pytest.mark.parametrize("endpoint", ["10.0.0.1:6443", "http://10.0.0.1:6443", "https://"])
def test_endpoints_must_be_https_urls(bundle, endpoint) -> None:
    with pytest.raises(InvalidInput, match="should be an https URL"):
        machine_config(bundle, "worker", ClusterInput("c", endpoint))


def test_bad_secrets_are_refused(bundle) -> None:
    doc = yaml.safe_load(bundle.to_yaml())
    del doc["certs"]["os"]
    with pytest.raises(InvalidSecrets, match=r"certs\.os\.crt is required"):
        talos_secrets.SecretsBundle.from_yaml(yaml.safe_dump(doc))
    doc = yaml.safe_load(bundle.to_yaml())
    doc["trustdinfo"]["token"] = "short"
    with pytest.raises(InvalidSecrets, match=r"trustdinfo\.token"):
        talos_secrets.SecretsBundle.from_yaml(yaml.safe_dump(doc))


def test_cli_writes_the_talosctl_set_and_reuses_secrets(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "out"
    result = runner.invoke(
        main,
        [
            "talos",
            "gen-config",
            "demo",
            "https://10.5.0.10:6443",
            "-o",
            str(out),
            "--config-patch-worker",
            "machine: {nodeLabels: {pool: a}}",
        ],
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "controlplane.yaml",
        "secrets.yaml",
        "talosconfig",
        "worker.yaml",
    ]
    assert oct((out / "secrets.yaml").stat().st_mode & 0o777) == "0o600"
    worker = decode((out / "worker.yaml").read_text())[0]
    assert worker["machine"]["nodeLabels"] == {"pool": "a"}
    again = tmp_path / "again"
    result = runner.invoke(
        main,
        [
            "talos",
            "gen-config",
            "demo",
            "https://10.5.0.10:6443",
            "-o",
            str(again),
            "--with-secrets",
            str(out / "secrets.yaml"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert (again / "controlplane.yaml").read_text() == (out / "controlplane.yaml").read_text()
    refused = runner.invoke(
        main, ["talos", "gen-config", "demo", "https://10.5.0.10:6443", "-o", str(out)]
    )
    assert refused.exit_code != 0 and "refusing to overwrite" in refused.output
    bad = runner.invoke(
        main,
        [
            "talos",
            "gen-config",
            "demo",
            "https://e:6443",
            "-o",
            str(tmp_path / "v"),
            "--talos-version",
            "v1.13",
        ],
    )
    assert bad.exit_code != 0 and "not supported" in bad.output
