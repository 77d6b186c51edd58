"""The one X.509 builder: what each issuer's values put into a certificate."""

from __future__ import annotations

import datetime as dt
import ipaddress
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID

from arges import certs

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
EC = ec.generate_private_key(ec.SECP256R1())
ED = ed25519.Ed25519PrivateKey.generate()
LEAF = ec.generate_private_key(ec.SECP256R1())
CA_NAME = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-ca")])
LEAF_NAME = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "os:admin")])


def ext(cert: x509.Certificate) -> list[tuple[str, bool]]:
    return [(e.oid.dotted_string, e.critical) for e in cert.extensions]


BC, KU, EKU = (
    ExtensionOID.BASIC_CONSTRAINTS,
    ExtensionOID.KEY_USAGE,
    ExtensionOID.EXTENDED_KEY_USAGE,
)
SAN, SKI, AKI = (
    ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
    ExtensionOID.SUBJECT_KEY_IDENTIFIER,
    ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
)

CASES: list[tuple[str, dict[str, Any], list[tuple[x509.ObjectIdentifier, bool]], str | None]] = [
    (
        "API server CA: self-signed, CA, certificate and CRL signing, hashed key id",
        {
            "subject": CA_NAME,
            "public_key": EC.public_key(),
            "signer": EC,
            "ca": True,
            "usages": ("digitalSignature", "keyCertSign", "cRLSign"),
            "subject_key_id": x509.SubjectKeyIdentifier.from_public_key(EC.public_key()),
        },
        [(BC, True), (KU, True), (SKI, False)],
        "sha256",
    ),
    (
        "serving certificate: not a CA, serverAuth, names, authority key id",
        {
            "subject": LEAF_NAME,
            "public_key": LEAF.public_key(),
            "signer": EC,
            "issuer": CA_NAME,
            "ca": False,
            "usages": ("digitalSignature",),
            "extended_usages": [ExtendedKeyUsageOID.SERVER_AUTH],
            "sans": certs.alt_names(["localhost", "10.0.0.1"]),
            "authority": EC.public_key(),
        },
        [(BC, True), (KU, True), (EKU, False), (SAN, False), (AKI, False)],
        "sha256",
    ),
    (
        "Talos API CA: Ed25519 signs without a digest",
        {
            "subject": CA_NAME,
            "public_key": ED.public_key(),
            "signer": ED,
            "serial": 7,
            "ca": True,
            "usages": ("digitalSignature", "keyCertSign"),
            "extended_usages": [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
            "subject_key_id": x509.SubjectKeyIdentifier(b"\x01" * 20),
        },
        [(BC, True), (KU, True), (EKU, False), (SKI, False)],
        None,
    ),
    (
        "Talos client certificate: no basicConstraints at all",
        {
            "subject": LEAF_NAME,
            "public_key": LEAF.public_key(),
            "signer": ED,
            "issuer": CA_NAME,
            "usages": ("digitalSignature",),
            "extended_usages": [ExtendedKeyUsageOID.CLIENT_AUTH],
        },
        [(KU, True), (EKU, False)],
        None,
    ),
]


@pytest.mark.parametrize(("why", "args", "extensions", "digest"), CASES, ids=[c[0] for c in CASES])
def test_issue(
    why: str,
    args: dict[str, Any],
    extensions: list[tuple[x509.ObjectIdentifier, bool]],
    digest: str | None,
) -> None:
    cert = certs.issue(**args, not_before=NOW, not_after=NOW + dt.timedelta(days=1))
    assert ext(cert) == [(oid.dotted_string, critical) for oid, critical in extensions]
    assert cert.subject == args["subject"]
    assert cert.issuer == args.get("issuer", args["subject"])
    assert cert.not_valid_before_utc == NOW
    assert cert.not_valid_after_utc == NOW + dt.timedelta(days=1)
    assert (cert.signature_hash_algorithm.name if cert.signature_hash_algorithm else None) == digest
    if "serial" in args:
        assert cert.serial_number == args["serial"]
    else:
        assert cert.serial_number > 2**64
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature
    assert usage.key_cert_sign == ("keyCertSign" in args["usages"])
    assert usage.crl_sign == ("cRLSign" in args["usages"])
    assert not usage.key_encipherment
    if args.get("ca"):
        basic = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        assert basic.ca and basic.path_length is None
    # The signature verifies with the signer's public key.
    cert.verify_directly_issued_by(
        certs.issue(
            args.get("issuer", args["subject"]),
            args["signer"].public_key(),
            args["signer"],
            not_before=NOW,
            not_after=NOW + dt.timedelta(days=1),
            ca=True,
            usages=("keyCertSign",),
        )
    )


def test_a_ca_with_a_path_length() -> None:
    cert = certs.issue(
        CA_NAME,
        EC.public_key(),
        EC,
        not_before=NOW,
        not_after=NOW + dt.timedelta(days=1),
        ca=True,
        path_length=0,
        usages=("keyCertSign",),
    )
    basic = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert basic.ca and basic.path_length == 0


def test_unknown_key_usage_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown key usage"):
        certs.key_usage(["digitalSignature", "keySign"])


def test_alt_names_keep_order_and_tell_addresses_from_names() -> None:
    assert certs.alt_names(["localhost", "::1", "10.0.0.1", "a.example"]) == [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("::1")),
        x509.IPAddress(ipaddress.ip_address("10.0.0.1")),
        x509.DNSName("a.example"),
    ]


@pytest.mark.parametrize(
    ("key", "traditional"),
    [
        (EC, b"-----BEGIN EC PRIVATE KEY-----"),
        (rsa.generate_private_key(public_exponent=65537, key_size=2048), b"-----BEGIN RSA"),
    ],
)
def test_key_pems(key: Any, traditional: bytes) -> None:
    assert certs.pkcs8_pem(key).startswith(b"-----BEGIN PRIVATE KEY-----\n")
    assert certs.traditional_pem(key).startswith(traditional)
