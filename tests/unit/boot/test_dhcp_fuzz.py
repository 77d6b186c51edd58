"""A bounded fuzz of the DHCP/ProxyDHCP packet handling (#23): whatever arrives, the service
answers, ignores, or refuses it as malformed (a line in the log); nothing else escapes."""

from __future__ import annotations

import struct
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from arges.boot import dhcp
from arges.boot.dhcpserver import DhcpConfig, DhcpService
from arges.boot.leases import PoolConfig
from tests.unit.boot.test_dhcp import FILES, packet

EXAMPLES = 400
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
MAGIC = b"\x63\x82\x53\x63"

option = st.tuples(st.integers(1, 254), st.binary(max_size=40)).map(
    lambda kv: bytes([kv[0], len(kv[1])]) + kv[1]
)
# A BOOTP header with random fields, the magic cookie, then random (often truncated) options:
# what gets past the header checks into option parsing and classification.
structured = st.builds(
    lambda op, htype, hlen, xid, ciaddr, chaddr, options, tail: (
        struct.pack("!BBBBIHH", op, htype, hlen, 0, xid, 0, 0x8000)
        + ciaddr
        + bytes(12)
        + chaddr
        + bytes(192)
        + MAGIC
        + b"".join(options)
        + tail
    ),
    st.sampled_from([1, 2, 0, 255]),
    st.sampled_from([1, 6, 0]),
    st.integers(0, 255),
    st.integers(0, 2**32 - 1),
    st.binary(min_size=4, max_size=4),
    st.binary(min_size=16, max_size=16),
    st.lists(
        st.one_of(
            option,
            st.sampled_from(
                [
                    b"\x35\x01\x01",
                    b"\x35\x01\x03",
                    b"\x35\x01\x08",
                    b"\x3c\x09PXEClient",
                    b"\x5d\x02\x00\x07",
                    b"\x61\x11\x00" + bytes(16),
                    b"\x4d\x04iPXE",
                    b"\x32\x04\x0a\x58\x00\x64",
                ]
            ),
        ),
        max_size=12,
    ),
    st.sampled_from([b"\xff", b"", b"\x35", b"\x35\xff"]),
)
mutated = st.tuples(
    st.sampled_from([packet(vendor=b"PXEClient:Arch:00007", arch=7), packet(dhcp.REQUEST)]),
    st.integers(0, 400),
    st.binary(min_size=1, max_size=8),
).map(lambda t: t[0][: t[1]] + t[2] + t[0][t[1] + len(t[2]) :])
packets = st.one_of(st.binary(max_size=600), structured, mutated)


def _answer(svc: DhcpService, data: bytes, port: int) -> None:
    try:
        answer = svc.handle(data, port)
    except dhcp.Malformed:
        return
    if answer is not None:
        payload, (host, dport) = answer
        assert payload[:1] == b"\x02" and isinstance(host, str) and isinstance(dport, int)


PROXY = DhcpService(DhcpConfig("proxy", FILES, port=10067, proxy_port=14011))


@FUZZ
@given(data=packets, port=st.sampled_from([10067, 14011]))
def test_proxy_dhcp_survives_any_packet(data: bytes, port: int) -> None:
    _answer(PROXY, data, port)


def test_full_dhcp_survives_any_packet(tmp_path: Path) -> None:
    pool = PoolConfig("10.88.0.0/24", "10.88.0.100", "10.88.0.120", "10.88.0.1")
    svc = DhcpService(DhcpConfig("full", FILES, pool=pool, lease_file=tmp_path / "leases.json"))

    @FUZZ
    @given(data=packets)
    def fuzz(data: bytes) -> None:
        _answer(svc, data, 67)

    fuzz()
    # The lease table is still usable.
    offer = svc.handle(packet(dhcp.DISCOVER, vendor=b"PXEClient", arch=0), 67)
    assert offer is not None
