"""TLS settings for the Talos API (apid, TCP 50000): mutual TLS under the cluster's OS CA.

As ``pkg/machinery/client`` dials it: the client verifies the server certificate against the
talosconfig CA (apid's certificate is issued by the OS CA with the node's addresses as SANs)
and presents the talosconfig certificate; apid requires a client certificate signed by the OS
CA (``reference/talos-capi.md`` §4.3). gRPC runs over HTTP/2, negotiated by ALPN ``h2``.

Python's ``ssl`` loads certificates and keys only from files and does not know Talos'
``ED25519 PRIVATE KEY`` PEM label (the payload is plain PKCS#8), so the key is relabelled
``PRIVATE KEY`` in memory and both are written to a 0600 file in a private (0700) temporary
directory, removed as soon as OpenSSL has read it.
"""

from __future__ import annotations

import os
import ssl
import tempfile
from pathlib import Path

from arges.talos.errors import InvalidSecrets
from arges.talos.secrets import ED25519_LABEL

ALPN = ["h2"]


def pkcs8_label(key: bytes) -> bytes:
    """``key`` with Talos' ``ED25519 PRIVATE KEY`` label read as the ``PRIVATE KEY`` it is."""
    return key.replace(ED25519_LABEL.encode(), b"PRIVATE KEY")


def _load_chain(ctx: ssl.SSLContext, crt: bytes, key: bytes) -> None:
    with tempfile.TemporaryDirectory(prefix="arges-talos-") as directory:
        path = Path(directory) / "identity.pem"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(crt.rstrip(b"\n") + b"\n" + pkcs8_label(key))
            ctx.load_cert_chain(path)
        finally:
            path.unlink(missing_ok=True)


def _context(purpose: int, ca: bytes, crt: bytes, key: bytes, what: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(purpose)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.verify_mode = ssl.CERT_REQUIRED
    try:
        ctx.load_verify_locations(cadata=ca.decode("ascii"))
        _load_chain(ctx, crt, key)
    except (ssl.SSLError, UnicodeDecodeError, ValueError) as exc:
        raise InvalidSecrets(f"{what}: the CA, certificate or key does not load: {exc}") from exc
    ctx.set_alpn_protocols(ALPN)
    return ctx


def client_context(ca: bytes, crt: bytes, key: bytes) -> ssl.SSLContext:
    """A client context: trusts only ``ca`` (PEM), checks the server's name or IP against its
    certificate's SANs, and presents ``crt``/``key`` (PEM, Talos' Ed25519 label accepted).

    Raises:
        InvalidSecrets: when the CA, certificate or key does not load (or do not match).
    """
    ctx = _context(ssl.PROTOCOL_TLS_CLIENT, ca, crt, key, "talosconfig")
    ctx.check_hostname = True
    return ctx


def server_context(ca: bytes, crt: bytes, key: bytes) -> ssl.SSLContext:
    """A server context as apid's: presents ``crt``/``key`` and requires a client certificate
    issued by ``ca`` (OpenSSL also checks the client certificate's clientAuth usage).

    Raises:
        InvalidSecrets: when the CA, certificate or key does not load (or do not match).
    """
    return _context(ssl.PROTOCOL_TLS_SERVER, ca, crt, key, "apid")


def token_server_context(crt: bytes, key: bytes) -> ssl.SSLContext:
    """A server context as trustd's: presents ``crt``/``key`` and asks no client certificate
    (a joining machine has none yet: it proves itself with the machine token).

    Raises:
        InvalidSecrets: when the certificate or key does not load (or do not match).
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        _load_chain(ctx, crt, key)
    except (ssl.SSLError, ValueError) as exc:
        raise InvalidSecrets(f"trustd: the certificate or key does not load: {exc}") from exc
    ctx.set_alpn_protocols(ALPN)
    return ctx


def ca_client_context(ca: bytes) -> ssl.SSLContext:
    """A client context that trusts only ``ca`` (PEM), checks the server's name or IP, and
    presents no certificate (a joining machine asking trustd for one).

    Raises:
        InvalidSecrets: when the CA does not load.
    """
    try:
        ctx = ssl.create_default_context(cadata=ca.decode("ascii"))
    except (ssl.SSLError, UnicodeDecodeError, ValueError) as exc:
        raise InvalidSecrets(f"the OS CA does not load: {exc}") from exc
    ctx.set_alpn_protocols(ALPN)
    return ctx
