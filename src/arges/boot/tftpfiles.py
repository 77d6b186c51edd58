"""What a TFTP transfer reads from: hot small files from memory, the rest streamed.

A boot storm is a thousand firmwares asking for the same ~70 KiB ``undionly.kpxe`` within a
second. Reading it once per transfer costs a thousand opens and copies, so files up to
``max_file`` bytes are kept in memory, up to ``max_total`` bytes in all (least recently used
go first), and shared by every transfer: blocks are slices of one ``bytes``. A cached copy is
used only while the file's identity and ``os.stat`` fingerprint (device, inode, size,
modification time) are unchanged, so a replaced binary is served at the next request. Larger
files are not held in memory at all: each block is read with ``os.pread`` from a descriptor the
transfer keeps open, so serving an ISO costs one block of memory per transfer.

Reads are blocking and run on the TFTP service's own thread (see
:mod:`arges.boot.tftpserver`), never on the loop that serves the API.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass
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

    def close(self) -> None:
        """Release what the source holds (a file descriptor)."""


@dataclass
class _Cached(Source):
    data: bytes
    size: int

    def read(self, offset: int, length: int) -> bytes:
        return self.data[offset : offset + length]


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
        self._files: OrderedDict[Path, tuple[Fingerprint, bytes]] = OrderedDict()
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
            if cached is not None and cached[0] == fingerprint:
                self._files.move_to_end(path)
                self.hits += 1
                os.close(fd)
                return _Cached(cached[1], len(cached[1]))
            self.misses += 1
            if st.st_size > self.max_file:
                return _Streamed(fd, st.st_size)
            data = _read_all(fd, st.st_size)
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
        if len(data) == st.st_size:
            self._store(path, fingerprint, data)
        return _Cached(data, len(data))

    def _store(self, path: Path, fingerprint: Fingerprint, data: bytes) -> None:
        old = self._files.pop(path, None)
        if old is not None:
            self._total -= len(old[1])
        self._files[path] = (fingerprint, data)
        self._total += len(data)
        while self._total > self.max_total and self._files:
            _, (_, evicted) = self._files.popitem(last=False)
            self._total -= len(evicted)


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
