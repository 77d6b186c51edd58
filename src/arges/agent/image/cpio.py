"""A reproducible initramfs archive: the "newc" cpio format, gzip-compressed.

newc (``Documentation/driver-api/early-userspace/buffer-format.rst``): per entry a 110-byte
ASCII header (magic ``070701``, then 13 fields as 8 hex digits: ino, mode, uid, gid, nlink,
mtime, filesize, devmajor, devminor, rdevmajor, rdevminor, namesize, check), the NUL-
terminated name, padding to 4 bytes, the data, padding to 4 bytes; the archive ends with
the entry ``TRAILER!!!``.

Reproducible by construction: entries sorted by path (so a directory precedes what it
holds), owner 0:0, mtime 0, inode numbers counted in that order, gzip header mtime 0 and no
file name.
"""

from __future__ import annotations

import gzip
import io
import itertools
import stat
from dataclasses import dataclass

MAGIC = b"070701"
TRAILER = "TRAILER!!!"


@dataclass(frozen=True)
class Entry:
    """One archive member: ``path`` without a leading slash, POSIX ``mode`` (type and
    permissions), ``data`` (file contents or symlink target), ``rdev`` (major, minor) for
    device nodes."""

    path: str
    mode: int
    data: bytes = b""
    rdev: tuple[int, int] = (0, 0)


def directory(path: str, perm: int = 0o755) -> Entry:
    """A directory entry at ``path`` (no leading ``/``) with permission bits ``perm``."""
    return Entry(path, stat.S_IFDIR | perm)


def file(path: str, data: bytes, perm: int = 0o644) -> Entry:
    """A regular file at ``path`` holding ``data``, with permission bits ``perm``."""
    return Entry(path, stat.S_IFREG | perm, data)


def symlink(path: str, target: str) -> Entry:
    """A symbolic link at ``path`` to ``target`` (cpio stores the target as the data)."""
    return Entry(path, stat.S_IFLNK | 0o777, target.encode())


def char_device(path: str, major: int, minor: int, perm: int = 0o600) -> Entry:
    """A character device node at ``path`` with device number ``major:minor``."""
    return Entry(path, stat.S_IFCHR | perm, rdev=(major, minor))


def _pad(length: int) -> bytes:
    return b"\0" * (-length % 4)


def _header(ino: int, entry: Entry, name: bytes, size: int) -> bytes:
    nlink = 2 if stat.S_ISDIR(entry.mode) else 1
    fields = (ino, entry.mode, 0, 0, nlink, 0, size, 0, 0, *entry.rdev, len(name), 0)
    return MAGIC + b"".join(b"%08X" % f for f in fields)


def archive(entries: list[Entry]) -> bytes:
    """The uncompressed newc archive of ``entries`` in path order.

    Raises:
        ValueError: two entries with the same path.
    """
    ordered = sorted(entries, key=lambda e: e.path)
    for first, second in itertools.pairwise(ordered):
        if first.path == second.path:
            raise ValueError(f"{first.path} is in the archive twice")
    out = io.BytesIO()
    for ino, entry in enumerate([*ordered, Entry(TRAILER, 0)], start=1):
        name = entry.path.encode() + b"\0"
        data = entry.data if entry.path != TRAILER else b""
        head = _header(0 if entry.path == TRAILER else ino, entry, name, len(data))
        out.write(head + name + _pad(len(head) + len(name)) + data + _pad(len(data)))
    return out.getvalue()


def compress(data: bytes) -> bytes:
    """gzip at level 9 with header mtime 0 (and so the same bytes for the same input)."""
    return gzip.compress(data, compresslevel=9, mtime=0)
