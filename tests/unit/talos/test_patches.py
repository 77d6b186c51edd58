"""Patch semantics, from the examples of Talos' patching guide (reference/talos-capi.md §3)."""

from __future__ import annotations

import pytest

from arges.talos.errors import InvalidInput, PatchError
from arges.talos.patches import JSONPatch, PatchSet, StrategicPatch, apply, load

BASE = {
    "version": "v1alpha1",
    "machine": {
        "type": "worker",
        "certSANs": ["a.example"],
        "network": {
            "interfaces": [
                {"interface": "eth0", "dhcp": True, "vlans": [{"vlanId": 10, "mtu": 1500}]}
            ]
        },
        "install": {"disk": "/dev/sda", "wipe": False},
        "kubelet": {"extraArgs": {"v": "2"}},
    },
    "cluster": {
        "network": {"podSubnets": ["10.244.0.0/16"], "serviceSubnets": ["10.96.0.0/12"]},
        "apiServer": {
            "admissionControl": [{"name": "PodSecurity", "configuration": {"a": 1}}],
            "auditPolicy": {"kind": "Policy", "rules": [{"level": "Metadata"}]},
        },
    },
}


def run(*texts: str) -> list[dict]:
    return apply([BASE], [PatchSet("test", tuple(load(t) for t in texts))])


@pytest.mark.parametrize(
    ("patch", "path", "expected"),
    [
        ("machine: {certSANs: [b.example]}", ("machine", "certSANs"), ["a.example", "b.example"]),
        (
            "cluster: {network: {podSubnets: [10.1.0.0/16]}}",
            ("cluster", "network", "podSubnets"),
            ["10.1.0.0/16"],
        ),
        (
            "cluster: {network: {serviceSubnets: [10.2.0.0/16]}}",
            ("cluster", "network", "serviceSubnets"),
            ["10.2.0.0/16"],
        ),
        (
            "cluster: {apiServer: {auditPolicy: {kind: Policy, rules: [{level: None}]}}}",
            ("cluster", "apiServer", "auditPolicy", "rules"),
            [{"level": "None"}],
        ),
        (
            "machine: {network: {interfaces: [{interface: eth0, mtu: 9000}]}}",
            ("machine", "network", "interfaces"),
            [
                {
                    "interface": "eth0",
                    "dhcp": True,
                    "vlans": [{"vlanId": 10, "mtu": 1500}],
                    "mtu": 9000,
                }
            ],
        ),
        (
            "machine: {network: {interfaces: [{interface: eth1, dhcp: false}]}}",
            ("machine", "network", "interfaces", 1),
            {"interface": "eth1", "dhcp": False},
        ),
        (
            "machine: {network: {interfaces: [{interface: eth0, vlans: [{vlanId: 10, mtu: 1400}, {vlanId: 20}]}]}}",
            ("machine", "network", "interfaces", 0, "vlans"),
            [{"vlanId": 10, "mtu": 1400}, {"vlanId": 20}],
        ),
        (
            "machine: {network: {interfaces: [{interface: eth0, $patch: delete}]}}",
            ("machine", "network", "interfaces"),
            [],
        ),
        (
            "cluster: {apiServer: {admissionControl: [{name: PodSecurity, configuration: {b: 2}}]}}",
            ("cluster", "apiServer", "admissionControl"),
            [{"name": "PodSecurity", "configuration": {"a": 1, "b": 2}}],
        ),
        ("machine: {install: {disk: ''}}", ("machine", "install", "disk"), "/dev/sda"),
        ("machine: {install: {wipe: true}}", ("machine", "install", "wipe"), True),
        ("machine: {kubelet: {extraArgs: {$patch: delete}}}", ("machine", "kubelet"), {}),
        (
            "machine: {kubelet: {extraArgs: {node-labels: a=b}}}",
            ("machine", "kubelet", "extraArgs"),
            {"v": "2", "node-labels": "a=b"},
        ),
    ],
)
def test_strategic_merge(patch: str, path: tuple, expected: object) -> None:
    (doc,) = run(patch)
    node: object = doc
    for key in path:
        node = node[key]  # type: ignore[index]
    assert node == expected


def test_json_patches_and_yaml_op_lists() -> None:
    (doc,) = run(
        '[{"op": "add", "path": "/machine/network/hostname", "value": "worker1"}]',
        "- op: replace\n  path: /machine/install/disk\n  value: /dev/vda\n",
    )
    assert doc["machine"]["network"]["hostname"] == "worker1"
    assert doc["machine"]["install"]["disk"] == "/dev/vda"
    assert isinstance(load('[{"op": "remove", "path": "/a"}]'), JSONPatch)
    assert isinstance(load("machine: {}"), StrategicPatch)


def test_documents_are_appended_merged_and_deleted() -> None:
    link = "apiVersion: v1alpha1\nkind: SideroLinkConfig\napiUrl: https://a.example\n"
    docs = run(link)
    assert [d.get("kind") for d in docs] == [None, "SideroLinkConfig"]
    docs = apply(docs, [PatchSet("t", (load(link.replace("a.example", "b.example")),))])
    assert docs[1]["apiUrl"] == "https://b.example" and len(docs) == 2
    gone = apply(
        docs,
        [PatchSet("t", (load("apiVersion: v1alpha1\nkind: SideroLinkConfig\n$patch: delete\n"),))],
    )
    assert len(gone) == 1
    with pytest.raises(PatchError, match="not supported for multi-document"):
        apply(docs, [PatchSet("cluster", (load('[{"op": "remove", "path": "/debug"}]'),))])


def test_failures_name_the_patch() -> None:
    with pytest.raises(PatchError) as err:
        apply(
            [BASE],
            [
                PatchSet(
                    "ServerClass workers",
                    (
                        load("machine: {}"),
                        load('[{"op": "replace", "path": "/machine/missing", "value": 1}]'),
                    ),
                )
            ],
        )
    assert err.value.source == "ServerClass workers" and err.value.index == 1
    assert str(err.value).startswith("ServerClass workers patch #2:")
    with pytest.raises(InvalidInput):
        load("- just\n- strings\n")
    with pytest.raises(InvalidInput):
        load("key: [unclosed")
    assert BASE["machine"]["certSANs"] == ["a.example"], "patches never touch their input"
