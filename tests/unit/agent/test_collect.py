"""The collectors on /sys, /proc and dmidecode output captured from QEMU guests."""

from __future__ import annotations

from pathlib import Path

from arges.agent import collect
from arges.api.server import HardwareInformation

DATA = Path(__file__).parents[2] / "data" / "agent"
QEMU = DATA / "qemu"
MIB = 1 << 20


def inventory(root: Path = QEMU, addresses: dict[str, list[str]] | None = None) -> dict:
    return collect.inventory(root, (root / "dmidecode.txt").read_text(), addresses or {})


def test_smbios_system_information_is_what_qemu_was_given() -> None:
    assert inventory()["system"] == {
        "uuid": "6f0e1c2a-3b4d-4e5f-8a9b-0c1d2e3f4a5b",
        "manufacturer": "Arges Lab",
        "productName": "Virtual Server",
        "version": "1.0",
        "serialNumber": "LAB-0001",
        "skuNumber": "SKU-1",
        "family": "Lab",
    }


def test_placeholder_strings_and_an_unset_uuid_are_dropped() -> None:
    records = collect.parse_dmidecode((DATA / "placeholders" / "dmidecode.txt").read_text())
    assert collect.system(records) == {
        "uuid": "",
        "manufacturer": "",
        "productName": "",
        "version": "pc-i440fx-7.2",
        "serialNumber": "",
        "skuNumber": "",
        "family": "",
    }
    memory = collect.memory(records, DATA / "placeholders")
    assert memory["modules"][0]["serialNumber"] == "" and memory["totalSize"] == 256 * MIB


def test_processors_and_memory_come_from_smbios() -> None:
    hw = inventory()
    assert hw["compute"] == {
        "processorCount": 1,
        "totalCoreCount": 2,
        "totalThreadCount": 2,
        "processors": [
            {
                "manufacturer": "QEMU",
                "productName": "pc-i440fx-7.2",
                "speed": 2000,
                "coreCount": 2,
                "threadCount": 2,
            }
        ],
    }
    assert hw["memory"] == {
        "totalSize": 512 * MIB,
        "moduleCount": 1,
        "modules": [
            {
                "manufacturer": "QEMU",
                "productName": "",
                "serialNumber": "",
                "type": "RAM",
                "size": 512 * MIB,
                "speed": 0,
            }
        ],
    }


def test_without_smbios_proc_cpuinfo_and_meminfo_are_used() -> None:
    compute = collect.compute([], QEMU)
    assert compute["processorCount"] == 1
    assert compute["processors"][0]["productName"] == "QEMU Virtual CPU version 2.5+"
    assert (compute["totalCoreCount"], compute["totalThreadCount"]) == (2, 2)
    assert collect.memory([], QEMU)["totalSize"] == 468120 * 1024


def test_a_processor_socket_that_is_unpopulated_is_not_counted() -> None:
    text = (
        (QEMU / "dmidecode.txt")
        .read_text()
        .replace("Status: Populated, Enabled", "Status: Unpopulated")
    )
    records = collect.parse_dmidecode(text)
    assert collect.compute(records, Path("/nonexistent"))["processorCount"] == 0


def test_disks_virtio_nvme_and_sata_ssd_and_hdd() -> None:
    storage = inventory()["storage"]
    assert storage["deviceCount"] == 4
    assert storage["totalSize"] == (96 + 48 + 80 + 64) * MIB
    by_name = {d["name"]: d for d in storage["devices"]}
    assert by_name["vda"] == {
        "name": "vda",
        "type": "virtio",
        "size": 64 * MIB,
        "productName": "",
        "serialNumber": "DISK-A",
        "wwid": "",
    }
    assert by_name["nvme0n1"] == {
        "name": "nvme0n1",
        "type": "NVMe",
        "size": 96 * MIB,
        "productName": "QEMU NVMe Ctrl",
        "serialNumber": "DISK-B",
        "wwid": "nvme.1b36-4449534b2d42-51454d55204e564d65204374726c-00000001",
    }
    assert by_name["sda"]["type"] == "SSD" and by_name["sda"]["serialNumber"] == "SATA-SSD-1"
    assert by_name["sda"]["productName"] == "ArgesSSD"
    assert by_name["sda"]["wwid"].startswith("t10.ATA") and "SATA-SSD-1" in by_name["sda"]["wwid"]
    assert by_name["sdb"]["type"] == "HDD" and by_name["sdb"]["serialNumber"] == "SATA-HDD-1"
    assert by_name["sdb"]["size"] == 80 * MIB


def test_nics_are_the_physical_ones_with_their_addresses() -> None:
    network = inventory(addresses={"eth0": ["10.0.2.15/24"]})["network"]
    assert network["interfaceCount"] == 2
    assert [(i["name"], i["mac"], i["link"], i["addresses"]) for i in network["interfaces"]] == [
        ("eth0", "52:54:00:00:00:01", "up", ["10.0.2.15/24"]),
        ("eth1", "52:54:00:00:00:02", "up", []),
    ]
    assert network["interfaces"][0]["mtu"] == 1500


def test_ip_addr_output_global_addresses_only() -> None:
    text = (
        "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever\n"
        "2: eth0    inet 10.0.2.15/24 brd 10.0.2.255 scope global eth0\\       valid_lft forever\n"
        "2: eth0    inet6 fec0::5054:ff:fe00:1/64 scope site dynamic\n"
        "2: eth0    inet6 2001:db8::1/64 scope global \\       valid_lft forever\n"
        "2: eth0    inet6 fe80::5054:ff:fe00:1/64 scope link \\       valid_lft forever\n"
    )
    assert collect.parse_ip_addr(text) == {"eth0": ["10.0.2.15/24", "2001:db8::1/64"]}


def test_the_inventory_is_what_the_server_accepts() -> None:
    hw = HardwareInformation.model_validate(inventory(), strict=True)
    assert hw.to_json()["storage"]["deviceCount"] == 4
