"""The stand-in image: the agent image with the fake apid added, for the lab's ``default``
Environment (``arges up --talos-stand-in``).

Its initramfs is the agent's followed by a second gzip'd cpio archive (the kernel unpacks them
in order, later files replacing earlier ones), which holds:

- ``/init`` (``init.sh`` beside this module): the agent's ``/init``, moved to
  ``/init-agent``, with :mod:`arges.lab.standin.apid` started beside it (and ``/dev/null``,
  which that needs before devtmpfs is mounted);
- from Debian packages: ``libssl3`` (what Python's ``_ssl`` links), ``libgcc-s1`` (what
  cryptography's Rust extension links), and from the agent's Python packages the standard
  library modules and extension modules in :data:`STDLIB` and :data:`DYNLOAD` that the agent
  image leaves out, with the shared libraries they need (those not in the agent image);
- vendored from this project's own virtualenv (the versions the tests run with; pure Python
  but for cryptography's and cffi's extensions): :data:`VENDORED`, under
  ``/usr/lib/arges-vendor``;
- Arges' modules the program imports (:data:`ARGES`), under ``/usr/lib/arges``.

The lists are what ``python3 -S`` imports for ``arges.lab.standin.apid`` (measured; a test
checks they still cover it). Repeatable and offline after the first fetch: the cache key is
the SHA-256 of the agent initramfs, the packages' SHA-256s, this builder's and every file's
bytes; images are
kept in ``DATA_DIR/standin/<key>/standin.img`` with ``manifest.json``; packages in
``DATA_DIR/standin/debs``.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from arges.agent.image import build, cpio
from arges.agent.image.debs import BuildError, Deb, extract, fetch, resolve

log = logging.getLogger(__name__)

BUILDER_VERSION = 1
PACKAGES = ("libssl3", "libgcc-s1")
PYTHON_PACKAGES = ("libpython3.11-minimal", "libpython3.11-stdlib", "libc6")
"""The agent's packages the overlay takes more files from (read from its package cache)."""
PYTHON = build.PYTHON
STDLIB = (
    "_compression.py",
    "asyncio/",
    "concurrent/",
    "contextvars.py",
    "csv.py",
    "decimal.py",
    "gzip.py",
    "heapq.py",
    "hmac.py",
    "importlib/abc.py",
    "importlib/metadata/",
    "importlib/resources/",
    "importlib/util.py",
    "numbers.py",
    "platform.py",
    "secrets.py",
    "shutil.py",
    "ssl.py",
    "tarfile.py",
    "tempfile.py",
    "zipfile.py",
)
"""Standard library files the program needs beyond the agent's (``build.PYTHON_FILES``)."""
DYNLOAD = (
    "_asyncio",
    "_bisect",
    "_blake2",
    "_contextvars",
    "_csv",
    "_datetime",
    "_decimal",
    "_hashlib",
    "_heapq",
    "_json",
    "_opcode",
    "_posixsubprocess",
    "_random",
    "_sha512",
    "_socket",
    "_ssl",
    "_struct",
    "_typing",
    "array",
    "binascii",
    "fcntl",
    "grp",
    "math",
    "select",
    "zlib",
)
"""Extension modules it imports; those Debian builds into the interpreter are not files.
(``bz2`` and ``lzma``, which ``shutil`` and ``tarfile`` import when they can, are left out
with their libraries.)"""
VENDORED = (
    "_cffi_backend.cpython-311-x86_64-linux-gnu.so",
    "betterproto",
    "cryptography",
    "dateutil",
    "grpclib",
    "h2",
    "hpack",
    "hyperframe",
    "multidict",
    "six.py",
    "talos_linux_api",
    "typing_extensions.py",
    "yaml",
)
"""Top-level modules taken from the virtualenv, with their distributions' ``METADATA``; of
their extensions only cryptography's and cffi's (multidict and PyYAML fall back to pure
Python without theirs)."""
KEPT_EXTENSIONS = ("_cffi_backend", "_rust.abi3")
ARGES = (
    "arges/certs.py",
    "arges/errors.py",
    "arges/tasks.py",
    "arges/agent/collect.py",
    "arges/agent/target.py",
    "arges/agent/wipe.py",
    "arges/lab/__init__.py",
    "arges/lab/standin/__init__.py",
    "arges/lab/standin/apid.py",
    "arges/lab/standin/node.py",
    "arges/talos/__init__.py",
    "arges/talos/applymode.py",
    "arges/talos/components.py",
    "arges/talos/documents.py",
    "arges/talos/errors.py",
    "arges/talos/fakeapi.py",
    "arges/talos/fakemachine.py",
    "arges/talos/faketrustd.py",
    "arges/talos/secrets.py",
    "arges/talos/talosconfig.py",
    "arges/talos/tls.py",
)
HERE = Path(__file__).resolve().parent
SOURCE_ROOT = HERE.parents[2]
VENDOR_DIR = "usr/lib/arges-vendor"


@dataclass(frozen=True)
class StandIn:
    """A built stand-in initramfs and its SHA-512, and whether this build reused it."""

    initrd: Path
    sha512: str
    reused: bool = False


def site_packages() -> Path:
    """Where this interpreter's third-party packages are (the virtualenv's)."""
    return Path(next(p for p in sys.path if p.endswith("site-packages")))


def _vendored(site: Path) -> dict[str, Path]:
    """The vendored files, by their path under :data:`VENDOR_DIR`."""
    out: dict[str, Path] = {}
    for name in VENDORED:
        top = site / name
        if not top.exists():
            raise BuildError(f"{name} is not installed in {site}; run scripts/install")
        paths = [top] if top.is_file() else sorted(p for p in top.rglob("*") if p.is_file())
        for path in paths:
            rel = str(path.relative_to(site))
            if "__pycache__" in path.parts or path.suffix in (".pyi", ".pyc"):
                continue
            if path.suffix == ".so" and not any(k in path.name for k in KEPT_EXTENSIONS):
                continue
            out[rel] = path
    tops = {name.split(".")[0] for name in VENDORED}
    for info in sorted(site.glob("*.dist-info")):
        record = info / "RECORD"
        owned = {
            line.split("/")[0].split(".")[0]
            for line in (record.read_text().splitlines() if record.exists() else [])
        }
        if owned & tops and (info / "METADATA").exists():
            # importlib.metadata reads it (betterproto asks its own version).
            out[f"{info.name}/METADATA"] = info / "METADATA"
    return out


def _arges() -> dict[str, Path]:
    return {name: SOURCE_ROOT / name for name in ARGES}


def cache_key(agent_initrd: bytes, debs: list[Deb], files: dict[str, Path]) -> str:
    """SHA-256 (hex) of everything the stand-in image is made from."""
    inputs = {
        "builder": BUILDER_VERSION,
        "source": hashlib.sha256((HERE / "image.py").read_bytes()).hexdigest(),
        "agent": hashlib.sha256(agent_initrd).hexdigest(),
        "debs": sorted([d.name, d.version, d.sha256] for d in debs),
        "files": {k: hashlib.sha256(v.read_bytes()).hexdigest() for k, v in sorted(files.items())},
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def base_paths(initrd: bytes) -> set[str]:
    """The paths in a gzip'd newc archive (the agent image's), to leave out of the overlay."""
    raw = gzip.decompress(initrd)
    out, pos = set(), 0
    while pos + 110 <= len(raw) and raw[pos : pos + 6] == cpio.MAGIC:
        size, namesize = int(raw[pos + 54 : pos + 62], 16), int(raw[pos + 94 : pos + 102], 16)
        name = raw[pos + 110 : pos + 110 + namesize - 1].decode()
        if name == cpio.TRAILER:
            break
        out.add(name)
        pos += 110 + namesize
        pos += -pos % 4
        pos += size + (-size % 4)
    return out


def ensure(data_dir: Path, agent_initrd_path: Path) -> StandIn:
    """The stand-in initramfs for the agent initramfs at ``agent_initrd_path``: from
    ``DATA_DIR/standin/<key>`` when built before, else built now.

    Raises:
        BuildError: a package cannot be resolved, fetched or unpacked, a file is missing
            (also when the agent initramfs cannot be read).
    """
    try:
        agent_initrd = agent_initrd_path.read_bytes()
    except OSError as exc:
        raise BuildError(f"cannot read the agent initramfs: {exc}") from exc
    extra = resolve(list(PACKAGES))
    python = resolve(list(PYTHON_PACKAGES))
    files = {f"{VENDOR_DIR}/{k}": v for k, v in _vendored(site_packages()).items()}
    files |= {f"usr/lib/arges/{k}": v for k, v in _arges().items()}
    files["init"] = HERE / "init.sh"
    files["init-agent"] = build.HERE / "init.sh"
    key = cache_key(agent_initrd, [*extra, *python], files)
    root = data_dir / "standin"
    out_dir = root / key[:16]
    manifest = out_dir / "manifest.json"
    with_sum = _load(out_dir)
    if with_sum is not None:
        return with_sum
    log.info("building the stand-in image %s", key[:16])
    paths = fetch(extra, root / "debs") + fetch(python, data_dir / "agent" / "debs")
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix=".build-") as tmp:
        work = Path(tmp)
        for path in paths:
            extract(path, work / "debs")
        entries = _overlay(work / "debs", files, base_paths(agent_initrd))
        data = agent_initrd + cpio.compress(cpio.archive(entries))
        staged = work / "out"
        staged.mkdir()
        (staged / "standin.img").write_bytes(data)
        digest = hashlib.sha512(data).hexdigest()
        (staged / "manifest.json").write_text(
            json.dumps({"key": key, "sha512": digest, "size": len(data)}, indent=2) + "\n"
        )
        shutil.rmtree(out_dir, ignore_errors=True)
        staged.rename(out_dir)
    for entry in root.iterdir():
        if entry.is_dir() and entry.name not in (out_dir.name, "debs") and len(entry.name) == 16:
            shutil.rmtree(entry, ignore_errors=True)
    built = _load(out_dir)
    if built is None or not manifest.exists():
        raise BuildError(f"the stand-in image in {out_dir} does not match its manifest")
    log.info("stand-in image %s: %.1f MiB", out_dir, built.initrd.stat().st_size / 2**20)
    return StandIn(built.initrd, built.sha512, reused=False)


def _load(directory: Path) -> StandIn | None:
    try:
        manifest = json.loads((directory / "manifest.json").read_text())
        initrd = directory / "standin.img"
        with initrd.open("rb") as f:
            digest = hashlib.file_digest(f, "sha512").hexdigest()
    except (OSError, ValueError):
        return None
    if digest != manifest.get("sha512"):
        return None
    return StandIn(initrd, digest, reused=True)


def _overlay(debs: Path, files: dict[str, Path], base: set[str]) -> list[cpio.Entry]:
    """The overlay's entries: ``files``, the standard library parts, and every shared
    library the extensions need that the agent image lacks."""
    staged: dict[str, bytes] = {k: v.read_bytes() for k, v in files.items()}
    perms = {"init": 0o755, "init-agent": 0o755}
    for name in STDLIB:
        rel = f"{PYTHON}/{name}"
        found = (
            sorted(p for p in (debs / rel).rglob("*.py") if "__pycache__" not in p.parts)
            if name.endswith("/")
            else [debs / rel]
        )
        for path in found:
            if not path.is_file():
                raise BuildError(f"{rel} is not in the Python packages")
            staged[str(path.relative_to(debs))] = path.read_bytes()
    elves: list[str] = []
    for module in DYNLOAD:
        rel = f"{PYTHON}/lib-dynload/{module}.cpython-311-x86_64-linux-gnu.so"
        if (debs / rel).is_file():
            staged[rel] = (debs / rel).read_bytes()
            elves.append(rel)
    elves += [k for k in staged if k.endswith(".so")]
    libraries = _libraries(debs, [staged[e] for e in elves], base)
    staged |= libraries
    entries = []
    directories: set[str] = set()
    for name in sorted(staged):
        if name in base and name != "init":
            continue
        perm = perms.get(name, 0o755 if name.endswith(".so") or ".so." in name else 0o644)
        entries.append(cpio.file(name, staged[name], perm))
        parent = Path(name).parent
        while str(parent) != ".":
            directories.add(str(parent))
            parent = parent.parent
    # The kernel creates no directory an archive does not list.
    entries += [cpio.directory(d) for d in sorted(directories - base)]
    # /init starts the apid in the background before the agent's /init mounts devtmpfs, and
    # busybox sh opens /dev/null for a background job's input.
    entries.append(cpio.char_device("dev/null", 1, 3, 0o666))
    return entries


def _libraries(debs: Path, elves: list[bytes], base: set[str]) -> dict[str, bytes]:
    """The shared libraries ``elves`` need, transitively, that ``base`` does not hold (by
    path, from the unpacked packages; symlinked names are copied as the files they name)."""
    found: dict[str, bytes] = {}
    todo = list(elves)
    while todo:
        _, needed = build.elf_dependencies(todo.pop())
        for soname in needed:
            rel = next(
                (f"{d}/{soname}" for d in build.LIBRARY_DIRS if (debs / d / soname).exists()),
                None,
            )
            if rel is None:
                raise BuildError(f"an extension needs {soname}, which no package here has")
            if rel in base or rel in found:
                continue
            data = (debs / rel).resolve().read_bytes()
            found[rel] = data
            todo.append(data)
    return found
