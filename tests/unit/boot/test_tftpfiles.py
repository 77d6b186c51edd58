from __future__ import annotations

import os
from pathlib import Path

from arges.boot.tftpfiles import MAX_PACKETS, FileCache


def test_small_files_are_read_once_and_shared(tmp_path: Path) -> None:
    path = tmp_path / "undionly.kpxe"
    path.write_bytes(b"x" * 5000)
    files = FileCache()
    first, second = files.open(path), files.open(path)
    assert (first.size, first.read(4096, 2000)) == (5000, b"x" * 904)
    assert (files.misses, files.hits) == (1, 1)
    assert second.read(0, 10) == b"x" * 10


def test_a_changed_file_is_read_again(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"old")
    files = FileCache()
    assert files.open(path).read(0, 10) == b"old"
    replacement = tmp_path / "g"
    replacement.write_bytes(b"new!")
    replacement.replace(path)
    assert files.open(path).read(0, 10) == b"new!"
    assert files.misses == 2


def test_large_files_are_streamed_not_kept(tmp_path: Path) -> None:
    path = tmp_path / "big"
    data = os.urandom(3000)
    path.write_bytes(data)
    files = FileCache(max_file=1000)
    source = files.open(path)
    try:
        assert source.size == 3000
        assert b"".join(source.read(o, 512) for o in range(0, 3000, 512)) == data
    finally:
        source.close()
    files.open(path).close()
    assert files.hits == 0


def test_least_recently_used_files_go_first(tmp_path: Path) -> None:
    files = FileCache(max_file=100, max_total=250)
    for name in "abc":
        (tmp_path / name).write_bytes(name.encode() * 100)
    files.open(tmp_path / "a")
    files.open(tmp_path / "b")
    files.open(tmp_path / "a")
    files.open(tmp_path / "c")
    files.open(tmp_path / "a")
    assert files.hits == 2
    files.open(tmp_path / "b")
    assert files.misses == 4


def test_packets_of_a_file_in_memory_are_cut_once_and_shared(tmp_path: Path) -> None:
    path = tmp_path / "ipxe.efi"
    data = os.urandom(3 * 512)
    path.write_bytes(data)
    files = FileCache()
    packets = files.open(path).packets(512)
    assert packets is not None
    assert [p[:4] for p in packets] == [
        b"\x00\x03\x00\x01",
        b"\x00\x03\x00\x02",
        b"\x00\x03\x00\x03",
        b"\x00\x03\x00\x04",
    ]
    assert b"".join(p[4:] for p in packets) == data
    assert packets[-1] == b"\x00\x03\x00\x04"  # a multiple of the block size ends empty
    assert files.open(path).packets(512) is packets
    assert files.open(path).packets(1000) == [
        b"\x00\x03\x00\x01" + data[:1000],
        b"\x00\x03\x00\x02" + data[1000:],
    ]


def test_packets_count_toward_the_memory_limit(tmp_path: Path) -> None:
    files = FileCache(max_file=1000, max_total=2500)
    for name in "ab":
        (tmp_path / name).write_bytes(name.encode() * 1000)
    files.open(tmp_path / "a")
    files.open(tmp_path / "b").packets(512)  # b twice over, and more: a goes
    files.open(tmp_path / "b")
    files.open(tmp_path / "a")
    assert (files.hits, files.misses) == (1, 3)


def test_a_file_of_too_many_blocks_is_read_a_block_at_a_time(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * (8 * MAX_PACKETS))
    source = FileCache().open(path)
    assert source.packets(8) is None
    assert source.packets(512) is not None
    assert source.read(8, 8) == b"x" * 8
