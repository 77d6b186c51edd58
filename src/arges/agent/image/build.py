"""Building the agent image: a Debian kernel and an initramfs of Debian packages.

What goes in (all from the packages in :data:`PACKAGES`, never from the host's files):

- ``vmlinuz``: the kernel of ``linux-image-amd64`` (resolved to its versioned package);
- the initramfs: ``/init`` (``init.sh`` beside this module), busybox (static), Python
  (``python3.11`` and the standard library files in :data:`PYTHON_FILES`, the ones the
  agent imports, measured), ``dmidecode``, the shared libraries those binaries need
  (followed through their ELF ``DT_NEEDED`` entries), the kernel modules in
  :data:`MODULES` with their dependencies (``depmod`` from kmod indexes them), the udhcpc
  script, and the agent's own sources (``arges/agent/*.py`` and the :data:`SHARED_MODULES`).

Repeatable: the cache key is the SHA-256 of the packages' SHA-256s, the builder's and the
agent's sources; the archive has sorted entries, owner 0:0, mtime 0, normalised
permissions, and gzip mtime 0, so the same key gives the same bytes. Images are kept in
``DATA_DIR/agent/<key>/`` (``vmlinuz``, ``initramfs.img``, ``manifest.json`` with
SHA-512s) and a build with a key already there reuses it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
import shutil
import struct
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from arges.agent.image import cpio
from arges.agent.image.debs import BuildError, Deb, extract, fetch, resolve

log = logging.getLogger(__name__)

BUILDER_VERSION = 1
"""Bumped when the image's layout changes in a way its inputs do not show."""
PACKAGES = (
    "linux-image-amd64",
    "busybox-static",
    "python3.11-minimal",
    "libpython3.11-minimal",
    "libpython3.11-stdlib",
    "dmidecode",
    "libc6",
    "zlib1g",
    "libexpat1",
)
"""The Debian packages the image is made of (libc6, zlib1g and libexpat1 are what
python3.11 and dmidecode link against)."""
MODULES = (
    "virtio_pci",
    "virtio_blk",
    "virtio_scsi",
    "virtio_net",
    "nvme",
    "ahci",
    "sd_mod",
    "e1000",
    "e1000e",
    "igb",
    "ixgbe",
    "i40e",
    "tg3",
    "bnxt_en",
    "r8169",
)
"""Disk and NIC drivers /init loads (those built into the kernel are skipped)."""
PYTHON = "usr/lib/python3.11"
PYTHON_FILES = (
    "__future__.py",
    "_collections_abc.py",
    "_weakrefset.py",
    "abc.py",
    "ast.py",
    "base64.py",
    "bisect.py",
    "calendar.py",
    "codecs.py",
    "collections/",
    "contextlib.py",
    "copy.py",
    "copyreg.py",
    "dataclasses.py",
    "datetime.py",
    "dis.py",
    "email/__init__.py",
    "email/_encoded_words.py",
    "email/_parseaddr.py",
    "email/_policybase.py",
    "email/base64mime.py",
    "email/charset.py",
    "email/encoders.py",
    "email/errors.py",
    "email/feedparser.py",
    "email/header.py",
    "email/iterators.py",
    "email/message.py",
    "email/parser.py",
    "email/quoprimime.py",
    "email/utils.py",
    "encodings/__init__.py",
    "encodings/aliases.py",
    "encodings/ascii.py",
    "encodings/idna.py",
    "encodings/latin_1.py",
    "encodings/utf_8.py",
    "enum.py",
    "fnmatch.py",
    "functools.py",
    "genericpath.py",
    "hashlib.py",
    "http/__init__.py",
    "http/client.py",
    "importlib/__init__.py",
    "importlib/_abc.py",
    "importlib/_bootstrap.py",
    "importlib/_bootstrap_external.py",
    "importlib/machinery.py",
    "inspect.py",
    "io.py",
    "ipaddress.py",
    "json/",
    "keyword.py",
    "linecache.py",
    "locale.py",
    "logging/__init__.py",
    "ntpath.py",
    "opcode.py",
    "operator.py",
    "os.py",
    "pathlib.py",
    "posixpath.py",
    "quopri.py",
    "random.py",
    "re/",
    "reprlib.py",
    "selectors.py",
    "signal.py",
    "socket.py",
    "stat.py",
    "string.py",
    "stringprep.py",
    "struct.py",
    "subprocess.py",
    "textwrap.py",
    "threading.py",
    "token.py",
    "tokenize.py",
    "traceback.py",
    "types.py",
    "typing.py",
    "urllib/__init__.py",
    "urllib/parse.py",
    "warnings.py",
    "weakref.py",
    "zipimport.py",
)
"""The standard library the agent loads (``sys.modules`` after importing
:mod:`arges.agent.main` under ``python3 -S``, plus the codecs a traceback or a host name
may need), relative to ``usr/lib/python3.11``; a trailing slash takes a whole package.
No extension modules: ``_json``, ``_hashlib`` and ``_ssl`` have pure or built-in
fallbacks (``ssl`` is optional for ``http.client``), and the rest are built in."""
BINARIES = ("usr/bin/python3.11", "usr/sbin/dmidecode")
LIBRARY_DIRS = ("lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu")
HERE = Path(__file__).resolve().parent
AGENT_DIR = HERE.parent
ARGES_INIT = AGENT_DIR.parent / "__init__.py"
SHARED_MODULES = ("errors.py", "wire.py")
"""Modules of the ``arges`` package outside ``arges.agent`` that the agent imports: the
neutral, standard-library-only ground the agent and the server both stand on."""


@dataclasses.dataclass(frozen=True)
class Image:
    """A built (or prebuilt) agent image: its directory, kernel and initramfs with their
    SHA-512s, and whether this build reused the cache."""

    directory: Path
    kernel: Path
    initrd: Path
    kernel_sha512: str
    initrd_sha512: str
    reused: bool = False
    manifest: dict[str, Any] = dataclasses.field(default_factory=dict)


def _sha512(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha512").hexdigest()


def _sources() -> dict[str, Path]:
    """Files whose bytes define the image besides the packages, by name in the key."""
    files = {"arges/__init__.py": ARGES_INIT}
    for name in SHARED_MODULES:
        files[f"arges/{name}"] = AGENT_DIR.parent / name
    for path in sorted(AGENT_DIR.glob("*.py")):
        files[f"arges/agent/{path.name}"] = path
    for path in sorted(HERE.iterdir()):
        if path.suffix in (".py", ".sh", ".script"):
            files[f"builder/{path.name}"] = path
    return files


def cache_key(debs: list[Deb]) -> str:
    """SHA-256 (hex) of everything the image is made from (see the module docstring)."""
    inputs = {
        "builder": BUILDER_VERSION,
        "debs": sorted([d.name, d.version, d.architecture, d.sha256] for d in debs),
        "files": {
            name: hashlib.sha256(path.read_bytes()).hexdigest() for name, path in _sources().items()
        },
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def load(directory: Path) -> Image | None:
    """The image in ``directory`` if its manifest and files agree, else None."""
    try:
        manifest = json.loads((directory / "manifest.json").read_text())
        kernel, initrd = directory / "vmlinuz", directory / "initramfs.img"
        files = manifest["files"]
        sums = (_sha512(kernel), _sha512(initrd))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if sums != (files["vmlinuz"]["sha512"], files["initramfs.img"]["sha512"]):
        return None
    return Image(directory, kernel, initrd, *sums, reused=True, manifest=manifest)


def prebuilt(directory: Path) -> Image:
    """A kernel (``vmlinuz``) and initramfs (``initramfs.img``) someone built elsewhere.

    Raises:
        BuildError: either file is missing or unreadable.
    """
    kernel, initrd = directory / "vmlinuz", directory / "initramfs.img"
    try:
        return Image(directory, kernel, initrd, _sha512(kernel), _sha512(initrd), reused=True)
    except OSError as exc:
        raise BuildError(
            f"{directory} must hold vmlinuz and initramfs.img: {exc.strerror or exc}"
        ) from exc


def ensure(data_dir: Path, deb_cache: Path | None = None) -> Image:
    """The agent image for the current inputs: from ``DATA_DIR/agent/<key>`` when built
    before, else built now (packages fetched into ``deb_cache``, default
    ``DATA_DIR/agent/debs``).

    Raises:
        BuildError: a package cannot be resolved, fetched or unpacked, or a file the image
            needs is not in them.
    """
    started = time.monotonic()
    debs = resolve(list(PACKAGES))
    key = cache_key(debs)
    root = data_dir / "agent"
    target = root / key[:16]
    cached = load(target)
    if cached is not None:
        log.info("agent image %s: cached", target)
        return cached
    log.info("building the agent image %s from %d Debian packages", key[:16], len(debs))
    paths = fetch(debs, deb_cache or root / "debs")
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix=".build-") as tmp:
        work = Path(tmp)
        for path in paths:
            extract(path, work / "debs")
        out = work / "out"
        out.mkdir()
        manifest = assemble(work / "debs", work / "stage", out, debs, key)
        (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        shutil.rmtree(target, ignore_errors=True)
        out.rename(target)
    image = load(target)
    if image is None:
        raise BuildError(f"the image written to {target} does not match its manifest")
    prune(root, target.name, deb_cache or root / "debs", {p.name for p in paths})
    size = image.initrd.stat().st_size
    log.info(
        "agent image %s built in %.1f s: initramfs %.1f MiB, kernel %.1f MiB",
        target,
        time.monotonic() - started,
        size / 2**20,
        image.kernel.stat().st_size / 2**20,
    )
    return dataclasses.replace(image, reused=False)


def prune(root: Path, keep: str, deb_cache: Path, debs: set[str]) -> None:
    """Remove the images under ``root`` other than ``keep`` and the ``.deb`` files in
    ``deb_cache`` that are not in ``debs``: each change of inputs would otherwise leave an
    image (about 16 MiB) and superseded packages behind. Running planes do not need them:
    they serve copies from their asset cache."""
    for entry in root.iterdir():
        if entry.is_dir() and entry.name != keep and re.fullmatch(r"[0-9a-f]{16}", entry.name):
            shutil.rmtree(entry, ignore_errors=True)
            log.info("removed the superseded agent image %s", entry)
    for deb in deb_cache.glob("*.deb"):
        if deb.name not in debs:
            deb.unlink(missing_ok=True)


def assemble(debs_root: Path, stage: Path, out: Path, debs: list[Deb], key: str) -> dict[str, Any]:
    """Stage the initramfs tree from the unpacked packages, write ``vmlinuz`` and
    ``initramfs.img`` into ``out``; the manifest."""
    kernels = sorted((debs_root / "boot").glob("vmlinuz-*"))
    if len(kernels) != 1:
        raise BuildError(f"expected one kernel in the linux-image package, found {kernels}")
    version = kernels[0].name.removeprefix("vmlinuz-")
    shutil.copyfile(kernels[0], out / "vmlinuz")

    stage.mkdir()
    copy = _Copier(debs_root, stage)
    copy.file("bin/busybox")
    (stage / "bin/sh").symlink_to("busybox")
    for binary in BINARIES:
        copy.elf(binary)
    (stage / "usr/bin/python3").symlink_to("python3.11")
    for name in PYTHON_FILES:
        if name.endswith("/"):
            copy.tree(f"{PYTHON}/{name}")
        else:
            copy.file(f"{PYTHON}/{name}")
    modules = _modules(debs_root, stage, version)
    _write(stage / "init", (HERE / "init.sh").read_bytes(), 0o755)
    _write(stage / "usr/share/udhcpc/default.script", (HERE / "udhcpc.script").read_bytes(), 0o755)
    _write(stage / "etc/arges/modules", "".join(f"{m}\n" for m in modules).encode(), 0o644)
    for name, path in _sources().items():
        if name.startswith("arges/"):
            _write(stage / "usr/lib/arges" / name, path.read_bytes(), 0o644)
    # lib-dynload is where Python looks for extension modules; all it needs are built in.
    for empty in ("dev", "proc", "sys", "run", "tmp", "sbin", f"{PYTHON}/lib-dynload"):
        (stage / empty).mkdir(parents=True, exist_ok=True)

    entries = [*_entries(stage), cpio.char_device("dev/console", 5, 1)]
    raw = cpio.archive(entries)
    (out / "initramfs.img").write_bytes(cpio.compress(raw))
    return {
        "key": key,
        "builderVersion": BUILDER_VERSION,
        "packages": {d.name: {"version": d.version, "sha256": d.sha256} for d in debs},
        "kernelVersion": version,
        "modules": modules,
        "uncompressedSize": len(raw),
        "files": {
            name: {"size": (out / name).stat().st_size, "sha512": _sha512(out / name)}
            for name in ("vmlinuz", "initramfs.img")
        },
    }


def _write(path: Path, data: bytes, perm: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(perm)


class _Copier:
    """Copies files from the unpacked packages into the stage, following symlinks inside
    the package tree and the ELF dependencies of binaries."""

    def __init__(self, source: Path, stage: Path) -> None:
        self.source = source
        self.stage = stage
        self.done: set[str] = set()

    def file(self, rel: str) -> None:
        if rel in self.done:
            return
        self.done.add(rel)
        src = self.source / rel
        dest = self.stage / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            link = src.readlink()
            dest.symlink_to(link)
            resolved = (Path("/") / rel).parent / link if not link.is_absolute() else link
            self.file(_normal(resolved))
            return
        if not src.is_file():
            raise BuildError(f"{rel} is not in the packages {', '.join(PACKAGES)}")
        shutil.copyfile(src, dest)
        dest.chmod(0o755 if src.stat().st_mode & 0o111 else 0o644)

    def tree(self, rel: str) -> None:
        base = self.source / rel
        if not base.is_dir():
            raise BuildError(f"{rel} is not in the packages")
        for path in sorted(base.rglob("*")):
            if (path.is_file() or path.is_symlink()) and "__pycache__" not in path.parts:
                self.file(str(path.relative_to(self.source)))

    def elf(self, rel: str) -> None:
        self.file(rel)
        interpreter, needed = elf_dependencies((self.source / rel).read_bytes())
        if interpreter:
            self.file(interpreter.lstrip("/"))
        for soname in needed:
            found = next(
                (f"{d}/{soname}" for d in LIBRARY_DIRS if (self.source / d / soname).exists()),
                None,
            )
            if found is None:
                raise BuildError(f"{rel} needs {soname}, which no package in the image has")
            if found not in self.done:
                self.elf(found)


def _normal(path: Path) -> str:
    parts: list[str] = []
    for part in path.parts[1:]:
        if part == "..":
            if parts:
                parts.pop()
        elif part != ".":
            parts.append(part)
    return "/".join(parts)


def elf_dependencies(data: bytes) -> tuple[str, list[str]]:
    """The program interpreter (``PT_INTERP``) and the ``DT_NEEDED`` sonames of a 64-bit
    little-endian ELF file (System V gABI, ch. 5).

    Raises:
        BuildError: not such an ELF file.
    """
    if data[:6] != b"\x7fELF\x02\x01":
        raise BuildError("not a 64-bit little-endian ELF file")
    phoff, phentsize, phnum = (
        struct.unpack_from("<Q", data, 32)[0],
        *struct.unpack_from("<HH", data, 54),
    )
    loads, interpreter, dynamic = [], "", None
    for i in range(phnum):
        p_type, _, p_offset, p_vaddr, _, p_filesz = struct.unpack_from(
            "<IIQQQQ", data, phoff + i * phentsize
        )
        if p_type == 1:
            loads.append((p_vaddr, p_offset, p_filesz))
        elif p_type == 3:
            interpreter = data[p_offset : p_offset + p_filesz].rstrip(b"\0").decode()
        elif p_type == 2:
            dynamic = (p_offset, p_filesz)
    if dynamic is None:
        return interpreter, []
    entries = [
        struct.unpack_from("<qQ", data, dynamic[0] + off) for off in range(0, dynamic[1], 16)
    ]
    strtab = next((v for tag, v in entries if tag == 5), None)
    if strtab is None:
        return interpreter, []
    base = next(off + strtab - va for va, off, size in loads if va <= strtab < va + size)
    needed = []
    for tag, value in entries:
        if tag == 1:
            end = data.index(b"\0", base + value)
            needed.append(data[base + value : end].decode())
    return interpreter, needed


def _modules(debs_root: Path, stage: Path, version: str) -> list[str]:
    """Copy :data:`MODULES` and their dependencies into the stage and index them; the names
    /init loads (the loadable ones)."""
    source = debs_root / "lib/modules" / version
    _depmod(debs_root, version)
    deps: dict[str, list[str]] = {}
    for line in (source / "modules.dep").read_text().splitlines():
        path, _, rest = line.partition(":")
        deps[path] = rest.split()
    by_name = {Path(p).name.split(".ko")[0].replace("-", "_"): p for p in deps}
    builtin = {
        Path(line).name.split(".ko")[0].replace("-", "_")
        for line in (source / "modules.builtin").read_text().split()
    }
    wanted, loadable = set(), []
    for name in MODULES:
        if name in builtin:
            continue
        if name not in by_name:
            raise BuildError(f"kernel {version} has no module {name}")
        loadable.append(name)
        wanted.add(by_name[name])
        wanted.update(deps[by_name[name]])
    dest = stage / "lib/modules" / version
    for rel in sorted(wanted):
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / rel, dest / rel)
    for index in ("modules.order", "modules.builtin", "modules.builtin.modinfo"):
        shutil.copyfile(source / index, dest / index)
    _depmod(stage, version)
    return loadable


def _depmod(base: Path, version: str) -> None:
    try:
        subprocess.run(
            ["depmod", "-b", str(base), version], capture_output=True, check=True, timeout=300
        )
    except FileNotFoundError as exc:
        raise BuildError("depmod is missing: install kmod (scripts/install does)") from exc
    except subprocess.CalledProcessError as exc:
        raise BuildError(f"depmod failed: {exc.stderr.decode(errors='replace').strip()}") from exc


def _entries(stage: Path) -> list[cpio.Entry]:
    entries = []
    for path in sorted(stage.rglob("*")):
        rel = str(path.relative_to(stage))
        if path.is_symlink():
            entries.append(cpio.symlink(rel, str(path.readlink())))
        elif path.is_dir():
            entries.append(cpio.directory(rel))
        elif path.is_file():
            perm = 0o755 if path.stat().st_mode & 0o111 else 0o644
            entries.append(cpio.file(rel, path.read_bytes(), perm))
        else:
            raise BuildError(f"{rel}: only files, directories and symlinks are staged")
    return entries
