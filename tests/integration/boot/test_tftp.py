"""The TFTP server with a real client (curl's tftp://)."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from arges.boot.tftpfiles import FileCache
from arges.boot.tftpserver import TftpServer

IPXE = Path("/usr/lib/ipxe/undionly.kpxe")


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[tuple[TftpServer, Path]]:
    root = tmp_path / "root"
    root.mkdir()
    (root / "big.bin").write_bytes(os.urandom(3 * 2**20 + 123))
    (root / "small.bin").write_bytes(b"hello")
    (root / "even.bin").write_bytes(os.urandom(4 * 1432))  # a last, empty DATA packet
    if IPXE.exists():
        (root / "undionly.kpxe").write_bytes(IPXE.read_bytes())
    (tmp_path / "secret").write_text("nope")
    srv = TftpServer(root, "127.0.0.1", 0)
    await srv.start()
    yield srv, root
    await srv.stop()


async def curl(port: int, name: str, out: Path, *extra: str) -> int:
    proc = await asyncio.create_subprocess_exec(
        "curl",
        "-sS",
        "--max-time",
        "60",
        *extra,
        "-o",
        str(out),
        f"tftp://127.0.0.1:{port}/{name}",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    await proc.communicate()
    return proc.returncode or 0


async def test_downloads_are_byte_identical(server, tmp_path: Path) -> None:
    srv, root = server
    names = ["small.bin", "even.bin", "big.bin"] + (["undionly.kpxe"] if IPXE.exists() else [])
    for name in names:
        for extra in ((), ("--tftp-blksize", "1432"), ("--tftp-no-options",)):
            out = tmp_path / f"{name}.{len(extra)}"
            assert await curl(srv.port, name, out, *extra) == 0
            assert out.read_bytes() == (root / name).read_bytes(), (name, extra)


async def test_many_concurrent_transfers(server, tmp_path: Path) -> None:
    srv, root = server
    outs = [tmp_path / f"c{i}" for i in range(12)]
    codes = await asyncio.gather(
        *(curl(srv.port, "big.bin", o, "--tftp-blksize", "8192") for o in outs)
    )
    assert codes == [0] * 12
    assert all(o.read_bytes() == (root / "big.bin").read_bytes() for o in outs)


async def test_bad_paths_are_refused(server, tmp_path: Path) -> None:
    srv, _ = server
    for name in ("../secret", "missing.bin", "%2Fetc%2Fpasswd"):
        assert await curl(srv.port, name, tmp_path / "x") != 0


async def test_garbage_does_not_disturb_a_transfer_in_progress(server, tmp_path: Path) -> None:
    srv, root = server
    transfer = asyncio.create_task(
        curl(srv.port, "big.bin", tmp_path / "out", "--tftp-blksize", "512")
    )
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for junk in (
            b"",
            b"\x00",
            b"\x00\x09junk",
            b"\x00\x02upload\x00octet\x00",
            os.urandom(600),
        ):
            s.sendto(junk, ("127.0.0.1", srv.port))
            await asyncio.sleep(0.01)
    assert await transfer == 0
    assert (tmp_path / "out").read_bytes() == (root / "big.bin").read_bytes()
    assert await curl(srv.port, "small.bin", tmp_path / "after") == 0


async def firmware_get(port: int, name: str, blksize: int = 1428) -> bytes:
    """A lock-step read as PXE firmware does it (OACK, then one ACK per block), retransmitting
    the last packet after 1 s of silence."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sock.bind(("127.0.0.1", 0))
    data = bytearray()
    try:
        last = (
            b"\x00\x01"
            + b"\x00".join(
                [name.encode(), b"octet", b"blksize", str(blksize).encode(), b"tsize", b"0"]
            )
            + b"\x00"
        )
        peer: tuple[str, int] = ("127.0.0.1", port)
        expected = 1
        while True:
            sock.sendto(last, peer)
            try:
                packet, addr = await asyncio.wait_for(loop.sock_recvfrom(sock, 65536), 1.0)
            except TimeoutError:
                continue
            peer = addr
            opcode, number = struct.unpack("!HH", packet[:4])
            if opcode == 5:
                raise OSError(packet[4:].rstrip(b"\x00").decode())
            if opcode == 6:
                last = struct.pack("!HH", 4, 0)
            elif opcode == 3 and number == expected & 0xFFFF:
                data += packet[4:]
                last = struct.pack("!HH", 4, number)
                expected += 1
                if len(packet) - 4 < blksize:
                    sock.sendto(last, peer)
                    return bytes(data)
    finally:
        sock.close()


async def test_a_storm_of_lock_step_clients_gets_the_right_bytes(server) -> None:
    srv, root = server
    names = ["small.bin", "big.bin"] + (["undionly.kpxe"] * 300 if IPXE.exists() else [])
    got = await asyncio.gather(*(firmware_get(srv.port, n) for n in names))
    for name, data in zip(names, got, strict=True):
        assert data == (root / name).read_bytes(), name
    for _ in range(100):  # the last ACKs are on their way
        if srv.transfers == 0:
            break
        await asyncio.sleep(0.05)
    assert srv.transfers == 0


async def test_large_files_are_streamed_and_replaced_files_served_anew(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    big = os.urandom(2 * 2**20 + 7)
    (root / "big.bin").write_bytes(big)
    (root / "small.bin").write_bytes(b"first")
    srv = TftpServer(root, "127.0.0.1", 0, files=FileCache(max_file=2**20))
    await srv.start()
    try:
        assert await firmware_get(srv.port, "big.bin", 8192) == big
        assert await firmware_get(srv.port, "small.bin") == b"first"
        (root / "small.bin").write_bytes(b"second, longer")
        assert await firmware_get(srv.port, "small.bin") == b"second, longer"
        (root / "small.bin").unlink()
        with pytest.raises(OSError, match="file not found"):
            await firmware_get(srv.port, "small.bin")
    finally:
        await srv.stop()


async def test_transfers_run_off_the_callers_event_loop(server, tmp_path: Path) -> None:
    srv, root = server
    out = tmp_path / "out"
    fetch = asyncio.get_running_loop().run_in_executor(
        None,
        lambda: subprocess.run(
            [
                "curl",
                "-sS",
                "--max-time",
                "10",
                "-o",
                str(out),
                f"tftp://127.0.0.1:{srv.port}/big.bin",
            ],
            check=True,
        ),
    )
    started = time.monotonic()
    while not out.exists() or out.stat().st_size < (root / "big.bin").stat().st_size:
        # The caller's loop is blocked here; the transfer goes on regardless.
        time.sleep(0.05)  # noqa: ASYNC251 (blocking the loop is the point)
        assert time.monotonic() - started < 20, "the transfer waited for the caller's loop"
    await fetch
    assert out.read_bytes() == (root / "big.bin").read_bytes()


async def test_a_stranger_gets_unknown_transfer_id_and_the_transfer_goes_on(server) -> None:
    srv, root = server
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5)
    sock.sendto(b"\x00\x01big.bin\x00octet\x00blksize\x001428\x00", ("127.0.0.1", srv.port))
    first, transfer = sock.recvfrom(65536)
    assert first[:2] == b"\x00\x06"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
        stranger.settimeout(5)
        stranger.sendto(b"\x00\x04\x00\x00", transfer)
        answer, _ = stranger.recvfrom(65536)
        assert struct.unpack("!HH", answer[:4]) == (5, 5)
    data = bytearray()
    block = 0
    sock.sendto(struct.pack("!HH", 4, block), transfer)
    while True:
        packet, _ = sock.recvfrom(65536)
        assert struct.unpack("!HH", packet[:4]) == (3, block + 1)
        block += 1
        data += packet[4:]
        sock.sendto(struct.pack("!HH", 4, block), transfer)
        if len(packet) - 4 < 1428:
            break
    sock.close()
    assert data == (root / "big.bin").read_bytes()


async def test_a_repeated_request_does_not_start_a_second_transfer(server) -> None:
    srv, _ = server
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(5)
    sock.bind(("127.0.0.1", 0))
    try:
        rrq = b"\x00\x01small.bin\x00octet\x00tsize\x000\x00"
        sock.sendto(rrq, ("127.0.0.1", srv.port))
        sock.sendto(rrq, ("127.0.0.1", srv.port))
        oack, peer = await asyncio.to_thread(sock.recvfrom, 65536)
        assert oack[:2] == b"\x00\x06"
        sock.sendto(b"\x00\x04\x00\x00", peer)
        data, _ = await asyncio.to_thread(sock.recvfrom, 65536)
        assert data == b"\x00\x03\x00\x01hello"
        sock.sendto(b"\x00\x04\x00\x01", peer)
        sock.settimeout(1.5)
        with pytest.raises(TimeoutError):
            extra = await asyncio.to_thread(sock.recvfrom, 65536)
            pytest.fail(f"a second transfer answered: {extra!r}")
    finally:
        sock.close()
    for _ in range(100):  # the transfer ends on the TFTP thread
        if srv.transfers == 0:
            break
        await asyncio.sleep(0.05)
    assert srv.transfers == 0
