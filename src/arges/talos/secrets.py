"""The secrets bundle of a Talos cluster: its identity, tokens, CAs and keys.

Generated as ``talosctl gen secrets`` does for the v1.11 contract (``reference/talos-capi.md``
§1.2, from ``pkg/machinery/config/generate/secrets``):

- cluster id: base64url of 32 random bytes (padded); cluster secret and secretbox key: base64
  of 32 random bytes; bootstrap and trustd tokens: ``[0-9a-z]{6}.[0-9a-z]{16}``;
- CAs for etcd (``O=etcd``), Kubernetes (``O=kubernetes``) and the aggregator (empty
  subject), ECDSA P-256; the Talos API CA (``O=talos``), Ed25519; each X.509 v3, valid for
  3650 days from now, 128-bit random serial, a random 20-byte subject key identifier,
  ``CA:TRUE`` (critical), key usage digitalSignature and keyCertSign (critical), extended key
  usage serverAuth and clientAuth;
- the service-account signing key, RSA 4096 (contract > 1.6).

Keys are PEM: ECDSA as ``EC PRIVATE KEY`` (SEC1), RSA as ``RSA PRIVATE KEY`` (PKCS#1),
Ed25519 as PKCS#8 under Talos' own label ``ED25519 PRIVATE KEY``. ``secrets.yaml`` holds each
PEM base64-encoded, as talosctl writes it.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import re
import secrets
from dataclasses import dataclass
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from arges import certs
from arges.talos import documents
from arges.talos.errors import InvalidSecrets

CA_VALIDITY = dt.timedelta(hours=87600)
TOKEN_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
TOKEN_RE = re.compile(r"^[0-9a-z]{6}\.[0-9a-z]{16}$")
ED25519_LABEL = "ED25519 PRIVATE KEY"


@dataclass(frozen=True)
class CertAndKey:
    """A certificate and its private key, both PEM (the certificate absent for the SA key)."""

    crt: bytes
    key: bytes

    def certificate(self) -> x509.Certificate:
        """The parsed certificate (``crt`` is PEM)."""
        return x509.load_pem_x509_certificate(self.crt)

    def private_key(self) -> Any:
        """The key object (Talos' Ed25519 label is read as the PKCS#8 it is)."""
        pem = self.key.replace(ED25519_LABEL.encode(), b"PRIVATE KEY")
        return serialization.load_pem_private_key(pem, password=None)


@dataclass(frozen=True)
class SecretsBundle:
    """Everything secret about one cluster (see the module docstring)."""

    cluster_id: str
    cluster_secret: str
    bootstrap_token: str
    secretbox_secret: str
    trustd_token: str
    etcd: CertAndKey
    k8s: CertAndKey
    k8s_aggregator: CertAndKey
    k8s_service_account: CertAndKey
    os: CertAndKey

    def to_yaml(self) -> str:
        """``secrets.yaml`` as talosctl writes it (PEM blocks base64-encoded)."""

        def pair(ck: CertAndKey) -> dict[str, str]:
            return {"crt": _b64(ck.crt), "key": _b64(ck.key)}

        doc = {
            "cluster": {"id": self.cluster_id, "secret": self.cluster_secret},
            "secrets": {
                "bootstraptoken": self.bootstrap_token,
                "secretboxencryptionsecret": self.secretbox_secret,
            },
            "trustdinfo": {"token": self.trustd_token},
            "certs": {
                "etcd": pair(self.etcd),
                "k8s": pair(self.k8s),
                "k8saggregator": pair(self.k8s_aggregator),
                "k8sserviceaccount": {"key": _b64(self.k8s_service_account.key)},
                "os": pair(self.os),
            },
        }
        return documents.dump(doc)

    @classmethod
    def from_yaml(cls, text: str) -> SecretsBundle:
        """Parse ``secrets.yaml`` (talosctl's or ours).

        Raises:
            InvalidSecrets: naming the missing or malformed field.
        """
        try:
            doc = documents.load(text)
        except yaml.YAMLError as exc:
            raise InvalidSecrets(f"secrets are not YAML: {exc}") from exc

        def get(*path: str) -> str:
            node: Any = doc
            for key in path:
                if not isinstance(node, dict) or key not in node or node[key] in (None, ""):
                    raise InvalidSecrets(f"secrets: {'.'.join(path)} is required")
                node = node[key]
            return str(node)

        def pair(name: str, cert: bool = True) -> CertAndKey:
            try:
                crt = base64.b64decode(get("certs", name, "crt")) if cert else b""
                return CertAndKey(crt, base64.b64decode(get("certs", name, "key")))
            except ValueError as exc:
                raise InvalidSecrets(f"secrets: certs.{name} is not base64: {exc}") from exc

        if isinstance(doc, dict) and (doc.get("secrets") or {}).get("aescbcencryptionsecret"):
            raise InvalidSecrets("secrets with aescbcencryptionsecret belong to contracts <= v1.2")
        bundle = cls(
            cluster_id=get("cluster", "id"),
            cluster_secret=get("cluster", "secret"),
            bootstrap_token=get("secrets", "bootstraptoken"),
            secretbox_secret=get("secrets", "secretboxencryptionsecret"),
            trustd_token=get("trustdinfo", "token"),
            etcd=pair("etcd"),
            k8s=pair("k8s"),
            k8s_aggregator=pair("k8saggregator"),
            k8s_service_account=pair("k8sserviceaccount", cert=False),
            os=pair("os"),
        )
        for token, field in (
            (bundle.bootstrap_token, "secrets.bootstraptoken"),
            (bundle.trustd_token, "trustdinfo.token"),
        ):
            if not TOKEN_RE.match(token):
                raise InvalidSecrets(f"secrets: {field} must match [0-9a-z]{{6}}.[0-9a-z]{{16}}")
        return bundle


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def token() -> str:
    """A kubeadm-format bootstrap token, ``[0-9a-z]{6}.[0-9a-z]{16}``, by rejection sampling
    as Talos does (bytes >= 252 are drawn again so every character is equally likely)."""

    def part(n: int) -> str:
        out: list[str] = []
        while len(out) < n:
            for b in os.urandom(n):
                if b < 252 and len(out) < n:
                    out.append(TOKEN_ALPHABET[b % 36])
        return "".join(out)

    return f"{part(6)}.{part(16)}"


def _ca(
    key: CertificateIssuerPrivateKeyTypes, organization: str | None, now: dt.datetime
) -> x509.Certificate:
    name = x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization)] if organization else []
    )
    return certs.issue(
        name,
        key.public_key(),
        key,
        serial=secrets.randbits(128) or 1,
        not_before=now,
        not_after=now + CA_VALIDITY,
        ca=True,
        usages=("digitalSignature", "keyCertSign"),
        extended_usages=[ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
        subject_key_id=x509.SubjectKeyIdentifier(os.urandom(20)),
    )


def ec_key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """``EC PRIVATE KEY`` (SEC1) PEM."""
    return certs.traditional_pem(key)


def ed25519_key_pem(key: ed25519.Ed25519PrivateKey) -> bytes:
    """PKCS#8 PEM under Talos' ``ED25519 PRIVATE KEY`` label."""
    return certs.pkcs8_pem(key).replace(b"PRIVATE KEY", ED25519_LABEL.encode())


def _ecdsa_ca(organization: str | None, now: dt.datetime) -> CertAndKey:
    key = ec.generate_private_key(ec.SECP256R1())
    return CertAndKey(certs.certificate_pem(_ca(key, organization, now)), ec_key_pem(key))


def generate(now: dt.datetime | None = None) -> SecretsBundle:
    """A fresh secrets bundle (see the module docstring)."""
    now = (now or dt.datetime.now(dt.UTC)).replace(microsecond=0)
    os_key = ed25519.Ed25519PrivateKey.generate()
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=4096)
    return SecretsBundle(
        cluster_id=base64.urlsafe_b64encode(os.urandom(32)).decode(),
        cluster_secret=base64.b64encode(os.urandom(32)).decode(),
        bootstrap_token=token(),
        secretbox_secret=base64.b64encode(os.urandom(32)).decode(),
        trustd_token=token(),
        etcd=_ecdsa_ca("etcd", now),
        k8s=_ecdsa_ca("kubernetes", now),
        k8s_aggregator=_ecdsa_ca(None, now),
        k8s_service_account=CertAndKey(b"", certs.traditional_pem(sa_key)),
        os=CertAndKey(certs.certificate_pem(_ca(os_key, "talos", now)), ed25519_key_pem(os_key)),
    )
