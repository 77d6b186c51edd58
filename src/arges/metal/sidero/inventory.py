"""Sidero Metal's hardware inventories and hardware qualifiers, in Arges' shapes and units.

Sidero (``metal.sidero.dev``) kept a server's inventory in its spec, in two shapes:
v1alpha2's ``spec.hardware`` (system, compute, memory, storage, network) and v1alpha1's
``spec.system`` and ``spec.cpu``. Arges keeps it in ``status.hardware``
(:class:`arges.api.server.HardwareInformation`). Units differ where Sidero's field docs say so
(``api/v1alpha2/server_types.go``): memory module sizes were MB (SMBIOS' MB, 2^20 bytes: the
agent read them with go-smbios' ``Megabytes``) and are bytes here; the totals were strings
``"<N> GB"`` (whole GiB, rounded down) and are bytes here, summed from the modules and disks.

Qualifiers (a ServerClass's ``qualifiers.hardware``) keep Sidero's partial-match meaning
(:mod:`arges.metal.classes`); a module size is converted to bytes, a ``"<N> GB"`` total kept
as written (Arges reads it as Sidero did), and an entry that names a field Arges' inventory
does not record is dropped, since in Arges it could match no server. v1alpha1's ``cpu`` and
``systemInformation`` lists (each ORed, the two ANDed) become their pairwise combinations.

Every function here is pure; what cannot be carried is returned as text, for the import's
report.
"""

from __future__ import annotations

import itertools
import re
from typing import Any

from arges.api.qualifiers import GIB, MIB
from arges.metal.sidero.base import as_dict, as_list

DISK_TYPES = ("SSD", "HDD", "NVMe", "SD", "Unknown")
"""Sidero's storage types (its agent's ``StorageType``); Arges' inventory has these too."""
NOT_RECORDED = {
    ("compute", "processors", "serialNumber"),
    ("storage", "devices", "uuid"),
    ("storage", "devices", "deviceName"),
    ("network", "interfaces", "flags"),
}
"""Fields of Sidero's inventory Arges' inventory has no place for (``flags`` becomes
``link``, ``deviceName`` is ``/dev/`` and the name)."""
_SIDERO_TOTAL = re.compile(r"^\d+ GB$")


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _pick(
    source: dict[str, Any], strings: tuple[str, ...], ints: tuple[str, ...] = ()
) -> dict[str, Any]:
    out: dict[str, Any] = {k: _str(source.get(k)) for k in strings if _str(source.get(k))}
    out.update({k: _int(source.get(k)) for k in ints if _int(source.get(k))})
    return out


def sidero_hardware(spec: dict[str, Any]) -> dict[str, Any]:
    """A Sidero Server's inventory in v1alpha2's shape, whichever shape its spec has
    (v1alpha1's ``system`` and ``cpu`` converted as Sidero's own conversion does:
    ``cpu.version`` is the first processor's ``productName``)."""
    hardware = as_dict(spec.get("hardware"))
    if hardware:
        return hardware
    out: dict[str, Any] = {}
    if as_dict(spec.get("system")):
        out["system"] = as_dict(spec.get("system"))
    cpu = as_dict(spec.get("cpu"))
    if cpu:
        processor = {"manufacturer": cpu.get("manufacturer"), "productName": cpu.get("version")}
        out["compute"] = {"processors": [processor]}
    return out


def inventory(spec: dict[str, Any]) -> tuple[dict[str, Any] | None, set[str]]:
    """A Sidero Server's inventory (from its ``spec``) as Arges' ``status.hardware`` JSON,
    and the names of the fields it had values in that Arges does not record.

    Returns (None, set()) when the server had no inventory.
    """
    hw = sidero_hardware(spec)
    if not hw:
        return None, set()
    dropped = {
        f"{section}.{items}[].{field}"
        for section, items, field in NOT_RECORDED
        for item in as_list(as_dict(hw.get(section)).get(items))
        if _str(item.get(field)) and not _derivable(section, field, item)
    }
    system = _pick(
        as_dict(hw.get("system")),
        ("uuid", "manufacturer", "productName", "version", "serialNumber", "skuNumber", "family"),
    )
    compute = as_dict(hw.get("compute"))
    processors = [
        _pick(p, ("manufacturer", "productName"), ("speed", "coreCount", "threadCount"))
        for p in as_list(compute.get("processors"))
    ]
    memory = as_dict(hw.get("memory"))
    modules = [
        {
            **_pick(m, ("manufacturer", "productName", "serialNumber", "type"), ("speed",)),
            **({"size": _int(m.get("size")) * MIB} if _int(m.get("size")) else {}),
        }
        for m in as_list(memory.get("modules"))
    ]
    total_memory = sum(m.get("size", 0) for m in modules) or _gib(memory.get("totalSize"))
    storage = as_dict(hw.get("storage"))
    devices = [_device(d) for d in as_list(storage.get("devices"))]
    network = as_dict(hw.get("network"))
    interfaces = [_interface(i) for i in as_list(network.get("interfaces"))]
    out = {
        "system": system,
        "compute": {
            **_pick(compute, (), ("processorCount", "totalCoreCount", "totalThreadCount")),
            "processors": processors,
        },
        "memory": {
            "totalSize": total_memory,
            "moduleCount": _int(memory.get("moduleCount")) or len(modules),
            "modules": modules,
        },
        "storage": {
            "totalSize": sum(d.get("size", 0) for d in devices) or _gib(storage.get("totalSize")),
            "deviceCount": _int(storage.get("deviceCount")) or len(devices),
            "devices": devices,
        },
        "network": {
            "interfaceCount": _int(network.get("interfaceCount")) or len(interfaces),
            "interfaces": interfaces,
        },
    }
    return out, dropped


def _derivable(section: str, field: str, item: dict[str, Any]) -> bool:
    """Whether a field Arges does not record is carried anyway: a ``deviceName`` that is
    ``/dev/`` and the name, or ``flags`` (they become ``link``)."""
    if field == "deviceName":
        return _str(item.get("deviceName")) == f"/dev/{_str(item.get('name'))}"
    return field == "flags"


def _gib(total: Any) -> int:
    """Sidero's ``"<N> GB"`` as bytes (N GiB: Sidero had rounded it down), 0 if not one."""
    text = _str(total)
    return int(text.split()[0]) * GIB if _SIDERO_TOTAL.match(text) else 0


def _device(device: dict[str, Any]) -> dict[str, Any]:
    out = _pick(device, ("name", "productName", "serialNumber", "wwid"), ("size",))
    if not out.get("name") and _str(device.get("deviceName")).startswith("/dev/"):
        out["name"] = _str(device.get("deviceName")).removeprefix("/dev/")
    kind = _str(device.get("type"))
    out["type"] = kind if kind in DISK_TYPES else "Unknown"
    return out


def _interface(interface: dict[str, Any]) -> dict[str, Any]:
    out = _pick(interface, ("name", "mac"), ("index", "mtu"))
    out["mac"] = out.get("mac", "").lower()
    flags = _str(interface.get("flags"))
    out["link"] = ("up" if "up" in flags.split("|") else "down") if flags else "unknown"
    addresses = interface.get("addresses")
    out["addresses"] = (
        [a for a in addresses if isinstance(a, str)] if isinstance(addresses, list) else []
    )
    return out


def qualifiers(
    hardware: Any, cpu: Any = None, system_information: Any = None
) -> tuple[list[dict[str, Any]], list[str]]:
    """A Sidero ServerClass's hardware qualifiers as Arges' ``qualifiers.hardware``, and
    what could not be carried (one sentence each).

    ``hardware`` is v1alpha2's list; ``cpu`` and ``system_information`` are v1alpha1's, which
    Sidero ANDed with each other (each list ORed), so they become their combinations.
    """
    entries = as_list(hardware)
    cpus = [
        {"compute": {"processors": [{"manufacturer": c.get("manufacturer"), "productName": v}]}}
        for c in as_list(cpu)
        for v in [c.get("version")]
    ]
    systems = [{"system": s} for s in as_list(system_information)]
    if cpus and systems:
        entries += [{**c, **s} for c, s in itertools.product(cpus, systems)]
    else:
        entries += cpus or systems
    out: list[dict[str, Any]] = []
    problems: list[str] = []
    for i, entry in enumerate(entries):
        translated, why = _qualifier(entry)
        if why is None:
            out.append(_without_nulls(translated))
        else:
            problems.append(f"hardware qualifier {i} dropped: {why}")
    return out, problems


def _without_nulls(value: Any) -> Any:
    """``value`` without null fields (a v1alpha1 ``cpu`` without ``version``, say), which
    an API server refuses where a string or a number belongs."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def _qualifier(entry: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """One partial inventory in Arges' units, or why it is dropped (it could match no
    server in Arges, so dropping it keeps the class's meaning)."""
    for section, items, field in sorted(NOT_RECORDED):
        for item in as_list(as_dict(entry.get(section)).get(items)):
            if _str(item.get(field)) and field != "deviceName":
                return {}, (
                    f"it compares {section}.{items}[].{field}, which Arges' inventory does "
                    "not record (it could match no server)"
                )
    for section in ("memory", "storage"):
        total = as_dict(entry.get(section)).get("totalSize")
        if _str(total) and not _SIDERO_TOTAL.match(_str(total)):
            return {}, (
                f'its {section}.totalSize {total!r} is not "<N> GB", the only form Sidero '
                "wrote (it matched no server there either)"
            )
    out = dict(entry)
    memory = as_dict(entry.get("memory"))
    if memory.get("modules"):
        modules = [
            {**m, "size": _int(m.get("size")) * MIB} if _int(m.get("size")) else m
            for m in as_list(memory.get("modules"))
        ]
        out["memory"] = {**memory, "modules": modules}
    storage = as_dict(entry.get("storage"))
    if storage.get("devices"):
        devices = [_device_qualifier(d) for d in as_list(storage.get("devices"))]
        out["storage"] = {**storage, "devices": devices}
    return out, None


def _device_qualifier(device: dict[str, Any]) -> dict[str, Any]:
    """A disk qualifier with ``deviceName`` (``/dev/sda``) as the name it stands for."""
    out = {k: v for k, v in device.items() if k != "deviceName"}
    name = _str(device.get("deviceName"))
    if name and not out.get("name"):
        out["name"] = name.removeprefix("/dev/")
    return out
