from __future__ import annotations

import datetime as dt
import struct
from pathlib import Path

import pytest

from arges.api.environment import Environment
from arges.boot import ipxe
from arges.boot.ipxe import BootAnswer
from arges.boot.tftp import (
    ACCESS_VIOLATION,
    BAD_OPTION,
    ILLEGAL,
    NOT_FOUND,
    Refused,
    negotiate,
    parse_request,
    resolve,
)
from arges.metal.boot import BootDecision


def rrq(name: bytes, mode: bytes = b"octet", *opts: bytes, op: int = 1) -> bytes:
    return struct.pack("!H", op) + b"\0".join([name, mode, *opts]) + b"\0"


def test_requests_and_options() -> None:
    req = parse_request(rrq(b"undionly.kpxe", b"octet", b"blksize", b"1432", b"TSIZE", b"0"))
    assert (req.filename, req.mode, req.options) == (
        "undionly.kpxe",
        "octet",
        {"blksize": "1432", "tsize": "0"},
    )
    for bad, code in [
        (rrq(b"x", op=2), ACCESS_VIOLATION),
        (b"\0\x01", ILLEGAL),
        (rrq(b"x", op=3), ILLEGAL),
        (rrq(b"x", b"mail"), ILLEGAL),
        (rrq(b"x", b"octet", b"blksize"), ILLEGAL),
        (b"\0\x01x\0octet", ILLEGAL),
    ]:
        with pytest.raises(Refused) as err:
            parse_request(bad)
        assert err.value.code == code


def test_option_negotiation() -> None:
    assert negotiate({}, 100) == {}
    assert negotiate(
        {"blksize": "99999", "tsize": "0", "timeout": "3", "windowsize": "4"}, 1234
    ) == {"blksize": "65464", "tsize": "1234", "timeout": "3"}
    for bad in ({"blksize": "4"}, {"blksize": "x"}, {"timeout": "0"}, {"timeout": "256"}):
        with pytest.raises(Refused) as err:
            negotiate(bad, 1)
        assert err.value.code == BAD_OPTION


def test_paths_stay_inside_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "ipxe.efi").write_bytes(b"x")
    (root / "sub" / "a").write_bytes(b"y")
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "key").write_bytes(b"s")
    (root / "outside").symlink_to(tmp_path / "secret")
    (root / "dev").symlink_to("/dev/null")
    assert resolve(root, "ipxe.efi") == (root / "ipxe.efi").resolve()
    assert resolve(root, "sub/a").read_bytes() == b"y"
    assert resolve(root, "sub\\a").read_bytes() == b"y"
    for name, code in [
        ("/etc/passwd", ACCESS_VIOLATION),
        ("../secret/key", ACCESS_VIOLATION),
        ("sub/../../secret/key", ACCESS_VIOLATION),
        ("outside/key", ACCESS_VIOLATION),
        ("\\windows", ACCESS_VIOLATION),
        ("missing", NOT_FOUND),
        ("sub", NOT_FOUND),
        ("sub/", NOT_FOUND),
        ("outside", NOT_FOUND),
        ("dev", NOT_FOUND),
        ("", ACCESS_VIOLATION),
    ]:
        with pytest.raises(Refused) as err:
            resolve(root, name)
        assert err.value.code == code, name


def test_long_names_are_refused_not_looked_up(tmp_path: Path) -> None:
    # Found by the fuzz run: a component over NAME_MAX escaped as OSError (a traceback on the
    # TFTP loop), and a 60 KB name of 30,000 directories took seconds to resolve.
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a").write_bytes(b"y")
    for name, code in [
        ("a" * 300, NOT_FOUND),
        ("sub/" + "a" * 256, NOT_FOUND),
        (("x" * 250 + "/") * 2, NOT_FOUND),
        ("q/" * 30_000, ILLEGAL),
        ("sub/" * 128 + "a", ILLEGAL),
    ]:
        with pytest.raises(Refused) as err:
            resolve(tmp_path, name)
        assert err.value.code == code, name[:20]
    assert resolve(tmp_path, "./" * 250 + "sub/a").read_bytes() == b"y"


def test_a_file_link_in_the_root_is_served_like_debians_ipxe_efi(tmp_path: Path) -> None:
    """Debian's ipxe ships /usr/lib/ipxe/ipxe.efi -> /boot/ipxe.efi (an absolute link out of
    the root); refusing it made every UEFI PXE boot fail with a TFTP error."""
    root, boot = tmp_path / "lib-ipxe", tmp_path / "boot"
    root.mkdir()
    boot.mkdir()
    (boot / "ipxe.efi").write_bytes(b"MZ")
    (root / "ipxe.efi").symlink_to(boot / "ipxe.efi")
    assert resolve(root, "ipxe.efi").read_bytes() == b"MZ"


NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC).isoformat()


def env(args: list[str]) -> Environment:
    return Environment.from_json(
        {
            "metadata": {"name": "e"},
            "spec": {"kernel": {"url": "file:///k", "args": args}, "initrd": {"url": "file:///i"}},
        }
    )


BASE = "http://10.88.0.1:8081"


CREDENTIAL = "c" * 43


def answer(decision: BootDecision, environment: Environment | None, **kw: str) -> BootAnswer:
    return BootAnswer(decision, environment, **kw)


def test_target_environment_script_adds_talos_config_with_the_boot_credential() -> None:
    decision = BootDecision("environment", "allocated", environment="default", target=True)
    script = ipxe.render(
        answer(
            decision, env(["talos.platform=metal", "initrd=initramfs.xz"]), credential=CREDENTIAL
        ),
        base_url=BASE,
        mac="52:54:00:12:34:56",
    )
    assert script.status == 200
    assert script.body.splitlines() == [
        "#!ipxe",
        "# Arges: allocated",
        f"kernel {BASE}/env/default/kernel talos.platform=metal initrd=initramfs.xz "
        f"talos.config={BASE}/configdata?uuid=&token={CREDENTIAL}",
        f"initrd --name initramfs.xz {BASE}/env/default/initrd",
        "boot",
    ]
    kept = ipxe.render(
        answer(decision, env(["talos.config=http://elsewhere/c"]), credential=CREDENTIAL),
        base_url=BASE,
        mac="",
    )
    assert "talos.config=http://elsewhere/c initrd=initrd" in kept.body
    assert "configdata" not in kept.body and CREDENTIAL not in kept.body


def test_agent_script_carries_the_endpoint_the_boot_mac_and_the_credential() -> None:
    decision = BootDecision("environment", "unknown server", environment="agent")
    script = ipxe.render(
        answer(decision, env(["console=ttyS0", "arges.token=planted"]), credential=CREDENTIAL),
        base_url=BASE,
        mac="52:54:00:12:34:56",
    )
    kernel = script.body.splitlines()[2]
    assert kernel.endswith(
        f"console=ttyS0 initrd=initrd arges.url={BASE} arges.mac=52:54:00:12:34:56 "
        f"arges.token={CREDENTIAL}"
    ), "an Environment cannot plant a credential of its own"
    assert "talos.config" not in script.body


def test_a_refused_requester_gets_403_and_nothing_else() -> None:
    decision = BootDecision("environment", "allocated", environment="default", target=True)
    got = ipxe.render(
        answer(decision, env([]), credential=CREDENTIAL, refused="another address"),
        base_url=BASE,
        mac="",
    )
    assert (got.status, got.body) == (403, "forbidden\n")


@pytest.mark.parametrize(
    ("method", "status", "body"),
    [
        ("ipxe-exit", 200, "#!ipxe\nexit\n"),
        ("http-404", 404, "boot from disk\n"),
        ("ipxe-sanboot", 200, "#!ipxe\nsanboot --no-describe --drive 0x80\n"),
    ],
)
def test_disk_boot_methods(method, status, body) -> None:
    got = ipxe.render(
        answer(BootDecision("disk", "installed", disk_method=method), None), base_url=BASE, mac=""
    )
    assert (got.status, got.body) == (status, body)


def test_not_ready_is_412_with_the_reason() -> None:
    got = ipxe.render(
        answer(BootDecision("not-ready", "environment 'default' is not ready"), None),
        base_url=BASE,
        mac="",
    )
    assert got.status == 412 and "not ready" in got.body


def test_chain_script_tries_every_nic() -> None:
    body = ipxe.chain_script(BASE)
    assert body.startswith("#!ipxe\n")
    assert (
        f"chain --replace --autofree {BASE}/ipxe?uuid=${{uuid}}&mac=${{net${{idx}}/mac:hexhyp}}"
        "&arch=${buildarch}&platform=${platform}"
    ) in body
    assert "inc idx" in body and "goto nic" in body
    # IPv4 only: iPXE's plain dhcp also waits 16 s for IPv6 router advertisements.
    assert "ifconf -c dhcp net${idx} || dhcp net${idx} && chain " in body
    assert ipxe.mac_from_query("52-54-00-AB-cd-01") == "52:54:00:ab:cd:01"
    assert ipxe.mac_from_query("junk") == ""
