"""What a TFTP transfer reads from: hot small files from memory, the rest streamed.

A boot storm is a thousand firmwares asking for the same ~70 KiB ``undionly.kpxe`` within a
second. Reading it once per transfer costs a thousand opens and copies, so files up to
``max_file`` bytes are kept in memory, up to ``max_total`` bytes in all (least recently used
go first), and shared by every transfer. So are its DATA packets: the first transfer with a
given block size cuts the file into finished packets (header included, RFC 1350), every later
one sends them as they are, so a block costs no read, slice or copy; the packets count toward
``max_total`` like the file. A cached copy is used only while the file's identity and
``os.stat`` fingerprint (device, inode, size, modification time) are unchanged, so a replaced
binary is served at the next request. Larger files are not held in memory at all: each block is
read with ``os.pread`` from a descriptor the transfer keeps open, so serving an ISO costs one
block of memory per transfer.

Reads are blocking and run on the TFTP service's own thread (see
:mod:`arges.boot.tftpserver`), never on the loop that serves the API.
"""

from __future__ import annotations

import os
import struct
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

Fingerprint = tuple[int, int, int, int]
"""(device, inode, size, modification time in ns) of a file, from ``os.stat``."""


class Source:
    """An open file to serve: its size and its blocks. Close it when the transfer ends."""

    size: int

    def read(self, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes at ``offset`` (fewer at the end of the file).

        Raises:
            OSError: the file cannot be read.
        """
        raise NotImplementedError

    def packets(self, blksize: int) -> Sequence[bytes] | None:
        """Every DATA packet of the file at ``blksize`` (RFC 1350: opcode 3, the block number
        modulo 65536, up to ``blksize`` bytes; the last one shorter, empty when the size is a
        multiple), packet ``i`` carrying block ``i + 1``; None when the file is not in memory or
        would be more than ``MAX_PACKETS`` packets (read blocks with :meth:`read`)."""
        return None

    def close(self) -> None:
        """Release what the source holds (a file descriptor)."""


MAX_PACKETS = 8192
"""Files cut into more packets than this are read a block at a time instead: a tiny block
size asked for a large file would otherwise cost a burst of CPU and memory per request."""
_DATA_HEADER = struct.Struct("!HH")
_DATA = 3
_PACKET_OVERHEAD = 40
"""Bytes a packet costs beyond its contents (a ``bytes`` object and its list slot), counted
toward ``max_total``."""


class _Entry:
    """A file in memory: its fingerprint, its bytes, and its packets by block size."""

    __slots__ = ("data", "fingerprint", "packets")

    def __init__(self, fingerprint: Fingerprint, data: bytes) -> None:
        self.fingerprint = fingerprint
        self.data = data
        self.packets: dict[int, list[bytes]] = {}

    @property
    def cost(self) -> int:
        """Bytes held, as counted toward ``max_total``."""
        return len(self.data) + sum(
            len(self.data) + len(p) * (4 + _PACKET_OVERHEAD) for p in self.packets.values()
        )


def cut(data: bytes, blksize: int) -> list[bytes]:
    """``data`` as DATA packets of ``blksize`` (see :meth:`Source.packets`)."""
    view = memoryview(data)
    pack = _DATA_HEADER.pack
    return [
        pack(_DATA, (i + 1) & 0xFFFF) + view[offset : offset + blksize]
        for i, offset in enumerate(range(0, len(data) + 1, blksize))
    ]


class _Cached(Source):
    def __init__(self, cache: FileCache | None, entry: _Entry) -> None:
        self.cache = cache
        self.entry = entry
        self.size = len(entry.data)

    def read(self, offset: int, length: int) -> bytes:
        return self.entry.data[offset : offset + length]

    def packets(self, blksize: int) -> Sequence[bytes] | None:
        packets = self.entry.packets.get(blksize)
        if packets is None:
            if self.size // blksize >= MAX_PACKETS:
                return None
            packets = cut(self.entry.data, blksize)
            if self.cache is not None:
                self.cache._keep_packets(self.entry, blksize, packets)
        return packets


class _Streamed(Source):
    def __init__(self, fd: int, size: int) -> None:
        self.fd = fd
        self.size = size

    def read(self, offset: int, length: int) -> bytes:
        return os.pread(self.fd, length, offset)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class FileCache:
    """Opens files for transfers, keeping small ones in memory (see the module docstring)."""

    def __init__(self, *, max_file: int = 4 << 20, max_total: int = 32 << 20) -> None:
        self.max_file = max_file
        self.max_total = max_total
        self._files: OrderedDict[Path, _Entry] = OrderedDict()
        self._total = 0
        self.hits = 0
        self.misses = 0

    def open(self, path: Path) -> Source:
        """A source for ``path`` as it is now.

        Raises:
            OSError: the file cannot be opened or read.
        """
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            st = os.fstat(fd)
            fingerprint = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
            cached = self._files.get(path)
            if cached is not None and cached.fingerprint == fingerprint:
                self._files.move_to_end(path)
                self.hits += 1
                os.close(fd)
                return _Cached(self, cached)
            self.misses += 1
            if st.st_size > self.max_file:
                return _Streamed(fd, st.st_size)
            data = _read_all(fd, st.st_size)
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
        entry = _Entry(fingerprint, data)
        if len(data) != st.st_size:
            return _Cached(None, entry)  # changing as it was read: served, not kept
        self._store(path, entry)
        return _Cached(self, entry)

    def _store(self, path: Path, entry: _Entry) -> None:
        old = self._files.pop(path, None)
        if old is not None:
            self._total -= old.cost
        self._files[path] = entry
        self._total += entry.cost
        self._evict()

    def _keep_packets(self, entry: _Entry, blksize: int, packets: list[bytes]) -> None:
        """Keep ``entry``'s packets at ``blksize`` if it is still held (counted toward
        ``max_total``; older files go first to make room, as for a new file)."""
        if not any(held is entry for held in self._files.values()):
            return
        before = entry.cost
        entry.packets[blksize] = packets
        self._total += entry.cost - before
        self._evict()

    def _evict(self) -> None:
        while self._total > self.max_total and self._files:
            _, evicted = self._files.popitem(last=False)
            self._total -= evicted.cost


def _read_all(fd: int, size: int) -> bytes:
    """The file's bytes, read through to its end (a file that grew is read as it is)."""
    chunks: list[bytes] = []
    offset = 0
    while True:
        chunk = os.pread(fd, max(size - offset, 1 << 16), offset)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        offset += len(chunk)
