"""Target mode: the config URL, the machine config check, the on-disk layout."""

from __future__ import annotations

from pathlib import Path

import pytest

from arges.agent import target
from arges.talos.configgen import ClusterInput
from arges.talos.render import render
from arges.talos.secrets import generate

UUID = "6f0e1c2a-3b4d-4e5f-8a9b-0c1d2e3f4a5b"


def test_an_empty_uuid_is_filled_in_and_a_given_one_kept() -> None:
    url = "http://10.0.2.2:8081/configdata?uuid="
    assert target.config_url(url, UUID) == f"http://10.0.2.2:8081/configdata?uuid={UUID}"
    given = "http://h/configdata?uuid=abc&x=1"
    assert target.config_url(given, UUID) == given
    assert target.origin(url) == "http://10.0.2.2:8081"
    with_token = "http://10.0.2.2:8081/configdata?uuid=&token=secret-of-this-boot"
    assert target.config_url(with_token, UUID).endswith(f"uuid={UUID}&token=secret-of-this-boot")


def test_the_credential_is_read_from_the_url_and_kept_out_of_log_lines() -> None:
    url = f"http://10.0.2.2:8081/configdata?uuid={UUID}&token=secret-of-this-boot"
    assert target.token(url) == "secret-of-this-boot"
    assert target.token("http://h/configdata?uuid=") == ""
    shown = target.redacted(url)
    assert "secret" not in shown and shown.endswith(f"uuid={UUID}&token=%2A%2A%2A")


@pytest.mark.parametrize("role", ["controlplane", "worker"])
def test_configs_arges_renders_pass(role: str) -> None:
    config = render(generate(), role, ClusterInput("demo", "https://10.88.0.10:6443"))
    assert target.check(config) == ""


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "empty"),
        ("hello: world\n", "no top-level version: v1alpha1"),
        ("version: v1alpha2\nmachine:\n  type: worker\n", "no top-level version: v1alpha1"),
        ("version: v1alpha1\ncluster: {}\n", "no top-level machine section"),
        ("version: v1alpha1\nmachine:\n  token: x\n", "machine.type is missing"),
        ("version: v1alpha1\nmachine:\n  type: init\n", "machine.type is 'init'"),
        (
            "version: v1alpha1\nmachine:\n  install:\n    type: worker\n",
            "machine.type is missing",
        ),
        ("version: v1alpha1\nmachine: {}\ntype: worker\n", "machine.type is missing"),
    ],
)
def test_other_documents_are_refused_with_why(text: str, why: str) -> None:
    assert why in target.check(text)


def test_quotes_comments_and_later_documents() -> None:
    text = (
        "apiVersion: v1alpha1\nkind: HostnameConfig\n---\n"
        "# generated\nversion: 'v1alpha1'\ndebug: false\nmachine:\n"
        '    token: abc\n    type: "worker" # a worker\ncluster:\n    name: x\n'
    )
    assert target.check(text) == ""


def test_the_config_written_to_a_disk_reads_back(tmp_path: Path) -> None:
    disk = tmp_path / "disk.img"
    disk.write_bytes(b"\xaa" * 65536)
    config = b"version: v1alpha1\nmachine:\n  type: worker\n"
    target.install(disk, config)
    data = disk.read_bytes()
    header = data.split(b"\n", 1)[0].decode()
    assert header.startswith(f"ARGES-MACHINE-CONFIG v1 {len(config)} ")
    assert target.decode(data) == config
    assert len(data) == 65536 and data[-1] == 0xAA
    with pytest.raises(ValueError, match="does not match"):
        target.decode(data.replace(b"worker", b"WORKER"))
    with pytest.raises(ValueError, match="no ARGES"):
        target.decode(b"\0" * 100)
