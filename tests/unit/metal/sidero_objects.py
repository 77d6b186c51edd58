"""A Sidero Metal rack in Sidero's own shapes (metal.sidero.dev v1alpha2 and v1alpha1, CAPS'
infrastructure.cluster.x-k8s.io/v1alpha3), as a Sidero 0.6 management cluster serves it.

Values follow what Sidero's agent and controllers write (reference/sidero.md §1-§3; Sidero's
``cmd/agent/smbios.go`` and ``internal/server/server.go``): memory module sizes in MB, totals as
``"<N> GB"``, disks with ``deviceName``, interfaces with Go's ``net.Flags`` text, BMC
credentials in Secrets ``default/<uuid>-bmc`` with keys ``user`` and ``pass``.

- ``BOUND`` runs the control plane of Cluster API cluster ``prod`` (installed: condition
  ``PXEBooted``; its ServerBinding reports the node's address and a SideroLink tunnel);
- ``FREE`` is accepted, clean and unallocated, the same model as ``BOUND``;
- ``CORDONED`` is accepted, clean, cordoned, an AMD box whose BMC credentials are literal in its
  spec (as early Sidero docs showed);
- ``NEW`` registered but is not accepted yet;
- ``OLD`` is accepted and clean, registered before Sidero 0.6 (v1alpha1: ``spec.system`` and
  ``spec.cpu`` only).

Each ServerClass's status lists the members Sidero computes for it (accepted, not cordoned,
selector, qualifiers; split by ``status.inUse``).
"""

from __future__ import annotations

import copy
from typing import Any

BOUND = "4c4c4544-0042-3010-8051-b4c04f4e3332"
FREE = "4c4c4544-0042-3010-8051-b4c04f4e3333"
CORDONED = "00000000-0000-0000-0000-ac1f6b4a1d7e"
NEW = "8a4e1c2d-52f1-4a0e-9c7f-3b9d2e6f1a10"
OLD = "d3a1f0b2-6c54-4e11-a1b8-6f0e5c2d9a47"
MACHINE = "prod-cp-x7k2p"
PASSWORDS = {BOUND: "Vn3e8QpZr2Lk7Xw1", FREE: "Jq5Tt0Yh9Bm4Cs6D", CORDONED: "calvin"}
V2 = "metal.sidero.dev/v1alpha2"
CAPS = "infrastructure.cluster.x-k8s.io/v1alpha3"
NOW = "2025-06-01T10:00:00Z"


def dell(uuid: str, serial: str, mac: str, address: str) -> dict[str, Any]:
    """A Dell R640's inventory as Sidero's agent reported it."""
    module = {
        "manufacturer": "Samsung",
        "productName": "M393A2K43BB1-CTD",
        "serialNumber": "",
        "type": "DDR4",
        "size": 16384,
        "speed": 2666,
    }
    processor = {
        "manufacturer": "Intel",
        "productName": "Intel(R) Xeon(R) Gold 6130 CPU @ 2.10GHz",
        "serialNumber": "",
        "speed": 2100,
        "coreCount": 16,
        "threadCount": 32,
    }
    return {
        "system": {
            "uuid": uuid,
            "manufacturer": "Dell Inc.",
            "productName": "PowerEdge R640",
            "serialNumber": serial,
            "skuNumber": "SKU=NotProvided;ModelName=PowerEdge R640",
            "family": "PowerEdge",
        },
        "compute": {
            "totalCoreCount": 32,
            "totalThreadCount": 64,
            "processorCount": 2,
            "processors": [processor, dict(processor)],
        },
        "memory": {
            "totalSize": "192 GB",
            "moduleCount": 12,
            "modules": [dict(module) for _ in range(12)],
        },
        "storage": {
            "totalSize": "1788 GB",
            "deviceCount": 2,
            "devices": [
                {
                    "type": "SSD",
                    "size": 960197124096,
                    "productName": "SAMSUNG MZ7LH960HAJR-00005",
                    "serialNumber": "S45NNE0M" + serial,
                    "name": "sda",
                    "deviceName": "/dev/sda",
                    "wwid": "naa.5002538e40a1" + serial.lower(),
                },
                {
                    "type": "NVMe",
                    "size": 960197124096,
                    "productName": "Dell Express Flash PM1725b",
                    "serialNumber": "S4HRNA0N" + serial,
                    "name": "nvme0n1",
                    "deviceName": "/dev/nvme0n1",
                    "uuid": "5f3c2a1e-" + serial.lower(),
                },
            ],
        },
        "network": {
            "interfaceCount": 2,
            "interfaces": [
                {
                    "index": 2,
                    "name": "eno1",
                    "flags": "up|broadcast|multicast",
                    "mtu": 1500,
                    "mac": mac,
                    "addresses": [f"{address}/24"],
                },
                {
                    "index": 3,
                    "name": "eno2",
                    "flags": "broadcast|multicast",
                    "mtu": 1500,
                    "mac": mac[:-1] + "f",
                },
            ],
        },
    }


def _bmc_from_secret(uuid: str, endpoint: str, port: int) -> dict[str, Any]:
    ref = {"namespace": "default", "name": f"{uuid}-bmc"}
    return {
        "endpoint": endpoint,
        "port": port,
        "userFrom": {"secretKeyRef": {**ref, "key": "user"}},
        "passFrom": {"secretKeyRef": {**ref, "key": "pass"}},
    }


def _condition(kind: str, status: str = "True") -> dict[str, Any]:
    return {"type": kind, "status": status, "lastTransitionTime": NOW}


def rack(
    bmcs: dict[str, tuple[str, int]] | None = None,
    talos: str = "https://github.com/siderolabs/talos/releases/download",
) -> dict[str, list[dict[str, Any]]]:
    """The rack's objects by kind (``servers``, ``serverclasses``, ``environments``,
    ``serverbindings``, ``metalmachines``, ``secrets``); ``bmcs`` gives the BMC endpoint and
    port of BOUND, FREE and CORDONED (default: addresses on a BMC network), ``talos`` where
    the Environments' Talos releases are (a test that runs Arges' asset cache points it at
    a local address, so nothing is downloaded)."""
    bmcs = {
        BOUND: ("10.5.1.21", 623),
        FREE: ("10.5.1.22", 623),
        CORDONED: ("10.5.1.40", 623),
        **(bmcs or {}),
    }
    servers = [
        {
            "apiVersion": V2,
            "kind": "Server",
            "metadata": {"name": BOUND, "labels": {"rack": "r1", "zone": "central"}},
            "spec": {
                "accepted": True,
                "hostname": "10.5.0.21",
                "bmc": _bmc_from_secret(BOUND, *bmcs[BOUND]),
                "hardware": dell(BOUND, "8ZB2Q33", "b4:96:91:3a:5c:10", "10.5.0.21"),
                "configPatches": [
                    {"op": "add", "path": "/machine/install/disk", "value": "/dev/nvme0n1"}
                ],
            },
            "status": {
                "ready": True,
                "inUse": True,
                "isClean": False,
                "power": "on",
                "addresses": [{"type": "InternalIP", "address": "10.5.0.21"}],
                "conditions": [_condition("PXEBooted"), _condition("PowerCycle")],
            },
        },
        {
            "apiVersion": V2,
            "kind": "Server",
            "metadata": {"name": FREE, "labels": {"rack": "r1", "zone": "east"}},
            "spec": {
                "accepted": True,
                "hostname": "10.5.0.22",
                "bmc": _bmc_from_secret(FREE, *bmcs[FREE]),
                "hardware": dell(FREE, "8ZB2Q34", "b4:96:91:3a:5d:20", "10.5.0.22"),
                "strategicPatches": ["machine:\n  network:\n    hostname: worker-22\n"],
            },
            "status": {
                "ready": True,
                "inUse": False,
                "isClean": True,
                "power": "off",
                "addresses": [{"type": "InternalIP", "address": "10.5.0.22"}],
                "conditions": [_condition("PowerCycle")],
            },
        },
        {
            "apiVersion": V2,
            "kind": "Server",
            "metadata": {"name": CORDONED, "labels": {"rack": "r2"}},
            "spec": {
                "accepted": True,
                "cordoned": True,
                "hostname": "10.5.0.40",
                "bmc": {
                    "endpoint": bmcs[CORDONED][0],
                    "port": bmcs[CORDONED][1],
                    "user": "ADMIN",
                    "pass": PASSWORDS[CORDONED],
                },
                "pxeMode": "uefi",
                "hardware": {
                    "system": {"manufacturer": "Supermicro", "productName": "AS-1114S-WN10RT"},
                    "compute": {
                        "totalCoreCount": 24,
                        "totalThreadCount": 48,
                        "processorCount": 1,
                        "processors": [
                            {
                                "manufacturer": "Advanced Micro Devices, Inc.",
                                "productName": "AMD EPYC 7402P 24-Core Processor",
                                "speed": 2800,
                                "coreCount": 24,
                                "threadCount": 48,
                            }
                        ],
                    },
                    "memory": {
                        "totalSize": "128 GB",
                        "moduleCount": 4,
                        "modules": [{"type": "DDR4", "size": 32768, "speed": 3200}] * 4,
                    },
                },
            },
            "status": {"ready": True, "isClean": True, "power": "off"},
        },
        {
            "apiVersion": V2,
            "kind": "Server",
            "metadata": {"name": NEW},
            "spec": {
                "accepted": False,
                "hostname": "10.5.0.55",
                "hardware": {
                    "system": {"uuid": NEW, "manufacturer": "QEMU", "productName": "Standard PC"},
                    "compute": {"processorCount": 1, "processors": [{"manufacturer": "QEMU"}]},
                },
            },
            "status": {"addresses": [{"type": "InternalIP", "address": "10.5.0.55"}]},
        },
        {
            # Registered under Sidero 0.5: stored in v1alpha1's shape.
            "apiVersion": "metal.sidero.dev/v1alpha1",
            "kind": "Server",
            "metadata": {"name": OLD, "labels": {"rack": "r3"}},
            "spec": {
                "accepted": True,
                "system": {"manufacturer": "HPE", "productName": "ProLiant DL325 Gen10"},
                "cpu": {
                    "manufacturer": "Advanced Micro Devices, Inc.",
                    "version": "AMD EPYC 7302P 16-Core Processor",
                },
            },
            "status": {"isClean": True},
        },
    ]
    classes = [
        {
            "apiVersion": V2,
            "kind": "ServerClass",
            "metadata": {"name": "any"},
            "spec": {"qualifiers": {}},
            "status": {"serversAvailable": [FREE, OLD], "serversInUse": [BOUND]},
        },
        {
            "apiVersion": V2,
            "kind": "ServerClass",
            "metadata": {"name": "r640"},
            "spec": {
                "selector": {"matchLabels": {"rack": "r1"}},
                "qualifiers": {
                    "hardware": [
                        {
                            "system": {"manufacturer": "Dell Inc."},
                            "memory": {"modules": [{"size": 16384}]},
                        }
                    ]
                },
                "environmentRef": {"name": "talos-1-7"},
                "configPatches": [
                    {"op": "replace", "path": "/cluster/network/cni/name", "value": "none"}
                ],
            },
            "status": {"serversAvailable": [FREE], "serversInUse": [BOUND]},
        },
        {
            "apiVersion": V2,
            "kind": "ServerClass",
            "metadata": {"name": "amd"},
            "spec": {
                "qualifiers": {
                    "hardware": [
                        {
                            "compute": {
                                "processors": [{"manufacturer": "Advanced Micro Devices, Inc."}]
                            }
                        }
                    ],
                    "labelSelectors": [{"rack": "r2"}, {"rack": "r3"}],
                }
            },
            "status": {"serversAvailable": [OLD], "serversInUse": []},
        },
        {
            "apiVersion": V2,
            "kind": "ServerClass",
            "metadata": {"name": "big-memory"},
            "spec": {"qualifiers": {"hardware": [{"memory": {"totalSize": "192 GB"}}]}},
            "status": {"serversAvailable": [FREE], "serversInUse": [BOUND]},
        },
    ]
    args = [
        "console=tty0",
        "console=ttyS1,115200n8",
        "init_on_alloc=1",
        "initrd=initramfs.xz",
        "printk.devkmsg=on",
        "slab_nomerge",
        "pti=on",
        "talos.platform=metal",
    ]
    environments = [
        {
            "apiVersion": V2,
            "kind": "Environment",
            "metadata": {"name": "default"},
            "spec": {
                "kernel": {"url": f"{talos}/v1.7.6/vmlinuz-amd64", "sha512": "", "args": args},
                "initrd": {"url": f"{talos}/v1.7.6/initramfs-amd64.xz", "sha512": ""},
            },
        },
        {
            "apiVersion": V2,
            "kind": "Environment",
            "metadata": {"name": "talos-1-7"},
            "spec": {
                "kernel": {
                    "url": f"{talos}/v1.7.6/vmlinuz-amd64",
                    "sha512": "ab" * 64,
                    "args": [
                        *args,
                        "talos.config=http://10.5.0.2:8081/configdata?uuid=",
                        "siderolink.api=10.5.0.2:8081",
                    ],
                },
                "initrd": {"url": f"{talos}/v1.7.6/initramfs-amd64.xz", "sha512": "cd" * 64},
            },
        },
    ]
    labels = {
        "cluster.x-k8s.io/cluster-name": "prod",
        "cluster.x-k8s.io/control-plane": "",
    }
    metal_machines = [
        {
            "apiVersion": CAPS,
            "kind": "MetalMachine",
            "metadata": {"name": MACHINE, "namespace": "default", "labels": labels},
            "spec": {
                "providerID": f"sidero://{BOUND}",
                "serverClassRef": {"apiVersion": V2, "kind": "ServerClass", "name": "r640"},
                "serverRef": {"apiVersion": V2, "kind": "Server", "name": BOUND},
            },
            "status": {
                "ready": True,
                "addresses": [
                    {"type": "InternalIP", "address": "10.5.0.21"},
                    {"type": "Hostname", "address": "prod-cp-1"},
                ],
            },
        }
    ]
    bindings = [
        {
            "apiVersion": CAPS,
            "kind": "ServerBinding",
            "metadata": {"name": BOUND, "labels": {"cluster.x-k8s.io/cluster-name": "prod"}},
            "spec": {
                "metalMachineRef": {
                    "apiVersion": CAPS,
                    "kind": "MetalMachine",
                    "namespace": "default",
                    "name": MACHINE,
                },
                "serverClassRef": {"apiVersion": V2, "kind": "ServerClass", "name": "r640"},
                "addresses": ["10.5.0.21"],
                "hostname": "prod-cp-1",
                "siderolink": {
                    "address": "fdae:41e4:649b:9303:2a07:9c7:5b08:aef7/64",
                    "publicKey": "Zc7nDvR1tq6m7QbWCz3i3qH0xY7iVhKqJ9Yj1uZ6eGE=",
                },
            },
            "status": {
                "ready": True,
                "conditions": [
                    _condition("TalosConfigLoaded"),
                    _condition("TalosConfigValidated"),
                    _condition("TalosInstalled"),
                ],
            },
        }
    ]
    secrets = [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": f"{uuid}-bmc", "namespace": "default"},
            "stringData": {"user": "sidero", "pass": PASSWORDS[uuid]},
        }
        for uuid in (BOUND, FREE)
    ]
    return copy.deepcopy(
        {
            "servers": servers,
            "serverclasses": classes,
            "environments": environments,
            "serverbindings": bindings,
            "metalmachines": metal_machines,
            "secrets": secrets,
        }
    )
