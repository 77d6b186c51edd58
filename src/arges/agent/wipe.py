"""Wiping disks: what a fast wipe zeroes, and writing the zeros.

Fast (the default, Sidero's "insecure" wipe grown to cover what it missed, sidero#753):
for each partition its first and last MiB (so filesystem, RAID and LVM signatures inside
partitions go too: ext4 and XFS keep theirs at the start, MD 1.0 and ZFS labels at the end),
then the first and last MiB of the disk (MBR and the primary GPT; the backup GPT in the last
33 sectors). Full: every byte. Either way the zeros are fsynced, then the kernel is told to
re-read the partition table (``BLKRRPART``, ``include/uapi/linux/fs.h``), so the running
system no longer sees the old partitions.

Disks are wiped one after another (2 cores and one disk controller in the usual case; the
heartbeat, not parallelism, keeps Arges from giving up on a slow full wipe).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from arges.agent.collect import SECTOR, SKIPPED_BLOCK

MIB = 1 << 20
CHUNK = 4 * MIB
BLKRRPART = 0x125F
"""``_IO(0x12, 95)``: re-read the partition table."""

Mode = Literal["fast", "full"]


@dataclass(frozen=True)
class Disk:
    """A whole disk: kernel name, device path, size in bytes, and its partitions as
    ``(offset, length)`` in bytes."""

    name: str
    path: Path
    size: int
    partitions: tuple[tuple[int, int], ...] = ()


def _sectors(path: Path) -> int:
    try:
        text = path.read_text().strip()
    except OSError:
        return 0
    return int(text) if text.isdigit() else 0


def disks(root: Path = Path("/")) -> list[Disk]:
    """The writable whole disks under ``root/sys/block`` with their partitions, device
    paths under ``root/dev`` (read-only disks, ``ro`` = 1, are left alone)."""
    sys_block = root / "sys/block"
    found = []
    for entry in sorted(sys_block.iterdir()) if sys_block.is_dir() else []:
        size = _sectors(entry / "size") * SECTOR
        if SKIPPED_BLOCK.match(entry.name) or not size or _sectors(entry / "ro"):
            continue
        partitions = tuple(
            sorted(
                (_sectors(part / "start") * SECTOR, _sectors(part / "size") * SECTOR)
                for part in entry.iterdir()
                if part.name.startswith(entry.name) and (part / "partition").exists()
            )
        )
        found.append(Disk(entry.name, root / "dev" / entry.name, size, partitions))
    return found


def merge(regions: Iterable[tuple[int, int]], size: int) -> list[tuple[int, int]]:
    """``(offset, length)`` regions clipped to ``[0, size)``, sorted, overlaps merged."""
    spans = sorted((max(0, off), min(size, off + length)) for off, length in regions if length > 0)
    merged: list[list[int]] = []
    for start, end in spans:
        if start >= end:
            continue
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(start, end - start) for start, end in merged]


def regions(disk: Disk, mode: Mode) -> list[tuple[int, int]]:
    """What a wipe of ``disk`` zeroes (see the module docstring), as merged regions."""
    if mode == "full":
        return [(0, disk.size)] if disk.size else []
    wanted = [(0, MIB), (disk.size - MIB, MIB)]
    for offset, length in disk.partitions:
        head = min(MIB, length)
        wanted += [(offset, head), (offset + length - head, head)]
    return merge(wanted, disk.size)


class Progress:
    """Bytes zeroed so far out of a total, safe to read from the heartbeat thread."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self._lock = threading.Lock()

    def add(self, count: int) -> None:
        """Count ``count`` more bytes done (from any thread)."""
        with self._lock:
            self.done += count

    def percent(self) -> int:
        """Bytes done as a whole percentage of the total (100 when there is nothing to do)."""
        with self._lock:
            return 100 if not self.total else int(self.done * 100 / self.total)


def zero(path: Path, spans: list[tuple[int, int]], progress: Callable[[int], None]) -> int:
    """Write zeros over ``spans`` of ``path``, fsync, and have the kernel re-read the
    partition table when ``path`` is a block device; returns the bytes written.

    Raises:
        OSError: when the device cannot be opened, written or synced.
    """
    zeros = bytes(CHUNK)
    written = 0
    fd = os.open(path, os.O_WRONLY)
    try:
        for offset, length in spans:
            end = offset + length
            while offset < end:
                count = os.pwrite(fd, zeros[: min(CHUNK, end - offset)], offset)
                offset += count
                written += count
                progress(count)
        os.fsync(fd)
        if stat.S_ISBLK(os.fstat(fd).st_mode):
            # EBUSY (something holds a partition) leaves the old table in the kernel's view
            # only; the disk itself is already zeroed.
            with contextlib.suppress(OSError):
                fcntl.ioctl(fd, BLKRRPART)
    finally:
        os.close(fd)
    return written


def wipe(targets: list[Disk], mode: Mode, progress: Progress | None = None) -> list[dict[str, Any]]:
    """Wipe every disk in ``targets``; ``{"name", "size", "bytesZeroed"}`` per disk.

    Raises:
        OSError: naming the disk that failed (the ones before it are wiped).
    """
    tracker = progress or Progress(total_bytes(targets, mode))
    results = []
    for disk in targets:
        try:
            count = zero(disk.path, regions(disk, mode), tracker.add)
        except OSError as exc:
            raise OSError(exc.errno, f"wiping {disk.name}: {exc.strerror or exc}") from exc
        results.append({"name": disk.name, "size": disk.size, "bytesZeroed": count})
    return results


def total_bytes(targets: list[Disk], mode: Mode) -> int:
    """How many bytes :func:`wipe` will write."""
    return sum(length for disk in targets for _, length in regions(disk, mode))
