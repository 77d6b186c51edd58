"""Target mode: the agent standing in for Talos where no Talos image can be had (the lab).

Booted with ``talos.config=URL`` (what ``/ipxe`` gives a bound server's target Environment),
the agent does what Talos does with it and nothing more: fills an empty ``uuid=`` query
value with the SMBIOS UUID (Talos' ``metal`` platform does the same), fetches the machine
config (retrying any failure or non-200 answer with exponential backoff, as Talos retries),
checks that it is a Talos ``v1alpha1`` machine config, writes it to the first disk, reports
``installed`` to ``<origin of URL>/agent/v1/report`` with the boot's credential (the URL's
``token=``) and stays up, as an installed Talos keeps running.

On-disk layout (so tests can read the config back from a disk image), at offset 0::

    ARGES-MACHINE-CONFIG v1 <length> <sha256 hex>\\n
    <length bytes of YAML>

There is no YAML parser in the image, so the check is small and honest: some document of
the config has ``version: v1alpha1`` at top level and a top-level ``machine:`` mapping whose
direct child ``type:`` is ``controlplane`` or ``worker`` (block style, as ``talosctl gen
config`` and Arges write it).
"""

from __future__ import annotations

import hashlib
import os
import re
import urllib.parse
from pathlib import Path

HEADER_PREFIX = b"ARGES-MACHINE-CONFIG v1 "
HEADER_RE = re.compile(rb"^ARGES-MACHINE-CONFIG v1 (\d+) ([0-9a-f]{64})\n")
MACHINE_TYPES = ("controlplane", "worker")


def config_url(url: str, uuid: str) -> str:
    """``url`` with an empty ``uuid=`` query value replaced by ``uuid``; other values kept."""
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    filled = [(k, uuid if k == "uuid" and not v else v) for k, v in query]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(filled)))


def origin(url: str) -> str:
    """``scheme://host[:port]`` of ``url``."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def token(url: str) -> str:
    """The boot's credential in ``url`` (its ``token=`` query value; "" when none)."""
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    return query.get("token", [""])[0]


def redacted(url: str) -> str:
    """``url`` with its credential replaced by ``***``, for log lines."""
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    shown = [(k, "***" if k == "token" else v) for k, v in query]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(shown)))


def _scalar(value: str) -> str:
    value = value.split(" #", 1)[0].strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        value = value[1:-1]
    return value


def _top_level(lines: list[str], key: str) -> int:
    return next((i for i, line in enumerate(lines) if re.match(rf"^{key}:(\s|$)", line)), -1)


def check(text: str) -> str:
    """Why ``text`` is not a Talos machine config ("" when it is one; see the module
    docstring for what is checked)."""
    if not text.strip():
        return "the machine config is empty"
    reasons = []
    for document in re.split(r"(?m)^---\s*$", text):
        lines = document.splitlines()
        version = _top_level(lines, "version")
        if version < 0 or _scalar(lines[version].split(":", 1)[1]) != "v1alpha1":
            reasons.append("no top-level version: v1alpha1")
            continue
        machine = _top_level(lines, "machine")
        if machine < 0:
            reasons.append("no top-level machine section")
            continue
        body = []
        for line in lines[machine + 1 :]:
            if line.strip() and not line.lstrip().startswith("#"):
                if not line[0].isspace():
                    break
                body.append(line)
        indent = len(body[0]) - len(body[0].lstrip()) if body else 0
        kind = next(
            (
                _scalar(line.split(":", 1)[1])
                for line in body
                if len(line) - len(line.lstrip()) == indent and line.strip().startswith("type:")
            ),
            None,
        )
        if kind in MACHINE_TYPES:
            return ""
        reasons.append("machine.type is missing" if kind is None else f"machine.type is {kind!r}")
    return (
        "not a Talos v1alpha1 machine config: "
        + "; ".join(dict.fromkeys(reasons))
        + (f" (machine.type must be one of {', '.join(MACHINE_TYPES)})")
    )


def encode(config: bytes) -> bytes:
    """The on-disk form of ``config`` (header line, then the YAML)."""
    digest = hashlib.sha256(config).hexdigest()
    return HEADER_PREFIX + f"{len(config)} {digest}\n".encode() + config


def decode(data: bytes) -> bytes:
    """The config held by ``data`` (the start of a disk).

    Raises:
        ValueError: no header, or the length or SHA-256 does not match.
    """
    match = HEADER_RE.match(data)
    if match is None:
        raise ValueError("no ARGES-MACHINE-CONFIG v1 header")
    length = int(match.group(1))
    config = data[match.end() : match.end() + length]
    if len(config) != length or hashlib.sha256(config).hexdigest() != match.group(2).decode():
        raise ValueError("the machine config on disk does not match its header")
    return config


def install(device: Path, config: bytes) -> None:
    """Write ``config`` to ``device`` at offset 0 in the on-disk form, and fsync.

    Raises:
        OSError: when the device cannot be written.
    """
    fd = os.open(device, os.O_WRONLY)
    try:
        data = encode(config)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
