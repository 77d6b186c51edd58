"""X.509 certificates and private keys, built one way for every issuer in Arges.

The API server's CA and serving certificate (:mod:`arges.apiserver.pki`), a Talos cluster's
CAs (:mod:`arges.talos.secrets`), the Talos API's client and server certificates
(:mod:`arges.talos.talosconfig`), a Constellation's Cilium CA
(:mod:`arges.metal.addons.cilium`) and the lab's BMC CA (:mod:`arges.lab.tls`) differ only in
the values below, so each states those values and :func:`issue` builds the certificate on
`cryptography <https://cryptography.io>`_.

What :func:`issue` writes, in this order (RFC 5280 §4.2 names): basicConstraints (critical,
when ``ca`` is not None), keyUsage (critical), extKeyUsage (when any), subjectAltName (when
any), subjectKeyIdentifier (when given), authorityKeyIdentifier (from the issuer's public
key, when given). It signs with SHA-256, except Ed25519 keys, which sign without a separate
digest (RFC 8410).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Iterable, Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificateIssuerPublicKeyTypes,
    CertificatePublicKeyTypes,
    PrivateKeyTypes,
)

KEY_USAGES = (
    "digitalSignature",
    "contentCommitment",
    "keyEncipherment",
    "dataEncipherment",
    "keyAgreement",
    "keyCertSign",
    "cRLSign",
    "encipherOnly",
    "decipherOnly",
)
"""The key usage bits by their RFC 5280 §4.2.1.3 names."""


def key_usage(usages: Iterable[str]) -> x509.KeyUsage:
    """The keyUsage extension with exactly ``usages`` (names from :data:`KEY_USAGES`) set.

    Raises:
        ValueError: for a name that is not a key usage.
    """
    wanted = set(usages)
    unknown = wanted - set(KEY_USAGES)
    if unknown:
        raise ValueError(f"unknown key usage(s): {', '.join(sorted(unknown))}")
    return x509.KeyUsage(
        digital_signature="digitalSignature" in wanted,
        content_commitment="contentCommitment" in wanted,
        key_encipherment="keyEncipherment" in wanted,
        data_encipherment="dataEncipherment" in wanted,
        key_agreement="keyAgreement" in wanted,
        key_cert_sign="keyCertSign" in wanted,
        crl_sign="cRLSign" in wanted,
        encipher_only="encipherOnly" in wanted,
        decipher_only="decipherOnly" in wanted,
    )


def alt_names(hosts: Iterable[str]) -> list[x509.GeneralName]:
    """Subject alternative names for ``hosts``: an iPAddress for each IP address, a dNSName
    for anything else, in the given order."""
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def issue(
    subject: x509.Name,
    public_key: CertificatePublicKeyTypes,
    signer: CertificateIssuerPrivateKeyTypes,
    *,
    not_before: dt.datetime,
    not_after: dt.datetime,
    usages: Iterable[str],
    issuer: x509.Name | None = None,
    serial: int | None = None,
    ca: bool | None = None,
    path_length: int | None = None,
    extended_usages: Sequence[x509.ObjectIdentifier] = (),
    sans: Sequence[x509.GeneralName] = (),
    subject_key_id: x509.SubjectKeyIdentifier | None = None,
    authority: CertificateIssuerPublicKeyTypes | None = None,
) -> x509.Certificate:
    """A certificate for ``public_key`` named ``subject``, signed by ``signer``.

    ``issuer`` defaults to ``subject`` (self-signed); ``serial`` to a random positive
    159-bit number. ``ca`` True or False writes basicConstraints (with ``path_length`` for
    a CA); None leaves the extension out. ``usages`` are key usage names
    (:data:`KEY_USAGES`). ``authority`` is the issuer's public key, for the
    authorityKeyIdentifier. Times are aware datetimes (UTC).

    Raises:
        ValueError: for an unknown key usage or a certificate cryptography refuses.
    """
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject if issuer is None else issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number() if serial is None else serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )
    if ca is not None:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=ca, path_length=path_length if ca else None), critical=True
        )
    builder = builder.add_extension(key_usage(usages), critical=True)
    if extended_usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(extended_usages), critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if subject_key_id is not None:
        builder = builder.add_extension(subject_key_id, critical=False)
    if authority is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(authority), critical=False
        )
    algorithm = None if isinstance(signer, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(signer, algorithm)


def certificate_pem(cert: x509.Certificate) -> bytes:
    """The certificate as PEM (``CERTIFICATE``)."""
    return cert.public_bytes(serialization.Encoding.PEM)


def pkcs8_pem(key: PrivateKeyTypes) -> bytes:
    """The key as unencrypted PKCS#8 PEM (``PRIVATE KEY``)."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def traditional_pem(key: PrivateKeyTypes) -> bytes:
    """The key in its algorithm's own unencrypted PEM: SEC1 ``EC PRIVATE KEY`` for ECDSA,
    PKCS#1 ``RSA PRIVATE KEY`` for RSA (what Kubernetes and Talos tooling write)."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
