"""What a running ``arges up`` tells other ``arges`` commands on the same machine.

``arges up`` writes ``DATA_DIR/boot.json`` once its network boot services run, and removes
it when it stops: its process id and its network boot settings (``--boot-address``,
``--dhcp-mode``, ``--dhcp-interface``, ``--dhcp-network``), as JSON with camelCase keys.
``arges lab up`` reads it to check that the lab's servers can boot from this Arges
(:mod:`arges.lab.fit`). A record whose process is gone (Arges was killed) is ignored.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from arges.boot.services import BootConfig
from arges.lab.fit import BootSettings

BOOT_RECORD = "boot.json"


def record(data_dir: Path, boot: BootConfig, pid: int | None = None) -> Path:
    """Write the record of ``boot`` (the settings of this process, or of ``pid``)."""
    path = data_dir / BOOT_RECORD
    doc = {
        "pid": os.getpid() if pid is None else pid,
        "bootAddress": boot.address,
        "dhcpMode": boot.dhcp_mode,
        "dhcpInterface": boot.dhcp_interface,
        "dhcpNetwork": boot.dhcp_network,
    }
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    tmp.replace(path)
    return path


def forget(data_dir: Path) -> None:
    """Remove the record (``arges up`` stopping)."""
    (data_dir / BOOT_RECORD).unlink(missing_ok=True)


def running_boot(data_dir: Path) -> BootSettings | None:
    """The boot settings of the Arges running with ``data_dir``; None when there is no
    record, it is unreadable, or its process no longer runs (nothing can be told then)."""
    try:
        doc = json.loads((data_dir / BOOT_RECORD).read_text())
        pid = int(doc["pid"])
        settings = BootSettings(
            address=str(doc["bootAddress"]),
            dhcp_mode=doc.get("dhcpMode"),
            dhcp_interface=doc.get("dhcpInterface"),
            dhcp_network=doc.get("dhcpNetwork"),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # it runs, as another user (root)
    return settings
