from __future__ import annotations

from typing import Any

from arges.api.server import Server


def server(
    name: str,
    *,
    accepted: bool = True,
    cordoned: bool = False,
    clean: bool | None = True,
    labels: dict[str, str] | None = None,
    hardware: dict[str, Any] | None = None,
    **spec: Any,
) -> Server:
    return Server.from_json(
        {
            "metadata": {"name": name, "labels": labels or {}},
            "spec": {"accepted": accepted, "cordoned": cordoned, **spec},
            "status": {"isClean": clean, **({"hardware": hardware} if hardware else {})},
        }
    )


DELL = {
    "system": {"manufacturer": "Dell Inc.", "productName": "PowerEdge R640"},
    "compute": {
        "totalCoreCount": 32,
        "processors": [{"manufacturer": "Intel", "productName": "Xeon Gold 6130", "coreCount": 16}],
    },
    "memory": {"totalSize": 192 * 2**30},
    "storage": {
        "deviceCount": 2,
        "devices": [
            {"name": "nvme0n1", "type": "NVMe", "size": 960 * 10**9},
            {"name": "sda", "type": "HDD", "size": 4 * 10**12},
        ],
    },
}
QEMU = {
    "system": {"manufacturer": "QEMU", "productName": "Standard PC (i440FX + PIIX, 1996)"},
    "compute": {"totalCoreCount": 2, "processors": [{"manufacturer": "AMD", "coreCount": 2}]},
    "memory": {"totalSize": 2 * 2**30},
    "storage": {"deviceCount": 1, "devices": [{"name": "vda", "type": "virtio", "size": 10**10}]},
}
