"""``talosconfig``: the admin's credentials for a cluster's Talos API.

As ``talosctl gen config`` writes it (``reference/talos-capi.md`` §1.2, §1.5): one context
named after the cluster, with the Talos API CA and a fresh client certificate signed by it:
Ed25519 (the CA's algorithm), subject ``O=os:admin`` and nothing else, key usage
digitalSignature, extended key usage clientAuth, not a CA, valid for one year.
"""

from __future__ import annotations

import base64
import datetime as dt
import secrets
from dataclasses import dataclass

import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from arges import certs
from arges.talos import documents
from arges.talos.errors import InvalidSecrets
from arges.talos.secrets import CertAndKey, SecretsBundle, ed25519_key_pem

CLIENT_VALIDITY = dt.timedelta(hours=8760)
ADMIN_ROLE = "os:admin"


@dataclass(frozen=True)
class ClientCredentials:
    """The OS CA certificate and an admin client certificate and key, all PEM."""

    ca: bytes
    crt: bytes
    key: bytes


def os_leaf(
    ca: CertAndKey,
    subject: x509.Name,
    usages: list[x509.ObjectIdentifier],
    validity: dt.timedelta,
    *,
    sans: list[x509.GeneralName] | None = None,
    now: dt.datetime | None = None,
) -> CertAndKey:
    """A certificate signed by the Talos API (OS) CA ``ca``, as Talos issues them: a fresh
    Ed25519 key (the CA's algorithm), key usage digitalSignature only, the extended key
    ``usages``, the ``sans`` if any, no basicConstraints (so not a CA), valid for ``validity``
    from ``now``.

    Raises:
        InvalidSecrets: when the OS CA key is not Ed25519.
    """
    ca_cert = ca.certificate()
    ca_key = ca.private_key()
    if not isinstance(ca_key, ed25519.Ed25519PrivateKey):
        raise InvalidSecrets("the Talos API (os) CA key must be Ed25519")
    now = (now or dt.datetime.now(dt.UTC)).replace(microsecond=0)
    key = ed25519.Ed25519PrivateKey.generate()
    cert = certs.issue(
        subject,
        key.public_key(),
        ca_key,
        issuer=ca_cert.subject,
        serial=secrets.randbits(128) or 1,
        not_before=now,
        not_after=now + validity,
        usages=("digitalSignature",),
        extended_usages=usages,
        sans=sans or (),
    )
    return CertAndKey(certs.certificate_pem(cert), ed25519_key_pem(key))


def admin_certificate(bundle: SecretsBundle, now: dt.datetime | None = None) -> CertAndKey:
    """A client certificate for role ``os:admin`` signed by the Talos API CA.

    Raises:
        InvalidSecrets: when the bundle's OS CA key is not Ed25519.
    """
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, ADMIN_ROLE)])
    return os_leaf(bundle.os, subject, [ExtendedKeyUsageOID.CLIENT_AUTH], CLIENT_VALIDITY, now=now)


def talosconfig(
    bundle: SecretsBundle,
    context: str,
    endpoints: list[str] | None = None,
    client: CertAndKey | None = None,
) -> str:
    """The talosconfig YAML for ``context`` (a new admin certificate unless ``client``)."""
    client = client or admin_certificate(bundle)
    doc = {
        "context": context,
        "contexts": {
            context: {
                "endpoints": list(endpoints or []),
                "ca": base64.b64encode(bundle.os.crt).decode(),
                "crt": base64.b64encode(client.crt).decode(),
                "key": base64.b64encode(client.key).decode(),
            }
        },
    }
    return documents.dump(doc)


def credentials(text: str) -> ClientCredentials:
    """The CA and client certificate of a talosconfig's current context.

    Raises:
        InvalidSecrets: when the talosconfig lacks them.
    """
    try:
        doc = documents.load(text)
        ctx = doc["contexts"][doc["context"]]
        return ClientCredentials(
            base64.b64decode(ctx["ca"]), base64.b64decode(ctx["crt"]), base64.b64decode(ctx["key"])
        )
    except (yaml.YAMLError, KeyError, TypeError, ValueError) as exc:
        raise InvalidSecrets(f"not a usable talosconfig: {exc}") from exc
