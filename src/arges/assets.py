"""The asset cache: Environment kernels and initrds, fetched once, verified, served many times.

Layout under the cache root (``DATA_DIR/assets``)::

    <environment>/<asset>          the file (asset is "kernel" or "initrd")
    <environment>/<asset>.json     {"url", "sha512", "size"} of what the file holds

A fetch streams into a temporary file beside the target while computing its SHA-512, checks
it against the expected digest when one is given, and only then renames it into place and
writes the record, so a reader never sees a partial or unverified file, and a crash leaves
the previous copy intact. The cache's directories are mode 0700, its files 0600.

URLs are ``http://`` and ``https://``; ``file://`` only for a path inside one of the
``file_roots`` the cache was given (``arges up --asset-dir``, the agent image's directory),
checked on the path with every symlink resolved and before anything is opened: whatever the
cache holds is served to anyone on the provisioning network, so an Environment must not be
able to name ``DATA_DIR/pki/ca.key`` or a service-account token. Nothing inside a *private*
directory (the data directory) is granted by a root around it (``--asset-dir /``, say), only
by a root inside it (the agent image's). Anything else is refused with reason
``URLNotAllowed`` (``InvalidURL`` for other schemes).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlparse

import aiohttp

from arges.errors import ArgesError
from arges.names import dns1123_subdomain_errors

ASSETS = ("kernel", "initrd")
CHUNK = 1 << 20
FETCH_TIMEOUT = aiohttp.ClientTimeout(total=600, connect=10, sock_read=60)


class AssetError(ArgesError):
    """An asset could not be made available; ``reason`` is a condition reason
    (``InvalidURL``, ``URLNotAllowed``, ``FetchFailed``, ``ChecksumMismatch``)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class CachedAsset:
    """A verified file in the cache."""

    path: Path
    url: str
    sha512: str
    size: int


class AssetCache:
    """Fetches and serves Environment assets (see the module docstring); ``file_roots`` are
    the files and directories ``file://`` URLs may name, ``private`` the directories whose
    files only a root inside them grants."""

    def __init__(
        self, root: Path, file_roots: Sequence[Path] = (), private: Sequence[Path] = ()
    ) -> None:
        self.root = root
        self.file_roots = [Path(os.path.realpath(p)) for p in file_roots]
        self.private = [Path(os.path.realpath(p)) for p in private]

    def secure(self) -> None:
        """Bring a cache written before its modes were enforced to 0700/0600."""
        if not self.root.is_dir():
            return
        self.root.chmod(0o700)
        for directory, dirs, files in os.walk(self.root):
            for name in dirs:
                (Path(directory) / name).chmod(0o700)
            for name in files:
                (Path(directory) / name).chmod(0o600)

    def path(self, environment: str, asset: str) -> Path:
        """Where ``asset`` of ``environment`` lives.

        Raises:
            ValueError: for an environment name that is not a DNS-1123 subdomain (so never a
                path outside the cache) or an unknown asset.
        """
        if dns1123_subdomain_errors(environment) or asset not in ASSETS:
            raise ValueError(f"no such asset: {environment}/{asset}")
        return self.root / environment / asset

    def cached(self, environment: str, asset: str) -> CachedAsset | None:
        """The verified copy of ``asset``, if the cache holds one."""
        path = self.path(environment, asset)
        try:
            record = json.loads(path.with_suffix(".json").read_text())
            size = path.stat().st_size
        except (OSError, ValueError):
            return None
        if size != record.get("size"):
            return None
        return CachedAsset(path, str(record["url"]), str(record["sha512"]), size)

    async def ensure(
        self, environment: str, asset: str, url: str, sha512: str | None
    ) -> CachedAsset:
        """A verified copy of ``url`` as ``asset`` of ``environment``, fetched if needed.

        Raises:
            AssetError: the URL is unusable, the fetch failed, or the digest differs.
        """
        want = sha512.lower() if sha512 else None
        have = self.cached(environment, asset)
        if have is not None and have.url == url and (want is None or have.sha512 == want):
            return have
        target = self.path(environment, asset)
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        partial = target.with_name(f".{asset}.partial")
        digest, size = await self._fetch(url, partial)
        if want is not None and digest != want:
            partial.unlink(missing_ok=True)
            raise AssetError(
                "ChecksumMismatch",
                f"{url} has SHA-512 {digest[:16]}..., expected {want[:16]}...; not served",
            )
        await asyncio.to_thread(_fsync_rename, partial, target)
        record = target.with_name(f".{asset}.json.partial")
        with _private(record) as out:
            out.write(json.dumps({"url": url, "sha512": digest, "size": size}).encode())
        record.replace(target.with_suffix(".json"))
        return CachedAsset(target, url, digest, size)

    async def _fetch(self, url: str, dest: Path) -> tuple[str, int]:
        parsed = urlparse(url)
        if parsed.scheme == "file":
            source = self._allowed_file(url, parsed.netloc, unquote(parsed.path))
            try:
                return await asyncio.to_thread(_copy_hashing, source, dest)
            except OSError as exc:
                raise AssetError(
                    "FetchFailed", f"cannot read {url}: {exc.strerror or exc}"
                ) from exc
        if parsed.scheme not in ("http", "https"):
            raise AssetError(
                "InvalidURL",
                f"{url!r}: only http:// and https:// URLs (file:// from an --asset-dir)",
            )
        hasher = hashlib.sha512()
        size = 0
        try:
            async with (
                aiohttp.ClientSession(timeout=FETCH_TIMEOUT) as session,
                session.get(url) as resp,
            ):
                if resp.status != 200:
                    raise AssetError("FetchFailed", f"GET {url}: HTTP {resp.status}")
                with _private(dest) as out:
                    async for chunk in resp.content.iter_chunked(CHUNK):
                        hasher.update(chunk)
                        out.write(chunk)
                        size += len(chunk)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            await asyncio.to_thread(dest.unlink, missing_ok=True)
            raise AssetError(
                "FetchFailed", f"cannot fetch {url}: {exc or type(exc).__name__}"
            ) from exc
        return hasher.hexdigest(), size

    def _allowed_file(self, url: str, host: str, path: str) -> Path:
        """The resolved path a ``file://`` URL names, if it is inside a file root (and, inside
        a private directory, a root inside that too).

        Raises:
            AssetError: URLNotAllowed otherwise (saying which roots are allowed).
        """
        resolved = Path(os.path.realpath(path)) if path.startswith("/") else None
        walls = [p for p in self.private if resolved is not None and resolved.is_relative_to(p)]
        if host in ("", "localhost") and resolved is not None:
            for root in self.file_roots:
                if resolved.is_relative_to(root) and all(root.is_relative_to(p) for p in walls):
                    return resolved
        roots = ", ".join(str(r) for r in self.file_roots) or "none"
        if walls:
            raise AssetError(
                "URLNotAllowed",
                f"{url}: file:// URLs may not name files in Arges' data directory "
                f"({walls[0]}: its keys, tokens and state), whatever --asset-dir allows "
                f"(allowed: {roots})",
            )
        raise AssetError(
            "URLNotAllowed",
            f"{url}: file:// URLs may only name files in the directories given to `arges up` "
            f"with --asset-dir (allowed: {roots})",
        )

    def remove(self, environment: str) -> None:
        """Drop every cached asset of ``environment``."""
        if not dns1123_subdomain_errors(environment):
            shutil.rmtree(self.root / environment, ignore_errors=True)


def _private(path: Path) -> BinaryIO:
    """``path`` opened for writing, truncated, created with mode 0600."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb")


def _copy_hashing(source: Path, dest: Path) -> tuple[str, int]:
    hasher = hashlib.sha512()
    size = 0
    # O_NOFOLLOW: the path was checked with its symlinks resolved; one swapped in since is
    # not followed.
    fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as src, _private(dest) as out:
        while chunk := src.read(CHUNK):
            hasher.update(chunk)
            out.write(chunk)
            size += len(chunk)
    return hasher.hexdigest(), size


def _fsync_rename(partial: Path, target: Path) -> None:
    with partial.open("rb") as f:
        os.fsync(f.fileno())
    partial.replace(target)
