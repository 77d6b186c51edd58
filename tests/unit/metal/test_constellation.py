"""Constellation decisions: what makes a spec unusable, and the status from its members."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from arges.api.constellation import ConstellationSpec
from arges.metal.constellation import problems, status

EXAMPLE = yaml.safe_load(
    (Path(__file__).parents[3] / "examples" / "constellation.yaml").read_text()
)["spec"]


def edited(change: dict[str, Any]) -> ConstellationSpec:
    """The example's spec with ``change``'s dotted paths set (``satellites.0.name``)."""
    spec = copy.deepcopy(EXAMPLE)
    for path, value in change.items():
        node: Any = spec
        *parents, last = path.split(".")
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return ConstellationSpec.from_json(spec)


@pytest.mark.parametrize(
    ("change", "wanted"),
    [
        ({}, []),
        (
            {"satellites.1.name": "ganymede"},
            ["satellite ganymede: two members are named ganymede"],
        ),
        ({"satellites.0.name": "Ganymede"}, ["satellite Ganymede: name: a lowercase RFC 1123"]),
        (
            {"satellites.1.addons.cilium.clusterId": 2},
            ["satellite callisto: cilium.clusterId 2 is ganymede's too"],
        ),
        (
            {"satellites.0.addons.cilium.meshEndpoint": "10.9.9.9"},
            ["satellite ganymede: cilium.meshEndpoint 10.9.9.9 is in none of its MetalLB"],
        ),
        (
            {"satellites.0.addons.metallb.peers": []},
            ["satellite ganymede: the anycast pool is announced over BGP: give metallb peers"],
        ),
        (
            {"barycenter.addons.metallb.asn": None},
            ["barycenter jupiter: metallb.asn is needed to peer over BGP"],
        ),
        (
            {"barycenter.addons.ingressNginx.address": "203.0.113.10"},
            ["barycenter jupiter: ingressNginx.address 203.0.113.10 is in none of its MetalLB"],
        ),
        (
            {"satellites.0.addons.ingressNginx.address": "198.51.100.20"},
            [],
        ),
        (
            {"anycast.ingressAddress": "203.0.113.99"},
            ["anycast.ingressAddress 203.0.113.99 is not in the pool"],
        ),
        (
            {"barycenter.addons.metallb.version": "main; rm -rf /"},
            ["barycenter jupiter: metallb.version: 'main; rm -rf /' is not a release version"],
        ),
        (
            {"barycenter.addons.metallb.addressPools.0.addresses": ["192.0.2.16-192.0.2.31"]},
            [],
        ),
        (
            {"barycenter.addons.metallb.addressPools.0.addresses": ["not-an-address"]},
            ["barycenter jupiter: "],
        ),
    ],
)
def test_problems(change: dict[str, Any], wanted: list[str]) -> None:
    found = problems(edited(change))
    assert len(found) == len(wanted), found
    for message, start in zip(found, wanted, strict=True):
        assert message.startswith(start), (message, start)


def cluster(phase: str | None) -> dict[str, Any]:
    return (
        {"status": {"phase": phase, "controlPlanes": "3/3", "workerCount": "2/3"}} if phase else {}
    )


@pytest.mark.parametrize(
    ("phases", "phase", "mesh"),
    [
        ({}, "Pending", "Declared"),
        ({"jupiter": "Running"}, "Pending", "Declared"),
        (
            {"jupiter": "Running", "ganymede": "Provisioning", "callisto": "Running"},
            "Provisioning",
            "Declared",
        ),
        ({"jupiter": "Running", "ganymede": "Running", "callisto": "Running"}, "Running", "Wired"),
    ],
)
def test_status_follows_the_members(phases: dict[str, str], phase: str, mesh: str) -> None:
    spec = ConstellationSpec.from_json(EXAMPLE)
    clusters = {name: cluster(p) for name, p in phases.items()}
    out = status(spec, clusters, ca_secret="c-cilium-ca", ca_fingerprint="sha256:ab")
    assert out["phase"] == phase
    assert out["clusterMesh"]["state"] == mesh
    assert out["clusterMesh"]["clusters"] == [
        {"name": "jupiter", "id": 1, "endpoint": "192.0.2.21:2379"},
        {"name": "ganymede", "id": 2, "endpoint": "198.51.100.21:2379"},
        {"name": "callisto", "id": 3, "endpoint": "198.51.100.149:2379"},
    ]
    assert out["anycastAddress"] == "203.0.113.10"
    rows = {m["name"]: m for m in out["members"]}
    assert rows["ganymede"]["ingressAddress"] == "203.0.113.10"
    assert rows["jupiter"]["ingressAddress"] == "192.0.2.20"
    assert rows["jupiter"]["role"] == "barycenter" and rows["callisto"]["role"] == "satellite"
    assert rows["jupiter"]["endpoint"] == "https://192.0.2.10:6443"
    assert rows["jupiter"]["addons"] == [
        "cilium",
        "metallb",
        "ingress-nginx",
        "cert-manager",
        "external-dns",
        "kubespan",
    ]
    if "jupiter" in phases:
        assert rows["jupiter"]["controlPlanes"] == "3/3"


def test_without_a_mesh_there_is_no_mesh_status() -> None:
    spec = edited(
        {
            f"{m}.addons.cilium.meshEndpoint": None
            for m in ("barycenter", "satellites.0", "satellites.1")
        }
    )
    assert status(spec, {}, ca_secret=None, ca_fingerprint=None)["clusterMesh"] is None
