"""The agent's inventory collectors: SMBIOS, processors, memory, disks, NICs.

Standard library only (this runs from the agent's initramfs). Every collector reads from a
root directory (``/`` on a server, a captured sample in tests) and from ``dmidecode``'s text
output, and returns plain dicts in the shape of the Server's ``status.hardware``
(``arges.api.server.HardwareInformation``): camelCase keys, sizes in bytes, speeds in MHz
(processors) and MT/s (memory). Strings firmware fills in when nothing was programmed
("To Be Filled By O.E.M.", "Not Specified", ...) are dropped, as Sidero does.

Sources: SMBIOS 3.x (DSP0134) types 1, 4 and 17 as dmidecode prints them; sysfs
(``Documentation/ABI/stable/sysfs-block``, ``sysfs-class-net``); SCSI VPD page 0x80 (SPC-4
§7.8.15) for the serial of SATA and SCSI disks.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

from arges.wire import server_name

Records = list[tuple[int, dict[str, str]]]

PLACEHOLDERS = frozenset(
    s.lower()
    for s in (
        "",
        "Not Specified",
        "Not Provided",
        "Not Applicable",
        "Not Present",
        "Not Settable",
        "To Be Filled By O.E.M.",
        "Default string",
        "Unknown",
        "None",
        "System Product Name",
        "System manufacturer",
        "System Serial Number",
        "System Version",
        "0123456789",
    )
)
SKIPPED_BLOCK = re.compile(r"^(loop|ram|zram|sr|fd|dm-|md|nbd|zd|nvme\d+c\d+)")
"""Block devices that are not whole local disks: loop, RAM and optical devices, device
mapper and MD arrays, network block devices, and NVMe multipath controller paths."""
UNITS = {"bytes": 1, "kB": 1 << 10, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40}
SECTOR = 512
"""sysfs counts block device sizes in 512-byte sectors whatever the logical block size."""


def dmidecode(types: str = "1,4,17") -> str:
    """The text of ``dmidecode -t TYPES`` ("" when dmidecode is missing or fails)."""
    try:
        out = subprocess.run(
            ["dmidecode", "-t", types], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout


def parse_dmidecode(text: str) -> Records:
    """The records of dmidecode's output as (DMI type, {field: value}); the nested lists
    (characteristics, flags) are dropped."""
    records: Records = []
    current: dict[str, str] | None = None
    for line in text.splitlines():
        header = re.match(r"^Handle 0x[0-9A-Fa-f]+, DMI type (\d+),", line)
        if header:
            current = {}
            records.append((int(header.group(1)), current))
            continue
        if current is None or not line.startswith("\t") or line.startswith("\t\t"):
            continue
        key, sep, value = line.strip().partition(":")
        if sep:
            current[key.strip()] = value.strip()
    return records


def _clean(value: str | None) -> str:
    value = (value or "").strip()
    return "" if value.lower() in PLACEHOLDERS else value


def _int(value: str | None) -> int:
    match = re.match(r"^\s*(\d+)", value or "")
    return int(match.group(1)) if match else 0


def _size(value: str | None) -> int:
    match = re.match(r"^\s*(\d+)\s*(bytes|kB|KB|MB|GB|TB)\b", value or "")
    return int(match.group(1)) * UNITS[match.group(2)] if match else 0


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace").strip()
    except OSError:
        return ""


def system(records: Records) -> dict[str, str]:
    """SMBIOS type 1 (System Information), the UUID lowercase."""
    fields = next((f for t, f in records if t == 1), {})
    return {
        "uuid": server_name(_clean(fields.get("UUID"))) or _clean(fields.get("UUID")).lower(),
        "manufacturer": _clean(fields.get("Manufacturer")),
        "productName": _clean(fields.get("Product Name")),
        "version": _clean(fields.get("Version")),
        "serialNumber": _clean(fields.get("Serial Number")),
        "skuNumber": _clean(fields.get("SKU Number")),
        "family": _clean(fields.get("Family")),
    }


def compute(records: Records, root: Path) -> dict[str, Any]:
    """Populated processor sockets (SMBIOS type 4), else what ``/proc/cpuinfo`` says."""
    processors = [
        {
            "manufacturer": _clean(f.get("Manufacturer")),
            "productName": _clean(f.get("Version")),
            "speed": _int(f.get("Current Speed")),
            "coreCount": _int(f.get("Core Count")),
            "threadCount": _int(f.get("Thread Count")) or _int(f.get("Core Count")),
        }
        for t, f in records
        if t == 4 and f.get("Status", "").startswith("Populated")
    ]
    if not processors:
        processors = _cpuinfo(root)
    return {
        "processorCount": len(processors),
        "totalCoreCount": sum(p["coreCount"] for p in processors),
        "totalThreadCount": sum(p["threadCount"] for p in processors),
        "processors": processors,
    }


def _cpuinfo(root: Path) -> list[dict[str, Any]]:
    sockets: dict[str, dict[str, Any]] = {}
    for block in _read(root / "proc/cpuinfo").split("\n\n"):
        fields = {}
        for line in block.splitlines():
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
        if "processor" not in fields:
            continue
        entry = sockets.setdefault(
            fields.get("physical id", "0"),
            {
                "manufacturer": fields.get("vendor_id", ""),
                "productName": fields.get("model name", ""),
                "speed": int(float(fields.get("cpu MHz") or 0)),
                "coreCount": _int(fields.get("cpu cores")),
                "threadCount": 0,
            },
        )
        entry["threadCount"] += 1
    for entry in sockets.values():
        entry["coreCount"] = entry["coreCount"] or entry["threadCount"]
    return list(sockets.values())


def memory(records: Records, root: Path) -> dict[str, Any]:
    """Installed memory devices (SMBIOS type 17), else ``/proc/meminfo``'s total (which is
    less than what is installed: the kernel keeps some)."""
    modules: list[dict[str, Any]] = []
    for kind, f in records:
        size = _size(f.get("Size"))
        if kind != 17 or not size:
            continue
        modules.append(
            {
                "manufacturer": _clean(f.get("Manufacturer")),
                "productName": _clean(f.get("Part Number")),
                "serialNumber": _clean(f.get("Serial Number")),
                "type": _clean(f.get("Type")),
                "size": size,
                "speed": _int(f.get("Configured Memory Speed")) or _int(f.get("Speed")),
            }
        )
    total = sum(m["size"] for m in modules)
    if not total:
        found = re.search(r"^MemTotal:\s*(\d+) kB", _read(root / "proc/meminfo"), re.M)
        total = int(found.group(1)) * 1024 if found else 0
    return {"totalSize": total, "moduleCount": len(modules), "modules": modules}


def _driver(device: Path) -> str:
    try:
        return (device / "driver").readlink().name
    except OSError:
        return ""


def disk_type(name: str, sys_block: Path) -> str:
    """SSD, HDD, NVMe, virtio, SD or Unknown, from the name, driver and rotational flag."""
    if name.startswith("nvme"):
        return "NVMe"
    if name.startswith("mmcblk"):
        return "SD"
    if name.startswith("vd") or _driver(sys_block / name / "device") == "virtio_blk":
        return "virtio"
    rotational = _read(sys_block / name / "queue" / "rotational")
    if rotational == "1":
        return "HDD"
    if rotational == "0":
        return "SSD"
    return "Unknown"


def _vpd_serial(path: Path) -> str:
    """The unit serial number of a SCSI VPD page 0x80 (header: peripheral, page code, length
    as 2 bytes big-endian)."""
    try:
        page = path.read_bytes()
    except OSError:
        return ""
    if len(page) < 4 or page[1] != 0x80:
        return ""
    length = int.from_bytes(page[2:4], "big")
    return page[4 : 4 + length].decode("ascii", "replace").strip(" \x00")


def _serial(entry: Path) -> str:
    for candidate in (_read(entry / "serial"), _read(entry / "device" / "serial")):
        if candidate:
            return candidate
    return _vpd_serial(entry / "device" / "vpd_pg80")


def storage(root: Path) -> dict[str, Any]:
    """Whole disks under ``/sys/block`` (see :data:`SKIPPED_BLOCK`), with a size."""
    sys_block = root / "sys/block"
    devices = []
    for entry in sorted(sys_block.iterdir()) if sys_block.is_dir() else []:
        name = entry.name
        if SKIPPED_BLOCK.match(name):
            continue
        sectors = _read(entry / "size")
        size = int(sectors) * SECTOR if sectors.isdigit() else 0
        if not size:
            continue
        devices.append(
            {
                "name": name,
                "type": disk_type(name, sys_block),
                "size": size,
                "productName": _read(entry / "device" / "model"),
                "serialNumber": _serial(entry),
                "wwid": _read(entry / "wwid") or _read(entry / "device" / "wwid"),
            }
        )
    return {
        "totalSize": sum(d["size"] for d in devices),
        "deviceCount": len(devices),
        "devices": devices,
    }


def _number(path: Path) -> int:
    text = _read(path)
    return int(text) if text.isdigit() else 0


def network(root: Path, addresses: dict[str, list[str]] | None = None) -> dict[str, Any]:
    """Physical NICs (those with a device and a MAC) under ``/sys/class/net``; ``addresses``
    maps interface names to their addresses in CIDR form."""
    sys_net = root / "sys/class/net"
    interfaces = []
    for entry in sorted(sys_net.iterdir()) if sys_net.is_dir() else []:
        mac = _read(entry / "address").lower()
        if not (entry / "device").exists() or not mac or mac == "00:00:00:00:00:00":
            continue
        state = _read(entry / "operstate")
        interfaces.append(
            {
                "index": _number(entry / "ifindex"),
                "name": entry.name,
                "mac": mac,
                "mtu": _number(entry / "mtu"),
                "link": state if state in ("up", "down") else "unknown",
                "addresses": (addresses or {}).get(entry.name, []),
            }
        )
    return {"interfaceCount": len(interfaces), "interfaces": interfaces}


def parse_ip_addr(text: str) -> dict[str, list[str]]:
    """Global addresses per interface from ``ip -o addr show`` (iproute2 or busybox)."""
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        parts = line.split()
        if (
            len(parts) >= 4
            and parts[2] in ("inet", "inet6")
            and "scope" in parts[:-1]
            and parts[parts.index("scope") + 1] == "global"
        ):
            found.setdefault(parts[1].rstrip(":").split("@")[0], []).append(parts[3])
    return found


def ip_addresses() -> dict[str, list[str]]:
    """This machine's global addresses per interface (``{}`` when ``ip`` fails)."""
    try:
        out = subprocess.run(
            ["ip", "-o", "addr", "show"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return {}
    return parse_ip_addr(out.stdout)


def inventory(
    root: Path = Path("/"), dmi: str | None = None, addresses: dict[str, list[str]] | None = None
) -> dict[str, Any]:
    """The whole ``status.hardware`` document; ``dmi`` and ``addresses`` are read from this
    machine when not given."""
    records = parse_dmidecode(dmidecode() if dmi is None else dmi)
    return {
        "system": system(records),
        "compute": compute(records, root),
        "memory": memory(records, root),
        "storage": storage(root),
        "network": network(root, ip_addresses() if addresses is None else addresses),
    }
