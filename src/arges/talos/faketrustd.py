"""trustd in memory, for the lab's stand-in: how a worker, which has no OS CA key, gets the
certificate its apid serves with from a control plane.

As Talos v1.11 does it (``internal/app/trustd/internal/reg/reg.go``,
``internal/app/machined/pkg/controllers/secrets/api.go``): a control plane's trustd listens
on TCP 50001 with TLS (its own certificate from the OS CA, no client certificate asked) and
answers ``SecurityService.Certificate`` when the gRPC metadata ``token`` is the cluster's
machine token (``machine.token``; PERMISSION_DENIED otherwise): it signs the CSR's public key
and names with the OS CA (serverAuth and clientAuth, one year) and answers that certificate
and the CA. The worker made the CSR for a fresh Ed25519 key with its addresses and hostname,
and checks trustd's certificate against the OS CA it has (``machine.ca.crt``).

Real workers find the control planes through the Kubernetes API or the discovery service;
the stand-in's workers ask the host of the cluster endpoint (a control plane's VIP).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import secrets

import grpclib.const
import grpclib.server
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from talos_linux_api.v1_6_0 import securityapi

from arges import certs
from arges.talos.fakeapi import SERVER_VALIDITY, Identity, bound_socket
from arges.talos.secrets import CertAndKey, ed25519_key_pem
from arges.talos.tls import ca_client_context, token_server_context

TRUSTD_PORT = 50001


def sign(ca: CertAndKey, csr_pem: bytes, now: dt.datetime | None = None) -> bytes:
    """The certificate (PEM) trustd issues for a CSR: its subject, public key and SANs, key
    usage digitalSignature, serverAuth and clientAuth, valid for a year.

    Raises:
        ValueError: the CSR does not load or its signature does not verify.
    """
    csr = x509.load_pem_x509_csr(csr_pem)
    if not csr.is_signature_valid:
        raise ValueError("the CSR's signature does not verify")
    issued = (now or dt.datetime.now(dt.UTC)).replace(microsecond=0) - dt.timedelta(minutes=1)
    try:
        sans = list(csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        sans = []
    cert = certs.issue(
        csr.subject,
        csr.public_key(),
        ca.private_key(),
        issuer=ca.certificate().subject,
        serial=secrets.randbits(128) or 1,
        not_before=issued,
        not_after=issued + SERVER_VALIDITY,
        usages=("digitalSignature",),
        extended_usages=(ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH),
        sans=sans,
    )
    return certs.certificate_pem(cert)


class _Security(securityapi.SecurityServiceBase):
    def __init__(self, ca: CertAndKey, token: str) -> None:
        self._ca = ca
        self._token = token

    async def _certificate(
        self,
        stream: grpclib.server.Stream[
            securityapi.CertificateRequest, securityapi.CertificateResponse
        ],
    ) -> None:
        # The generated handler drops the metadata; trustd's interceptor reads it.
        if dict(stream.metadata or {}).get("token") != self._token:
            raise GRPCError(Status.PERMISSION_DENIED, "not authorized")
        request = await stream.recv_message()
        assert request is not None
        try:
            crt = sign(self._ca, request.csr)
        except ValueError as exc:
            raise GRPCError(Status.INVALID_ARGUMENT, str(exc)) from exc
        await stream.send_message(securityapi.CertificateResponse(ca=self._ca.crt, crt=crt))

    def __mapping__(self) -> dict[str, grpclib.const.Handler]:
        return {
            "/securityapi.SecurityService/Certificate": grpclib.const.Handler(
                self._certificate,
                grpclib.const.Cardinality.UNARY_UNARY,
                securityapi.CertificateRequest,
                securityapi.CertificateResponse,
            )
        }


class FakeTrustd:
    """A control plane's trustd (see the module docstring): serves with ``identity`` and
    signs with the OS CA ``ca`` for callers that know ``token``."""

    def __init__(
        self,
        identity: Identity,
        ca: CertAndKey,
        token: str,
        *,
        address: str = "0.0.0.0",
        port: int = TRUSTD_PORT,
    ) -> None:
        self.address = address
        self.port = port
        self._ssl = token_server_context(identity.crt, identity.key)
        self._service = _Security(ca, token)
        self._server: grpclib.server.Server | None = None

    async def start(self) -> None:
        """Listen (port 0: any free one, then stored in :attr:`port`)."""
        sock = bound_socket(self.address, self.port)
        self.port = sock.getsockname()[1]
        self._server = grpclib.server.Server([self._service])
        await self._server.start(sock=sock, ssl=self._ssl)

    async def stop(self) -> None:
        """Stop listening."""
        if self._server is not None:
            server, self._server = self._server, None
            server.close()
            await server.wait_closed()


def csr_for(addresses: list[str], hostname: str) -> tuple[bytes, bytes]:
    """A CSR (PEM) for a fresh Ed25519 key naming ``hostname`` and ``addresses``, and the
    key (PEM, Talos' label), as a worker makes it for trustd."""
    key = ed25519.Ed25519PrivateKey.generate()
    sans: list[x509.GeneralName] = []
    for address in addresses:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(address)))
        except ValueError:
            sans.append(x509.DNSName(address))
    sans.append(x509.DNSName(hostname))
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)]))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(key, None)
    )
    return csr.public_bytes(serialization.Encoding.PEM), ed25519_key_pem(key)


async def request_identity(
    endpoint: str,
    ca: bytes,
    token: str,
    addresses: list[str],
    hostname: str,
    *,
    port: int = TRUSTD_PORT,
) -> Identity:
    """Ask the trustd at ``endpoint:port`` for an apid certificate (see the module
    docstring), trusting only the OS CA ``ca``; the caller bounds the time it takes.

    Raises:
        OSError, grpclib.exceptions.GRPCError, ssl.SSLError: trustd cannot be reached, is
            not trusted, or refuses.
    """
    csr, key = csr_for(addresses, hostname)
    channel = Channel(endpoint, port, ssl=ca_client_context(ca))
    try:
        stub = securityapi.SecurityServiceStub(channel)
        answer = await stub.certificate(
            securityapi.CertificateRequest(csr=csr), metadata={"token": token}
        )
    finally:
        channel.close()
    return Identity(answer.ca, answer.crt, key)
