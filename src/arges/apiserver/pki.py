"""The API server's credentials: a CA, a serving certificate, an admin token, a kubeconfig.

Created on first start under ``DIR/pki`` and reused afterwards (private keys and the token are
written with mode 0600). The serving certificate is re-issued from the same CA when it does not
cover the addresses the server listens on or when it is within 30 days of expiry, so clients
keep trusting the server across restarts.

Keys are ECDSA P-256 (what kubeadm uses for its serving certificates); the CA is valid for ten
years, the serving certificate for one.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from arges import certs

CA_DAYS = 3650
SERVING_DAYS = 365
RENEW_BEFORE = dt.timedelta(days=30)
CONTEXT = "arges"


@dataclass(frozen=True)
class Credentials:
    """PEM files and the admin token, with their paths."""

    ca_cert: Path
    cert: Path
    key: Path
    token: str


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def _new_ca() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "arges-ca")])
    now = dt.datetime.now(dt.UTC)
    cert = certs.issue(
        name,
        key.public_key(),
        key,
        not_before=now - dt.timedelta(minutes=5),
        not_after=now + dt.timedelta(days=CA_DAYS),
        ca=True,
        usages=("digitalSignature", "keyCertSign", "cRLSign"),
        subject_key_id=x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
    )
    return cert, key


def _sans(hosts: list[str]) -> list[x509.GeneralName]:
    return certs.alt_names(dict.fromkeys(["localhost", "127.0.0.1", "::1", *hosts]))


def _new_serving(
    ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, hosts: list[str]
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = certs.issue(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "arges-apiserver")]),
        key.public_key(),
        ca_key,
        issuer=ca.subject,
        not_before=now - dt.timedelta(minutes=5),
        not_after=now + dt.timedelta(days=SERVING_DAYS),
        ca=False,
        usages=("digitalSignature",),
        extended_usages=[ExtendedKeyUsageOID.SERVER_AUTH],
        sans=_sans(hosts),
        authority=ca_key.public_key(),
    )
    return cert, key


def _covers(cert: x509.Certificate, hosts: list[str]) -> bool:
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    present = {str(n.value) for n in sans}
    wanted = {str(n.value) for n in _sans(hosts)}
    fresh = cert.not_valid_after_utc - dt.datetime.now(dt.UTC) > RENEW_BEFORE
    return wanted <= present and fresh


def ensure_credentials(data_dir: Path, hosts: list[str]) -> Credentials:
    """Load the credentials under ``data_dir/pki``, creating what is missing.

    ``hosts`` are the names and addresses the serving certificate must cover (localhost,
    127.0.0.1 and ::1 are always included).
    """
    pki = data_dir / "pki"
    pki.mkdir(mode=0o700, parents=True, exist_ok=True)
    pki.chmod(0o700)
    ca_path, ca_key_path = pki / "ca.crt", pki / "ca.key"
    cert_path, key_path = pki / "apiserver.crt", pki / "apiserver.key"
    token_path = pki / "admin.token"
    if ca_path.exists() and ca_key_path.exists():
        ca = x509.load_pem_x509_certificate(ca_path.read_bytes())
        loaded = serialization.load_pem_private_key(ca_key_path.read_bytes(), password=None)
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{ca_key_path} is not an ECDSA key")
        ca_key = loaded
    else:
        ca, ca_key = _new_ca()
        _write_private(ca_key_path, certs.pkcs8_pem(ca_key))
        _write_private(ca_path, certs.certificate_pem(ca))
        cert_path.unlink(missing_ok=True)
    reissue = True
    if cert_path.exists() and key_path.exists():
        reissue = not _covers(x509.load_pem_x509_certificate(cert_path.read_bytes()), hosts)
    if reissue:
        cert, key = _new_serving(ca, ca_key, hosts)
        _write_private(key_path, certs.pkcs8_pem(key))
        _write_private(cert_path, certs.certificate_pem(cert))
    if not token_path.exists():
        _write_private(token_path, secrets.token_urlsafe(32).encode())
    return Credentials(ca_path, cert_path, key_path, token_path.read_text().strip())


def kubeconfig(server_url: str, creds: Credentials) -> str:
    """A kubeconfig (context ``arges``, namespace ``default``) for the admin token."""
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": CONTEXT,
                "cluster": {
                    "server": server_url,
                    "certificate-authority-data": base64.b64encode(
                        creds.ca_cert.read_bytes()
                    ).decode(),
                },
            }
        ],
        "users": [{"name": f"{CONTEXT}-admin", "user": {"token": creds.token}}],
        "contexts": [
            {
                "name": CONTEXT,
                "context": {"cluster": CONTEXT, "user": f"{CONTEXT}-admin", "namespace": "default"},
            }
        ],
        "current-context": CONTEXT,
        "preferences": {},
    }
    return yaml.safe_dump(doc, sort_keys=False)


def write_kubeconfig(path: Path, server_url: str, creds: Credentials) -> None:
    """Write :func:`kubeconfig` to ``path`` with mode 0600 (it holds the token)."""
    _write_private(path, kubeconfig(server_url, creds).encode())
