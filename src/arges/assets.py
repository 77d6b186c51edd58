"""The asset cache: Environment kernels and initrds, fetched once, verified, served many times.

Layout under the cache root (``DATA_DIR/assets``)::

    <environment>/<asset>          the file (asset is "kernel" or "initrd")
    <environment>/<asset>.json     {"url", "sha512", "size"} of what the file holds

A fetch streams into a temporary file beside the target while computing its SHA-512, checks
it against the expected digest when one is given, and only then renames it into place and
writes the record, so a reader never sees a partial or unverified file, and a crash leaves
the previous copy intact. ``file://``, ``http://`` and ``https://`` URLs are supported.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import aiohttp

from arges.errors import ArgesError
from arges.names import dns1123_subdomain_errors

ASSETS = ("kernel", "initrd")
CHUNK = 1 << 20
FETCH_TIMEOUT = aiohttp.ClientTimeout(total=600, connect=10, sock_read=60)


class AssetError(ArgesError):
    """An asset could not be made available; ``reason`` is a condition reason
    (``InvalidURL``, ``FetchFailed``, ``ChecksumMismatch``)."""

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
    """Fetches and serves Environment assets (see the module docstring)."""

    def __init__(self, root: Path) -> None:
        self.root = root

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
        target.parent.mkdir(parents=True, exist_ok=True)
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
        record.write_text(json.dumps({"url": url, "sha512": digest, "size": size}))
        record.replace(target.with_suffix(".json"))
        return CachedAsset(target, url, digest, size)

    async def _fetch(self, url: str, dest: Path) -> tuple[str, int]:
        parsed = urlparse(url)
        if parsed.scheme == "file":
            source = Path(unquote(parsed.path))
            try:
                return await asyncio.to_thread(_copy_hashing, source, dest)
            except OSError as exc:
                raise AssetError(
                    "FetchFailed", f"cannot read {url}: {exc.strerror or exc}"
                ) from exc
        if parsed.scheme not in ("http", "https"):
            raise AssetError("InvalidURL", f"{url!r}: only file://, http:// and https:// URLs")
        hasher = hashlib.sha512()
        size = 0
        try:
            async with (
                aiohttp.ClientSession(timeout=FETCH_TIMEOUT) as session,
                session.get(url) as resp,
            ):
                if resp.status != 200:
                    raise AssetError("FetchFailed", f"GET {url}: HTTP {resp.status}")
                with dest.open("wb") as out:
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

    def remove(self, environment: str) -> None:
        """Drop every cached asset of ``environment``."""
        if not dns1123_subdomain_errors(environment):
            shutil.rmtree(self.root / environment, ignore_errors=True)


def _copy_hashing(source: Path, dest: Path) -> tuple[str, int]:
    hasher = hashlib.sha512()
    size = 0
    with source.open("rb") as src, dest.open("wb") as out:
        while chunk := src.read(CHUNK):
            hasher.update(chunk)
            out.write(chunk)
            size += len(chunk)
    return hasher.hexdigest(), size


def _fsync_rename(partial: Path, target: Path) -> None:
    with partial.open("rb") as f:
        os.fsync(f.fileno())
    partial.replace(target)
