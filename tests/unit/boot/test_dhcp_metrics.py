"""DHCP replies are counted by mode and type in the plane's metrics."""

from __future__ import annotations

from pathlib import Path

from arges.boot import dhcp
from arges.boot.dhcpserver import DhcpConfig, DhcpService
from arges.boot.leases import PoolConfig
from arges.metrics import Metrics
from tests.unit.boot.test_dhcp import FILES, packet


def count(metrics: Metrics, mode: str, kind: str) -> float:
    value = metrics.registry.get_sample_value(
        "arges_dhcp_replies_total", {"mode": mode, "type": kind}
    )
    return value or 0.0


def test_proxy_offers_and_acks_are_counted() -> None:
    metrics = Metrics()
    svc = DhcpService(DhcpConfig("proxy", FILES, port=10067, proxy_port=14011), metrics)
    bios = {"vendor": b"PXEClient:Arch:00000", "arch": 0}
    svc.handle(packet(dhcp.DISCOVER, **bios), 10067)
    svc.handle(packet(dhcp.DISCOVER, **bios), 10067)
    svc.handle(packet(dhcp.REQUEST, ciaddr="10.88.0.150", **bios), 14011)
    svc.handle(packet(dhcp.DISCOVER), 10067)  # not a boot client: no answer, not counted
    assert count(metrics, "proxy", "offer") == 2
    assert count(metrics, "proxy", "ack") == 1


def test_full_mode_counts_naks_too(tmp_path: Path) -> None:
    metrics = Metrics()
    pool = PoolConfig("10.88.0.0/24", "10.88.0.100", "10.88.0.101", "10.88.0.1")
    svc = DhcpService(
        DhcpConfig("full", FILES, pool=pool, lease_file=tmp_path / "leases.json"), metrics
    )
    svc.handle(packet(dhcp.DISCOVER), 67)
    svc.handle(packet(dhcp.REQUEST, requested="10.88.0.100"), 67)
    svc.handle(packet(dhcp.REQUEST, requested="10.88.0.101"), 67)
    assert [count(metrics, "full", k) for k in ("offer", "ack", "nak")] == [1, 1, 1]
