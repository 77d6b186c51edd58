"""Per-boot credentials: what works, for whom, from where, and for how long."""

from __future__ import annotations

import datetime as dt
import hashlib

from arges.access import credentials
from arges.access.credentials import REFRESH, TTL, Signer

NOW = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
UUID = "8b2c7a12-5f3e-4d61-9a0b-1c2d3e4f5a6b"


def test_a_credential_is_random_and_only_its_hash_is_kept() -> None:
    a, b = credentials.mint(), credentials.mint()
    assert a != b and credentials.well_formed(a) and len(a) == 43
    record = credentials.record(a, "config", "10.0.0.5", NOW, mac="52:54:00:00:00:01")
    assert record.sha256 == hashlib.sha256(a.encode()).hexdigest()
    assert a not in record.model_dump_json()
    assert (record.client, record.addresses, record.expires) == (
        "10.0.0.5",
        ["10.0.0.5"],
        NOW + TTL,
    )
    assert not credentials.well_formed("") and not credentials.well_formed("x" * 42 + "/")


def test_only_the_current_unspent_unexpired_credential_for_its_purpose_works() -> None:
    token = credentials.mint()
    record = credentials.record(token, "config", "10.0.0.5", NOW)
    assert credentials.refusal(record, token, ("config",), NOW) is None
    assert "not the credential" in str(
        credentials.refusal(record, credentials.mint(), ("config",), NOW)
    )
    assert "not for agent" in str(credentials.refusal(record, token, ("agent",), NOW))
    assert "expired" in str(credentials.refusal(record, token, ("config",), NOW + TTL))
    assert "no boot credential" in str(credentials.refusal(None, token, ("config",), NOW))
    spent = record.model_copy(update={"sha256": None, "spent": "the machine config is installed"})
    assert "spent (the machine config is installed)" in str(
        credentials.refusal(spent, token, ("config",), NOW)
    )
    assert credentials.spent(record, "booted again") == {
        "bootCredential": {"sha256": None, "spent": "booted again"}
    }
    assert credentials.spent(spent, "booted again") is None


def test_a_credential_works_from_its_addresses_and_ones_dhcp_saw_the_server_lease() -> None:
    record = credentials.record(credentials.mint(), "config", "10.0.0.5", NOW)
    assert credentials.allowed(record, "10.0.0.5", set())
    assert not credentials.allowed(record, "10.0.0.6", set())
    assert credentials.allowed(record, "10.0.0.6", {"10.0.0.6"})


def test_a_virtual_media_credential_is_bound_to_the_static_address_or_to_its_first_use() -> None:
    static = credentials.record(credentials.mint(), "agent", "", NOW, addresses=["10.0.0.50"])
    assert static.addresses == ["10.0.0.50"] and static.client == ""
    assert credentials.allowed(static, "10.0.0.50", set())
    assert not credentials.allowed(static, "10.0.0.6", set())
    unbound = credentials.record(credentials.mint(), "agent", "", NOW, addresses=[])
    assert credentials.allowed(unbound, "10.0.0.6", set()), "its first use binds it"
    first = credentials.used(unbound, "10.0.0.6", NOW)
    assert first == {"bootCredential": {"addresses": ["10.0.0.6"]}}
    bound = unbound.model_copy(update=first["bootCredential"])
    assert not credentials.allowed(bound, "10.0.0.7", set())


def test_uses_keep_a_credential_alive_without_a_write_per_use() -> None:
    record = credentials.record(credentials.mint(), "agent", "10.0.0.5", NOW)
    assert credentials.used(record, "10.0.0.5", NOW + REFRESH / 2) is None
    later = NOW + REFRESH + dt.timedelta(seconds=1)
    assert credentials.used(record, "10.0.0.5", later) == {
        "bootCredential": {"expires": (later + TTL).strftime("%Y-%m-%dT%H:%M:%SZ")}
    }
    assert credentials.used(record, "10.0.0.6", NOW) == {
        "bootCredential": {"addresses": ["10.0.0.5", "10.0.0.6"]}
    }


def test_signed_credentials_are_bound_to_purpose_uuid_address_and_time() -> None:
    signer = Signer.random()
    token = signer.sign("agent", UUID, "10.0.0.5", NOW)
    assert credentials.well_formed(token)
    assert signer.verify(token, "agent", UUID, "10.0.0.5", NOW + TTL / 2) == NOW
    assert signer.verify(token, "config", UUID, "10.0.0.5", NOW) is None
    assert signer.verify(token, "agent", UUID.replace("8b", "8c"), "10.0.0.5", NOW) is None
    assert signer.verify(token, "agent", UUID, "10.0.0.6", NOW) is None
    assert signer.verify(token, "agent", UUID, "10.0.0.5", NOW + TTL) is None
    assert Signer.random().verify(token, "agent", UUID, "10.0.0.5", NOW) is None, "after a restart"
    assert signer.verify(credentials.mint(), "agent", UUID, "10.0.0.5", NOW) is None
