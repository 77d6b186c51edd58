from pathlib import Path

import pytest

from arges.lab.machines import Disk, Machine, Nic, Smbios, prepare_run_dir, qemu_argv
from arges.lab.network import LabNetwork
from arges.lab.sitedhcp import dnsmasq_argv

RUN = Path("/run/lab/s1")


def machine(firmware: str = "bios", **kw) -> Machine:
    return Machine(
        name="s1",
        firmware=firmware,  # type: ignore[arg-type]
        smbios=Smbios(
            uuid="8b2c7a12-5f3e-4d61-9a0b-1c2d3e4f5a6b", serial="LAB-1", manufacturer="Arges, Inc."
        ),
        disks=(Disk(Path("/d/a.raw"), 2**30, "D1"), Disk(Path("/d/b.raw"), 2**31, "D2")),
        nics=(Nic("lab1t0", "52:54:00:00:01:00"), Nic("lab1t1", "52:54:00:00:01:01")),
        run_dir=RUN,
        ovmf_code=Path("/ovmf/code.fd") if firmware == "uefi" else None,
        ovmf_vars=Path("/run/lab/s1/vars.fd") if firmware == "uefi" else None,
        **kw,
    )


def devices(argv: list[str]) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == "-device"]


def test_bios_network_boot_uses_the_ipxe_rom_and_boots_the_first_nic_first() -> None:
    argv = qemu_argv(machine(), "network")
    assert argv[argv.index("-accel") + 1] == "tcg"
    smbios = argv[argv.index("-smbios") + 1]
    assert smbios.startswith("type=1,uuid=8b2c7a12-5f3e-4d61-9a0b-1c2d3e4f5a6b,")
    assert "manufacturer=Arges,, Inc." in smbios and "serial=LAB-1" in smbios
    devs = devices(argv)
    assert devs[0] == "virtio-net-pci,netdev=net0,mac=52:54:00:00:01:00,bootindex=1"
    assert devs[1] == "virtio-net-pci,netdev=net1,mac=52:54:00:00:01:01"
    assert devs[2].endswith("serial=D1,bootindex=2") and devs[3].endswith("serial=D2,bootindex=3")
    assert "romfile=" not in " ".join(devs)
    assert "if=pflash" not in " ".join(argv)


def test_uefi_disables_the_nic_rom_and_loads_ovmf() -> None:
    argv = qemu_argv(machine("uefi"), "network")
    joined = " ".join(argv)
    assert "if=pflash,format=raw,unit=0,readonly=on,file=/ovmf/code.fd" in joined
    assert all(d.endswith("romfile=") or "romfile=," in d for d in devices(argv) if "net" in d)
    assert argv[argv.index("-machine") + 1] == "q35"


def test_disk_boot_puts_the_first_disk_first() -> None:
    devs = devices(qemu_argv(machine(), "disk"))
    assert "bootindex" not in devs[0]
    assert devs[2].endswith("bootindex=1")


def test_virtual_media_is_a_cd_drive_booted_first_when_asked() -> None:
    iso = Path("/run/lab/s1/media/agent.iso")
    argv = qemu_argv(machine("uefi"), "cd", cdrom=iso)
    assert f"file={iso},if=none,id=cd0,format=raw,media=cdrom,readonly=on" in argv
    devs = devices(argv)
    assert devs[0] == "ide-cd,drive=cd0,bootindex=1"
    assert [d for d in devs if "bootindex" in d][1].endswith("serial=D1,bootindex=2")
    assert devices(qemu_argv(machine(), "network", cdrom=iso))[0] == "ide-cd,drive=cd0"
    assert "media=cdrom" not in " ".join(qemu_argv(machine(), "network"))


def test_firmware_without_network_boot_has_no_pxe_and_no_nic_rom() -> None:
    uefi = qemu_argv(machine("uefi", network_boot=False), "network")
    settings = [uefi[i + 1] for i, a in enumerate(uefi) if a == "-fw_cfg"]
    assert settings == [
        "name=opt/org.tianocore/IPv4PXESupport,string=n",
        "name=opt/org.tianocore/IPv6PXESupport,string=n",
    ]
    bios = devices(qemu_argv(machine("bios", network_boot=False), "network"))
    nics = [d for d in bios if d.startswith("virtio-net")]
    assert all(d.endswith("romfile=") for d in nics), "no iPXE ROM"
    assert devices(qemu_argv(machine("bios", network_boot=False), "network"))[2].endswith(
        "bootindex=1"
    ), "the first disk comes first"


def test_console_and_qmp_sockets() -> None:
    joined = " ".join(qemu_argv(machine(), "network"))
    assert f"path={RUN}/console.sock,server=on,wait=off,logfile={RUN}/console.log" in joined
    assert f"unix:{RUN}/qmp.sock,server=on,wait=off" in joined


def test_bad_machines_are_refused() -> None:
    with pytest.raises(ValueError, match="OVMF"):
        qemu_argv(Machine("u", "uefi", Smbios(uuid="x"), (), (Nic("t", "m"),), RUN), "network")
    with pytest.raises(ValueError, match="NIC"):
        qemu_argv(Machine("n", "bios", Smbios(uuid="x"), (), (), RUN), "network")


def test_network_plans() -> None:
    net = LabNetwork(subnet="10.88.0.0/24")
    assert (net.host_address, net.bridge_address, net.dhcp_range()) == (
        "10.88.0.1",
        "10.88.0.2",
        ("10.88.0.128", "10.88.0.254"),
    )
    plan = net.create_plan()
    assert plan[0] == ["ip", "netns", "add", "arges-lab"]
    assert ["ip", "addr", "add", "10.88.0.1/24", "dev", "arges0"] in plan
    assert net.tap_plan("lab1t0")[1] == [
        "ip",
        "netns",
        "exec",
        "arges-lab",
        "ip",
        "link",
        "set",
        "lab1t0",
        "master",
        "br0",
        "up",
    ]
    argv = dnsmasq_argv(net, Path("/lab/leases"))
    assert argv[:4] == ["ip", "netns", "exec", "arges-lab"]
    assert "--dhcp-range=10.88.0.128,10.88.0.254,255.255.255.0,1h" in argv
    assert "--port=0" in argv and not any(a.startswith("--dhcp-boot") for a in argv)


def test_qemu_writes_its_pid_and_seabios_mirrors_its_console_to_serial(tmp_path: Path) -> None:
    bios = Machine("b", "bios", Smbios(uuid="x"), (), (Nic("t", "m"),), tmp_path / "b")
    argv = qemu_argv(bios, "network")
    assert argv[argv.index("-pidfile") + 1] == str(tmp_path / "b" / "qemu.pid")
    assert argv[argv.index("-fw_cfg") + 1] == f"name=etc/sercon-port,file={bios.sercon_file}"
    prepare_run_dir(bios)
    assert bios.sercon_file.read_bytes() == b"\xf8\x03", "COM1 (0x3f8), little-endian"
    assert "-fw_cfg" not in qemu_argv(machine("uefi"), "network")
