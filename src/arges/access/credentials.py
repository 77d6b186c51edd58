"""Per-boot credentials as pure functions: minting, hashing, checking, spending.

A credential is 32 random bytes, URL-safe base64 (43 characters), minted by ``/ipxe`` for
one network boot of one server and one purpose. The server keeps only its SHA-256 (in
``status.bootCredential``), so reading the Server gives nothing to replay. A server that
does not exist yet (its first discovery) has nowhere to keep a hash; its credential is
*signed* instead: ``s.<issued>.<nonce>.<tag>``, the tag an HMAC-SHA256 over the purpose,
the UUID, the asking address, the issue time and the nonce, under a key held in memory
only. The first registration with it records its hash like any other; a signed credential
minted before a restart no longer verifies, and the agent, refused, boots again for a new
one (:mod:`arges.agent.main`), so nothing is locked out for good.

A credential works while it is not spent, not expired (``TTL`` after its last use: an
agent that polls for days, or a Talos that waits for its config, keeps it alive; an
abandoned one dies), for its purpose, for its UUID, and from an address it is bound to
(see :func:`allowed`).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Any

from arges.api.server import BootCredential, CredentialPurpose, DhcpSighting

TTL = dt.timedelta(minutes=30)
"""How long a credential lives after its last use."""
REFRESH = dt.timedelta(minutes=5)
"""A use moves ``expires`` on only once it is this much older than a fresh one would be,
so a polling agent does not cost a write per poll for this alone."""
TOKEN = re.compile(r"^[A-Za-z0-9_-]{43}$")
SIGNED = re.compile(r"^s\.([0-9]{1,12})\.([A-Za-z0-9_-]{22})\.([A-Za-z0-9_-]{43})$")


def mint() -> str:
    """A new random credential (43 URL-safe characters)."""
    return secrets.token_urlsafe(32)


def digest(token: str) -> str:
    """The SHA-256 (hex) kept in place of ``token``."""
    return hashlib.sha256(token.encode()).hexdigest()


def well_formed(token: str) -> bool:
    """Whether ``token`` has the shape of a credential (checked before anything is read)."""
    return bool(TOKEN.match(token) or SIGNED.match(token))


@dataclass(frozen=True)
class Signer:
    """Signed credentials for servers that do not exist yet (see the module docstring)."""

    key: bytes

    @classmethod
    def random(cls) -> Signer:
        """A signer with a fresh 256-bit key from :mod:`secrets`."""
        return cls(secrets.token_bytes(32))

    def _tag(self, purpose: str, uuid: str, client: str, issued: int, nonce: str) -> str:
        message = f"{purpose}\n{uuid}\n{client}\n{issued}\n{nonce}".encode()
        tag = hmac.new(self.key, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(tag).decode().rstrip("=")

    def sign(self, purpose: CredentialPurpose, uuid: str, client: str, now: dt.datetime) -> str:
        """A signed credential for ``uuid``, usable from ``client`` until ``now + TTL``."""
        issued = int(now.timestamp())
        nonce = secrets.token_urlsafe(16)
        return f"s.{issued}.{nonce}.{self._tag(purpose, uuid, client, issued, nonce)}"

    def verify(
        self, token: str, purpose: CredentialPurpose, uuid: str, client: str, now: dt.datetime
    ) -> dt.datetime | None:
        """When ``token`` was issued, if it is a signed credential for exactly this purpose,
        UUID and address and has not expired; else None."""
        match = SIGNED.match(token)
        if match is None:
            return None
        issued, nonce, tag = int(match.group(1)), match.group(2), match.group(3)
        if not hmac.compare_digest(tag, self._tag(purpose, uuid, client, issued, nonce)):
            return None
        when = dt.datetime.fromtimestamp(issued, dt.UTC)
        return when if when <= now < when + TTL else None


def record(
    token: str,
    purpose: CredentialPurpose,
    client: str,
    now: dt.datetime,
    *,
    mac: str = "",
    dhcp: DhcpSighting | None = None,
    issued: dt.datetime | None = None,
    addresses: list[str] | None = None,
) -> BootCredential:
    """What the Server keeps of a credential just minted (or first used, when signed);
    ``addresses`` it is bound to default to ``client`` (none: the first one it is used
    from, see :func:`allowed`)."""
    return BootCredential(
        purpose=purpose,
        sha256=digest(token),
        issued=issued or now,
        expires=now + TTL,
        client=client,
        mac=mac,
        dhcp=dhcp,
        addresses=addresses if addresses is not None else [client] if client else [],
    )


def spent(current: BootCredential | None, why: str) -> dict[str, Any] | None:
    """The status patch that spends ``current`` (None when there is nothing to spend)."""
    if current is None or current.sha256 is None:
        return None
    return {"bootCredential": {"sha256": None, "spent": why}}


def refusal(
    current: BootCredential | None,
    token: str,
    purposes: tuple[CredentialPurpose, ...],
    now: dt.datetime,
) -> str | None:
    """Why ``token`` does not work for ``purposes`` against the server's ``current``
    credential (None when it does; the address is checked apart, by :func:`allowed`)."""
    if current is None:
        return "the server has no boot credential"
    if current.sha256 is None:
        return f"the credential is spent ({current.spent or 'spent'})"
    if not hmac.compare_digest(digest(token), current.sha256):
        return "not the credential of the server's current boot"
    if current.purpose not in purposes:
        return f"a credential for {current.purpose}, not for {' or '.join(purposes)}"
    if now >= current.expires:
        return "the credential has expired"
    return None


def allowed(current: BootCredential, client: str, seen: set[str]) -> bool:
    """Whether a request from ``client`` may use ``current``: it comes from an address the
    credential is bound to, or from one Arges' DHCP saw one of the server's NICs lease
    since the credential was minted (``seen``: Talos may lease another address than its
    firmware did). A credential bound to no address yet (an agent booted from virtual
    media, which asked no ``/ipxe``) is bound by its first use (:func:`used` records it)."""
    return not current.addresses or client in current.addresses or client in seen


def used(current: BootCredential, client: str, now: dt.datetime) -> dict[str, Any] | None:
    """The status patch recording a use from ``client`` (a newly learned address, the
    expiry moved on), or None when nothing worth a write changed."""
    patch: dict[str, Any] = {}
    if client and client not in current.addresses:
        patch["addresses"] = [*current.addresses, client]
    if current.expires - now < TTL - REFRESH:
        patch["expires"] = (now + TTL).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"bootCredential": patch} if patch else None
