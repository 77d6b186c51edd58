"""Debian packages for the agent image: resolved by apt, fetched with ``apt-get download``,
verified against the archive's SHA-256, unpacked with ``dpkg-deb -x``.

Only the host's apt configuration is used (its sources and lists): no other download. The
candidate versions come from ``apt-cache show --no-all-versions`` (which also gives each
file's SHA-256, so the image's cache key is known before anything is fetched).
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from arges.errors import ArgesError


class BuildError(ArgesError):
    """The image cannot be built; the message says why and what to do."""


@dataclass(frozen=True)
class Deb:
    """A package version from the archive: name, version, architecture, SHA-256 (hex)."""

    name: str
    version: str
    architecture: str
    sha256: str

    @property
    def filename(self) -> str:
        """The name ``apt-get download`` saves it as (an epoch's colon becomes ``%3a``)."""
        return f"{self.name}_{self.version.replace(':', '%3a')}_{self.architecture}.deb"


def _run(argv: list[str], cwd: Path | None = None) -> str:
    try:
        out = subprocess.run(
            argv, cwd=cwd, capture_output=True, text=True, check=False, timeout=1800
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BuildError(f"{argv[0]} failed: {exc}") from exc
    if out.returncode != 0:
        detail = (out.stderr or out.stdout).strip().splitlines()
        raise BuildError(f"{' '.join(argv)} failed: {detail[-1] if detail else out.returncode}")
    return out.stdout


def _fields(stanza: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in stanza.splitlines():
        key, sep, value = line.partition(": ")
        if sep and not line.startswith(" "):
            fields[key] = value.strip()
    return fields


def show(names: list[str]) -> dict[str, dict[str, str]]:
    """The candidate versions' fields of packages ``names``, by package name (one
    ``apt-cache`` run: each takes about a second).

    Raises:
        BuildError: apt knows one of them not (its lists may need ``apt-get update``).
    """
    try:
        text = _run(["apt-cache", "show", "--no-all-versions", *names])
    except BuildError as exc:
        raise BuildError(f"{exc}; run `apt-get update` and try again") from exc
    found: dict[str, dict[str, str]] = {}
    for stanza in text.split("\n\n"):
        fields = _fields(stanza)
        if "Package" in fields and "Version" in fields and "SHA256" in fields:
            found.setdefault(fields["Package"], fields)
    missing = [n for n in names if n not in found]
    if missing:
        raise BuildError(f"apt-cache show gave no version of {', '.join(missing)}")
    return found


def resolve(names: list[str]) -> list[Deb]:
    """The candidates of ``names``; a metapackage ``linux-image-<flavour>`` resolves to the
    versioned kernel package it depends on (``linux-image-amd64`` → ``linux-image-6.1.0-N-
    amd64``), so the key names the kernel that is really inside.

    Raises:
        BuildError: see :func:`show`, or a kernel metapackage without a versioned kernel.
    """
    fields = show(names)
    renamed = {}
    for name in names:
        if re.match(r"^linux-image-(?!\d)", name):
            alternatives = re.split(r"[,|]", fields[name].get("Depends", ""))
            versioned = [a.strip().split(" ")[0] for a in alternatives]
            kernel = next((d for d in versioned if re.match(r"^linux-image-\d", d)), None)
            if kernel is None:
                raise BuildError(f"{name} depends on no versioned linux-image package")
            renamed[name] = kernel
    if renamed:
        fields.update(show(list(renamed.values())))
    debs = []
    for name in names:
        f = fields[renamed.get(name, name)]
        debs.append(Deb(f["Package"], f["Version"], f["Architecture"], f["SHA256"]))
    return debs


def sha256(path: Path) -> str:
    """The SHA-256 of the file at ``path``, lowercase hex (as a Debian ``Packages`` index
    gives it)."""
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def fetch(debs: list[Deb], cache: Path) -> list[Path]:
    """The ``.deb`` files of ``debs`` in ``cache``, downloading the missing ones; each is
    checked against its SHA-256 (a mismatching file is deleted).

    Raises:
        BuildError: a download failed or a file does not match.
    """
    cache.mkdir(parents=True, exist_ok=True)
    missing = [d for d in debs if not (cache / d.filename).exists()]
    if missing:
        # As root apt drops privileges to _apt for downloads, which cannot write an
        # arbitrary cache directory.
        sandbox = ["-o", "APT::Sandbox::User=root"] if os.geteuid() == 0 else []
        _run(
            ["apt-get", "download", "-q", *sandbox, *(f"{d.name}={d.version}" for d in missing)],
            cwd=cache,
        )
    paths = []
    for deb in debs:
        path = cache / deb.filename
        if not path.exists():
            raise BuildError(f"apt-get download did not produce {path.name}")
        if sha256(path) != deb.sha256:
            path.unlink()
            raise BuildError(f"{path.name} does not match the archive's SHA-256; deleted it")
        paths.append(path)
    return paths


def extract(deb: Path, into: Path) -> None:
    """Unpack the files of ``deb`` under ``into`` (no maintainer scripts run)."""
    into.mkdir(parents=True, exist_ok=True)
    _run(["dpkg-deb", "-x", str(deb), str(into)])
