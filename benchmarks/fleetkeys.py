"""The fleet benchmark's reference for the clusters' secrets bundles: the CPU of an RSA-4096
key from Go's ``crypto/rsa`` (``benchmarks/reference/rsakeys.go``), what CABPT and talosctl
run for a bundle's service-account key, measured in the same run. A bundle's cost is one such
key (its CAs are elliptic-curve keys, a few milliseconds), and the random search for primes
makes each key's cost vary by half: the reference is a mean of several."""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import tempfile
from pathlib import Path

SOURCE = Path(__file__).resolve().parent / "reference" / "rsakeys.go"
KEYS = 8


def go_key_cpu(keys: int = KEYS) -> tuple[float | None, str]:
    """CPU seconds per RSA-4096 key of Go's ``crypto/rsa`` (mean of ``keys``), and how it was
    measured; None, saying why, where Go is not installed or the program does not build.
    Built first (the compiler's CPU is not counted); only the program's own CPU is."""
    go = shutil.which("go")
    if go is None:
        return None, "Go is not installed"
    with tempfile.TemporaryDirectory(prefix="arges-rsakeys-") as work:
        program = Path(work) / "rsakeys"
        # The standard library only: nothing is downloaded.
        env = {**os.environ, "GOPROXY": "off", "GOFLAGS": ""}
        built = subprocess.run(
            [go, "build", "-o", str(program), str(SOURCE)],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        if built.returncode != 0:
            return None, f"go build failed: {built.stderr.strip()}"
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        run = subprocess.run([str(program), str(keys)], check=False)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if run.returncode != 0:
            return None, f"rsakeys exited {run.returncode}"
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return cpu / keys, f"mean of {keys}, {_version(go)}"


def _version(go: str) -> str:
    out = subprocess.run([go, "version"], capture_output=True, text=True, check=False).stdout
    parts = out.split()
    return parts[2] if len(parts) > 2 else "go"
