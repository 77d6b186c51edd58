"""The lab's TLS: one CA per lab and a serving certificate for its Redfish BMCs.

The Redfish BMCs all listen on 127.0.0.1, so one certificate (for 127.0.0.1 and localhost)
serves them all. The CA certificate goes into each Redfish server's BMC Secret as
``ca.crt``, so Arges verifies the BMCs as it would a real site's, against the CA that signed
them. Keys are ECDSA P-256; files are written under ``LAB_DIR/tls``, the key with mode 0600.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from arges import certs

VALID = dt.timedelta(days=30)
"""A lab lives for hours; a month is plenty and never near expiry."""


@dataclass(frozen=True)
class TlsFiles:
    """The PEM files of a lab's TLS."""

    ca: Path
    cert: Path
    key: Path


def files(directory: Path) -> TlsFiles:
    """Where the files of the TLS in ``directory`` are (they may not exist yet)."""
    return TlsFiles(directory / "ca.crt", directory / "bmc.crt", directory / "bmc.key")


def create(directory: Path, hosts: tuple[str, ...] = ("127.0.0.1", "localhost")) -> TlsFiles:
    """A new CA and a serving certificate for ``hosts`` (IP addresses or DNS names), written
    to ``directory``."""
    now = dt.datetime.now(dt.UTC)
    not_before, not_after = now - dt.timedelta(minutes=5), now + VALID
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "arges-lab-bmc-ca")])
    ca = certs.issue(
        ca_name,
        ca_key.public_key(),
        ca_key,
        not_before=not_before,
        not_after=not_after,
        ca=True,
        path_length=0,
        usages=("digitalSignature", "keyCertSign", "cRLSign"),
        subject_key_id=x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = certs.issue(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "arges-lab-bmc")]),
        key.public_key(),
        ca_key,
        issuer=ca_name,
        not_before=not_before,
        not_after=not_after,
        ca=False,
        usages=("digitalSignature",),
        extended_usages=[ExtendedKeyUsageOID.SERVER_AUTH],
        sans=certs.alt_names(hosts),
        authority=ca_key.public_key(),
    )
    found = files(directory)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    found.ca.write_bytes(certs.certificate_pem(ca))
    found.cert.write_bytes(certs.certificate_pem(cert))
    fd = os.open(found.key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(certs.pkcs8_pem(key))
    return found
