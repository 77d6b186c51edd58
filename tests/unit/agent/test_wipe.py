"""Wiping regular files that stand in for disks, found through a sysfs-shaped tree.

The "disk" is 16 MiB of 0xAA with three partitions (sysfs counts 512-byte sectors):
p1 [1, 7) MiB, p2 [7, 7.5) MiB (shorter than a MiB), p3 [8, 15) MiB. A fast wipe zeroes the
first and last MiB of each partition and of the disk: [0, 2), [6, 7.5), [8, 9) and
[14, 16) MiB once merged, 6.5 MiB in all.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from arges.agent import wipe

MIB = 1 << 20
SIZE = 16 * MIB
PARTITIONS = [(1 * MIB, 6 * MIB), (7 * MIB, MIB // 2), (8 * MIB, 7 * MIB)]
ZEROED = [(0, 2 * MIB), (6 * MIB, 7 * MIB + MIB // 2), (8 * MIB, 9 * MIB), (14 * MIB, 16 * MIB)]


def sysfs_disk(
    root: Path, name: str, size: int, partitions: list[tuple[int, int]], ro: bool = False
) -> Path:
    block = root / "sys/block" / name
    block.mkdir(parents=True)
    (block / "size").write_text(f"{size // 512}\n")
    (block / "ro").write_text("1\n" if ro else "0\n")
    for number, (start, length) in enumerate(partitions, start=1):
        part = block / f"{name}{number}"
        part.mkdir()
        (part / "partition").write_text(f"{number}\n")
        (part / "start").write_text(f"{start // 512}\n")
        (part / "size").write_text(f"{length // 512}\n")
    (block / "queue").mkdir()
    device = root / "dev" / name
    device.parent.mkdir(exist_ok=True)
    device.write_bytes(b"\xaa" * size)
    return device


@pytest.fixture
def root(tmp_path: Path) -> Path:
    sysfs_disk(tmp_path, "vda", SIZE, PARTITIONS)
    sysfs_disk(tmp_path, "vdb", SIZE, [], ro=True)
    sysfs_disk(tmp_path, "loop0", SIZE, [])
    return tmp_path


def test_disks_are_the_writable_whole_disks_with_their_partitions(root: Path) -> None:
    assert wipe.disks(root) == [wipe.Disk("vda", root / "dev/vda", SIZE, tuple(PARTITIONS))]


def test_fast_zeroes_the_ends_of_partitions_and_disk_and_nothing_else(root: Path) -> None:
    results = wipe.wipe(wipe.disks(root), "fast")
    assert results == [{"name": "vda", "size": SIZE, "bytesZeroed": 13 * MIB // 2}]
    data = (root / "dev/vda").read_bytes()
    assert len(data) == SIZE
    claimed = bytearray(SIZE)
    for start, end in ZEROED:
        claimed[start:end] = b"\1" * (end - start)
        assert data[start:end] == bytes(end - start), f"[{start}, {end}) not zeroed"
    untouched = bytes(b for b, c in zip(data, claimed, strict=True) if not c)
    assert untouched == b"\xaa" * (SIZE - 13 * MIB // 2)
    assert (root / "dev/vdb").read_bytes() == b"\xaa" * SIZE, "a read-only disk is left alone"


def test_full_zeroes_every_byte_and_counts_progress(root: Path) -> None:
    disks = wipe.disks(root)
    progress = wipe.Progress(wipe.total_bytes(disks, "full"))
    results = wipe.wipe(disks, "full", progress)
    assert results == [{"name": "vda", "size": SIZE, "bytesZeroed": SIZE}]
    assert (root / "dev/vda").read_bytes() == bytes(SIZE)
    assert (progress.done, progress.percent()) == (SIZE, 100)


def test_a_disk_that_cannot_be_opened_fails_naming_it(tmp_path: Path) -> None:
    disk = wipe.Disk("sdz", tmp_path / "missing", SIZE)
    with pytest.raises(OSError, match="wiping sdz"):
        wipe.wipe([disk], "fast")


def test_regions_of_a_disk_smaller_than_two_mib_are_merged() -> None:
    disk = wipe.Disk("tiny", Path("/dev/null"), MIB + 4096)
    assert wipe.regions(disk, "fast") == [(0, MIB + 4096)]
