"""A bounded fuzz of the TFTP server (#23): requests of every kind, odd options, long and
escaping names, and sessions answered wrongly, slowly or not at all.

Each input is sent from a fresh client port to a real server on loopback; a probe then fetches
a file, which both shows the server still serves and orders the input before what is read
back. Asserted: nothing from outside the served root is ever sent, nothing is logged as an
error or with a traceback, and afterwards a normal client still gets a file byte for byte.
"""

from __future__ import annotations

import asyncio
import logging
import os
import select
import socket
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from arges.boot.tftp import ACK, DATA, ERROR, OACK, RRQ, WRQ
from arges.boot.tftpserver import TftpServer

EXAMPLES = 1500
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
SECRET = b"SECRET-OUTSIDE-THE-ROOT"
PROBE = b"probe " * 20
WAIT = 2.0
"""Seconds a probe waits for its answer (it comes in well under a millisecond)."""

NAMES = [
    "probe.bin",
    "sub/file.bin",
    "../secret",
    "..\\secret",
    "sub/../../secret",
    "/etc/passwd",
    "\\etc\\passwd",
    "//secret",
    "%2e%2e/secret",
    "%2e%2e%2fsecret",
    "..%2fsecret",
    "escape/secret",
    "escape",
    "../root-evil/secret",
    "sub",
    "sub/",
    ".",
    "./probe.bin",
    "",
    "a" * 300,
    "a/" * 2100,
    "q/" * 5000,
    ("x" * 250 + "/") * 20 + "probe.bin",
]
OPTION_NAMES = ["blksize", "tsize", "timeout", "windowsize", "BLKSIZE", "multicast", "x"]
OPTION_VALUES = [
    "0",
    "1",
    "7",
    "8",
    "512",
    "1432",
    "65464",
    "65465",
    "-1",
    "256",
    "255",
    " 512",
    "1_0",
    "1e3",
    "0x200",
    "",
    "abc",
    "9" * 30,
    "9" * 5000,
]

ascii_text = st.text(st.characters(min_codepoint=1, max_codepoint=127), max_size=40)
name = st.one_of(st.sampled_from(NAMES), ascii_text)
option = st.tuples(
    st.one_of(st.sampled_from(OPTION_NAMES), ascii_text),
    st.one_of(st.sampled_from(OPTION_VALUES), ascii_text),
)


def _request(opcode: int, filename: str, mode: str, options: list[tuple[str, str]]) -> bytes:
    fields = [filename, mode] + [part for pair in options for part in pair]
    return struct.pack("!H", opcode) + b"".join(f.encode() + b"\x00" for f in fields)


request = st.builds(
    _request,
    st.sampled_from([RRQ, RRQ, RRQ, WRQ]),
    name,
    st.sampled_from(["octet", "netascii", "OCTET", "mail", ""]),
    st.lists(option, max_size=5),
)
other = st.one_of(
    st.builds(
        lambda op, n: struct.pack("!HH", op, n),
        st.sampled_from([ACK, DATA, OACK]),
        st.integers(0, 65535),
    ),
    st.builds(lambda msg: struct.pack("!HH", ERROR, 0) + msg + b"\x00", st.binary(max_size=30)),
    st.binary(max_size=80),
    st.builds(lambda data: data[:-1], request),
)
# What the client sends the transfer once it has answered: right and wrong ACKs, errors,
# garbage; an empty list abandons the session.
follow_up = st.lists(
    st.one_of(
        st.builds(lambda n: ("ack", n), st.integers(-1, 3)),
        st.just(("error", 0)),
        st.builds(lambda data: ("raw", data), st.binary(max_size=20)),
        st.just(("elsewhere", 0)),
    ),
    max_size=4,
)


class Client:
    """A blocking UDP client of the server on loopback."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.port = port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes, port: int | None = None) -> None:
        self.sock.sendto(data, ("127.0.0.1", port or self.port))

    def drain(self, wait: float = 0.0) -> list[tuple[bytes, int]]:
        """What has arrived (waiting up to ``wait`` seconds for the first): (data, port)."""
        got = []
        while select.select([self.sock], [], [], wait)[0]:
            data, addr = self.sock.recvfrom(70_000)
            got.append((data, addr[1]))
            wait = 0.0
        return got

    def fetch(self, filename: str, *options: str) -> bytes:
        """A whole file, as a normal client reads it (ACKing OACK and each block)."""
        self.send(
            _request(RRQ, filename, "octet", list(zip(options[::2], options[1::2], strict=True)))
        )
        content = b""
        blksize = 512
        for opt, value in zip(options[::2], options[1::2], strict=True):
            if opt == "blksize":
                blksize = int(value)
        while True:
            ready = select.select([self.sock], [], [], WAIT)[0]
            assert ready, f"no answer to {filename} within {WAIT} s"
            data, addr = self.sock.recvfrom(70_000)
            opcode, number = struct.unpack("!HH", data[:4])
            assert opcode in (DATA, OACK), data
            self.send(struct.pack("!HH", ACK, number if opcode == DATA else 0), addr[1])
            if opcode == OACK:
                continue
            content += data[4:]
            if len(data) - 4 < blksize:
                return content


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[TftpServer, Path]]:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "probe.bin").write_bytes(PROBE)
    (root / "sub" / "file.bin").write_bytes(os.urandom(5000))
    (root / "big.bin").write_bytes(os.urandom(200_000))
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(SECRET)
    (tmp_path / "secret").write_bytes(SECRET)
    (tmp_path / "root-evil").mkdir()
    (tmp_path / "root-evil" / "secret").write_bytes(SECRET)
    (root / "escape").symlink_to(outside)
    # Short waits, so the sessions the fuzz abandons end during the run.
    server = TftpServer(root, "127.0.0.1", 0, retries=2, default_timeout=0.05, max_timeout=0.1)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(server.start())
    yield server, root
    loop.run_until_complete(server.stop())
    loop.close()


def test_tftp_survives_any_request_and_session(
    served: tuple[TftpServer, Path], caplog: pytest.LogCaptureFixture
) -> None:
    server, root = served
    caplog.set_level(logging.INFO)
    received: list[bytes] = []
    inputs = iter(range(10**6))

    @FUZZ
    @given(first=st.one_of(request, request, other), then=follow_up)
    def fuzz(first: bytes, then: list[tuple[str, Any]]) -> None:
        # Each input from an address of its own (all of 127/8 is loopback): sessions it
        # abandons count against the transfers its address may run.
        n = next(inputs)
        client = Client(server.port, f"127.1.{n // 250 % 250}.{n % 250 + 1}")
        try:
            client.send(first)
            # From a port of its own each time: a request just like a running transfer's,
            # from the same port, is that transfer's client asking again, and not answered.
            probe = Client(server.port, "127.0.0.2")
            assert probe.fetch("probe.bin") == PROBE
            answers = client.drain(0.001)
            transfer = next((port for _, port in answers if port != server.port), None)
            if transfer is not None:
                for what, arg in then:
                    if what == "ack":
                        client.send(struct.pack("!HH", ACK, max(arg, 0) & 0xFFFF), transfer)
                    elif what == "error":
                        client.send(struct.pack("!HH", ERROR, 0) + b"stop\x00", transfer)
                    elif what == "raw":
                        client.send(arg, transfer)
                    else:
                        probe.send(struct.pack("!HH", ACK, 1), transfer)
                        received.extend(data for data, _ in probe.drain(0.001))
                answers += client.drain(0.001)
            probe.close()
            received.extend(data for data, _ in answers)
            assert not [data for data, _ in answers if SECRET in data]
        finally:
            client.close()

    fuzz()
    assert received, "the fuzz got no answers at all"
    assert not [data for data in received if SECRET in data]
    # A normal client still gets a multi-block file byte for byte, with and without options.
    client = Client(server.port)
    assert client.fetch("big.bin") == (root / "big.bin").read_bytes()
    assert (
        client.fetch("big.bin", "blksize", "1432", "tsize", "0") == (root / "big.bin").read_bytes()
    )
    client.close()
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not bad, [r.getMessage()[:300] for r in bad[:5]]


def test_a_slow_client_gets_the_file_and_abandoned_ones_do_not_block_other_hosts(
    served: tuple[TftpServer, Path],
) -> None:
    server, root = served
    want = (root / "sub" / "file.bin").read_bytes()
    # Slow: every block is acknowledged only after the server sent it again.
    slow = Client(server.port, "127.0.0.3")
    slow.send(_request(RRQ, "sub/file.bin", "octet", []))
    content, expected = b"", 1
    while True:
        copies = []
        while len(copies) < 2:
            got = slow.drain(WAIT)
            assert got, f"block {expected} was not sent twice"
            copies += [
                (data, port) for data, port in got if data[2:4] == struct.pack("!H", expected)
            ]
        data, port = copies[0]
        assert data[:2] == struct.pack("!H", DATA)
        content += data[4:]
        slow.send(struct.pack("!HH", ACK, expected), port)
        expected += 1
        if len(data) - 4 < 512:
            break
    assert content == want
    slow.close()
    # Abandoned: 50 requests from one address, with the longest timeout, never acknowledged.
    # That address runs 16 transfers at most (the rest are dropped); others are served.
    abandoned = [Client(server.port) for _ in range(50)]
    for client in abandoned:
        client.send(_request(RRQ, "big.bin", "octet", [("timeout", "255"), ("blksize", "1432")]))
    other = Client(server.port, "127.0.0.2")
    assert other.fetch("big.bin") == (root / "big.bin").read_bytes()
    answered = [c for c in abandoned if c.drain(0.05)]
    assert len(answered) == server.max_transfers_per_client == 16
    for c in [other, *abandoned]:
        c.close()
