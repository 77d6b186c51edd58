"""What DHCP saw, and how /ipxe requesters are vetted against it."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import cast

from arges.access.guard import BootGuard
from arges.access.sightings import Sightings, decode_guid
from arges.api.server import Server
from arges.kube.client import KubeClient

UUID = "8b2c7a12-5f3e-4d61-9a0b-1c2d3e4f5a6b"
MAC = "52:54:00:12:34:56"
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
GUID = b"\x00" + uuid.UUID(UUID).bytes_le


def test_option_97_is_read_in_both_byte_orders_firmware_uses() -> None:
    assert decode_guid(GUID)[0] == UUID, "as iPXE and EDK2 send it"
    assert UUID in decode_guid(b"\x00" + uuid.UUID(UUID).bytes)
    assert decode_guid(b"\x00\x01") == () and decode_guid(None) == ()


def test_sightings_are_bounded_and_forgotten() -> None:
    seen = Sightings(limit=2, window=dt.timedelta(minutes=1))
    seen.record(MAC, GUID, None, NOW)
    seen.record(MAC, None, "10.0.0.5", NOW + dt.timedelta(seconds=1))
    sighting = seen.of(MAC, NOW + dt.timedelta(seconds=2))
    assert sighting is not None and sighting.uuids[0] == UUID and sighting.address() == "10.0.0.5"
    assert seen.of(MAC, NOW + dt.timedelta(minutes=2)) is None
    for i in range(8):
        seen.record(MAC, None, f"10.0.0.{10 + i}", NOW + dt.timedelta(seconds=10 + i))
    assert seen.addresses({MAC}, NOW) == {f"10.0.0.{i}" for i in (14, 15, 16, 17)}
    assert seen.addresses({MAC}, NOW + dt.timedelta(seconds=17)) == {"10.0.0.17"}
    seen.record("52:54:00:00:00:02", None, None, NOW)
    seen.record("52:54:00:00:00:03", None, None, NOW)
    assert seen.of(MAC, NOW) is None, "the least recently seen went first"


def server(macs: list[str]) -> Server:
    interfaces = [{"name": f"eth{i}", "mac": m} for i, m in enumerate(macs)]
    return Server.from_json(
        {
            "metadata": {"name": UUID},
            "status": {"hardware": {"network": {"interfaces": interfaces}}},
        }
    )


def test_ipxe_requesters_are_vetted_against_what_dhcp_saw() -> None:
    seen = Sightings()
    guard = BootGuard(cast(KubeClient, None), seen, vet_dhcp=True)
    assert "DHCP saw no recent request" in str(guard.vet(None, UUID, MAC, "10.0.0.5")[0])
    seen.record(MAC, GUID, "10.0.0.5")
    refused, sighting = guard.vet(server([MAC]), UUID, MAC, "10.0.0.5")
    assert refused is None and sighting is not None
    assert (sighting.mac, sighting.uuid, sighting.address) == (MAC, UUID, "10.0.0.5")
    assert "use 10.0.0.5" in str(guard.vet(server([MAC]), UUID, MAC, "10.0.0.99")[0])
    other = "11111111-2222-3333-4444-555555555555"
    assert f"send UUID {UUID}" in str(guard.vet(None, other, MAC, "10.0.0.5")[0])
    assert "not one of the server's" in str(
        guard.vet(server(["52:54:00:00:00:09"]), UUID, MAC, "10.0.0.5")[0]
    )
    without_dhcp = BootGuard(cast(KubeClient, None))
    assert without_dhcp.vet(server([MAC]), UUID, MAC, "10.0.0.99") == (None, None)
    assert without_dhcp.vet(server([MAC]), UUID, "", "10.0.0.99")[0] is not None
