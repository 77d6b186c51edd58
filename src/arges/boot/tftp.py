"""A read-only TFTP server (RFC 1350) with option negotiation (RFC 2347, 2348, 2349).

It serves the iPXE binaries to PXE firmware. This module holds the protocol: parsing,
option negotiation, packets and which paths are served; :mod:`arges.boot.tftpserver` runs the
transfers (each on its own UDP socket, its transfer ID; lost packets retransmitted after the
negotiated ``timeout``, RFC 2349, else backing off from 1 s). Options: ``blksize`` 8..65464
(RFC 2348), ``tsize`` (answered with the file size) and ``timeout`` 1..255 s; unknown options
are ignored, as RFC 2347 says.

Refused with a TFTP error, never served: writes (it is read-only), absolute paths, paths
with ``..``, names longer than 512 bytes, and directories that resolve outside the root (a
symlink in the root that names a file is followed: see :func:`resolve`). Malformed packets
are logged and dropped without disturbing transfers in progress.

Not tftpy: the maintained Python TFTP library writes uploads into the served directory,
joins absolute paths onto the root instead of refusing them, ignores RFC 2349's timeout,
and runs a blocking loop in a thread; adapting it meant patching its internal states.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from arges.errors import ArgesError

RRQ, WRQ, DATA, ACK, ERROR, OACK = 1, 2, 3, 4, 5, 6
NOT_FOUND, ACCESS_VIOLATION, ILLEGAL, UNKNOWN_TID, BAD_OPTION = 1, 2, 4, 5, 8
DEFAULT_BLKSIZE = 512
MIN_BLKSIZE, MAX_BLKSIZE = 8, 65464
MAX_NAME = 512
"""Longest file name served, in bytes: RFC 2347 bounds a whole request to 512 octets. Each
directory in a name costs a lookup, so without a bound a 60 KB name took seconds to refuse."""
NAME_MAX = 255
"""Longest name of one path component (Linux's ``NAME_MAX``)."""


class Refused(ArgesError):
    """A request that gets a TFTP ERROR packet: ``code`` and message."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class ReadRequest:
    """A parsed RRQ: file name, mode and options (lowercased names)."""

    filename: str
    mode: str
    options: dict[str, str]


def parse_request(data: bytes) -> ReadRequest:
    """Decode a request packet.

    Raises:
        Refused: for a write request, or a packet that is not a well-formed request.
    """
    if len(data) < 4:
        raise Refused(ILLEGAL, "packet too short")
    (opcode,) = struct.unpack("!H", data[:2])
    if opcode == WRQ:
        raise Refused(ACCESS_VIOLATION, "this TFTP server is read-only")
    if opcode != RRQ:
        raise Refused(ILLEGAL, f"expected a read request, got opcode {opcode}")
    fields = data[2:].split(b"\x00")
    if len(fields) < 3 or fields[-1] != b"":
        raise Refused(ILLEGAL, "malformed read request")
    try:
        parts = [f.decode("ascii") for f in fields[:-1]]
    except UnicodeDecodeError as exc:
        raise Refused(ILLEGAL, "file name and options must be ASCII") from exc
    filename, mode, rest = parts[0], parts[1].lower(), parts[2:]
    if mode not in ("octet", "netascii"):
        raise Refused(ILLEGAL, f"unsupported mode {mode!r}")
    if len(rest) % 2:
        raise Refused(ILLEGAL, "options must come in name/value pairs")
    options = {rest[i].lower(): rest[i + 1] for i in range(0, len(rest), 2)}
    return ReadRequest(filename, mode, options)


def resolve(root: Path, filename: str) -> Path:
    """The file ``filename`` names under ``root`` (``/`` and ``\\`` both separate).

    The name cannot leave the root: no absolute paths, no ``..``, no directory that
    resolves outside it. A symlink in the root that names a file is followed wherever it
    points, because whoever owns the root put it there: Debian's ``ipxe`` package ships
    ``/usr/lib/ipxe/ipxe.efi`` as a link to ``/boot/ipxe.efi``.

    Raises:
        Refused: for absolute paths, ``..``, directories outside the root, names longer than
            :data:`MAX_NAME` (or a component longer than :data:`NAME_MAX`), and names that
            are not files.
    """
    if not filename or filename.startswith(("/", "\\")):
        raise Refused(ACCESS_VIOLATION, "absolute paths are not served")
    if len(filename) > MAX_NAME:
        raise Refused(ILLEGAL, f"file names longer than {MAX_NAME} bytes are not served")
    parts = filename.replace("\\", "/").split("/")
    if ".." in parts:
        raise Refused(ACCESS_VIOLATION, "'..' is not allowed in paths")
    if any(len(part) > NAME_MAX for part in parts):
        raise Refused(NOT_FOUND, f"{filename}: file not found")
    base = root.resolve()
    try:
        directory = base.joinpath(*parts[:-1]).resolve()
        if directory != base and base not in directory.parents:
            raise Refused(ACCESS_VIOLATION, "path leaves the served directory")
        path = (directory / parts[-1]).resolve()
        found = bool(parts[-1]) and path.is_file()
    except OSError as exc:
        # What a lookup can still fail with (a path too long once links are followed, a
        # directory without permission): not a file that is served.
        raise Refused(NOT_FOUND, f"{filename}: file not found") from exc
    if not found:
        raise Refused(NOT_FOUND, f"{filename}: file not found")
    return path


def negotiate(options: dict[str, str], size: int) -> dict[str, str]:
    """The options to acknowledge (OACK); empty means plain RFC 1350.

    Raises:
        Refused: for option values out of range (error 8).
    """
    accepted: dict[str, str] = {}
    if "blksize" in options:
        try:
            blksize = int(options["blksize"])
        except ValueError as exc:
            raise Refused(BAD_OPTION, "blksize must be a number") from exc
        if blksize < MIN_BLKSIZE:
            raise Refused(BAD_OPTION, f"blksize {blksize} is below {MIN_BLKSIZE}")
        accepted["blksize"] = str(min(blksize, MAX_BLKSIZE))
    if "tsize" in options:
        accepted["tsize"] = str(size)
    if "timeout" in options:
        try:
            timeout = int(options["timeout"])
        except ValueError as exc:
            raise Refused(BAD_OPTION, "timeout must be a number") from exc
        if not 1 <= timeout <= 255:
            raise Refused(BAD_OPTION, f"timeout {timeout} is outside 1..255")
        accepted["timeout"] = str(timeout)
    return accepted


def error_packet(code: int, message: str) -> bytes:
    """An ERROR packet (RFC 1350): ``code`` and an ASCII message."""
    return struct.pack("!HH", ERROR, code) + message.encode("ascii", "replace") + b"\x00"


def oack_packet(options: dict[str, str]) -> bytes:
    """An OACK packet (RFC 2347) acknowledging ``options``."""
    body = b"".join(k.encode() + b"\x00" + v.encode() + b"\x00" for k, v in options.items())
    return struct.pack("!H", OACK) + body
