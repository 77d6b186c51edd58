"""The TFTP server with a real client (curl's tftp://)."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from arges.boot.tftp import TftpServer

IPXE = Path("/usr/lib/ipxe/undionly.kpxe")


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[tuple[TftpServer, Path]]:
    root = tmp_path / "root"
    root.mkdir()
    (root / "big.bin").write_bytes(os.urandom(3 * 2**20 + 123))
    (root / "small.bin").write_bytes(b"hello")
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
    names = ["small.bin", "big.bin"] + (["undionly.kpxe"] if IPXE.exists() else [])
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
