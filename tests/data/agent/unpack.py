"""Turns capture.sh's console output into a sample tree: ``unpack.py LOG DIR``.

``/tmp/dmidecode.txt`` becomes ``DIR/dmidecode.txt``; everything else keeps its path under
``DIR`` (sysfs directories become plain directories holding a ``.keep`` file, symlinks stay
symlinks).
"""

import base64
import re
import sys
from pathlib import Path

log, root = Path(sys.argv[1]), Path(sys.argv[2])
current: Path | None = None
chunks: list[str] = []


def flush() -> None:
    if current is not None:
        current.parent.mkdir(parents=True, exist_ok=True)
        current.write_bytes(base64.b64decode("".join(chunks)))


for raw in log.read_text(errors="replace").splitlines():
    line = raw.strip()
    if line.startswith("@@"):
        flush()
        current, chunks = None, []
        kind, _, rest = line[2:].partition(" ")
        if kind == "FILE":
            name = "dmidecode.txt" if rest == "/tmp/dmidecode.txt" else rest.lstrip("/")
            current = root / name
        elif kind == "LINK":
            path, target = rest.split(" ", 1)
            (root / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
            (root / path.lstrip("/")).symlink_to(target)
        elif kind == "DIR":
            directory = root / rest.lstrip("/")
            directory.mkdir(parents=True, exist_ok=True)
            # git keeps no empty directory, and the collectors test that this one exists.
            (directory / ".keep").touch()
    elif current is not None and re.fullmatch(r"[A-Za-z0-9+/=]+", line):
        chunks.append(line)
flush()
