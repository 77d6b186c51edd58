"""Reading the kernel command line."""

from __future__ import annotations

from arges.agent.cmdline import BootArgs, StaticIp, parse, split, static_ip

TOKEN = "c" * 43
IPXE = (
    "console=ttyS0,115200n8 console=tty0 initrd=initrd "
    f"arges.url=http://10.88.0.1:8081/ arges.mac=52:54:00:AB:cd:01 arges.token={TOKEN}\n"
)


def test_what_ipxe_adds_is_read() -> None:
    assert parse(IPXE) == BootArgs(
        url="http://10.88.0.1:8081", mac="52:54:00:ab:cd:01", token=TOKEN
    )


def test_target_mode_and_hexhyp_macs() -> None:
    args = parse("talos.config=http://10.0.2.2:8081/configdata?uuid= arges.mac=52-54-00-00-00-01")
    assert args.talos_config == "http://10.0.2.2:8081/configdata?uuid="
    assert args.mac == "52:54:00:00:00:01" and args.url == ""


def test_a_malformed_mac_is_ignored_and_the_last_value_wins() -> None:
    assert parse("arges.mac=nonsense arges.url=http://a arges.url=http://b") == BootArgs(
        url="http://b"
    )


def test_quoted_values_and_flags() -> None:
    assert split('quiet dyndbg="file x.c +p" a=1') == {
        "quiet": "",
        "dyndbg": "file x.c +p",
        "a": "1",
    }


def test_a_static_address_from_the_kernels_ip_argument() -> None:
    args = parse(
        "console=ttyS0 arges.url=http://10.88.0.1:8081 "
        "ip=10.88.0.50::10.88.0.1:255.255.255.0:::off:10.88.0.1:9.9.9.9"
    )
    assert args.static == StaticIp("10.88.0.50", 24, "10.88.0.1", ("10.88.0.1", "9.9.9.9"))
    assert static_ip("10.0.0.7:::255.255.0.0:host:eth1:none") == StaticIp(
        "10.0.0.7", 16, device="eth1"
    )


def test_other_ip_arguments_leave_the_agent_to_dhcp() -> None:
    for value in (
        "dhcp",
        "::::::dhcp",
        "10.0.0.7:::255.255.255.0:::dhcp",
        ":::::eth0:off",
        "x::::::off",
    ):
        assert static_ip(value) is None, value
    assert parse("arges.url=http://a").static is None
