"""Cluster API provider decisions: what a MetalCluster or MetalMachine waits for, and what a
bound server becomes in Cluster API's eyes."""

from __future__ import annotations

from typing import Any

import pytest

from arges.metal.capi import (
    addresses,
    cluster_gate,
    endpoint,
    imported_binding,
    infrastructure_ready,
    machine_gate,
    owner,
    paused,
    provider_id,
    role,
    server_class_name,
)
from tests.unit.metal.conftest import server

CLUSTER_OWNER = {"apiVersion": "cluster.x-k8s.io/v1beta2", "kind": "Cluster", "name": "c"}
MACHINE_OWNER = {"apiVersion": "cluster.x-k8s.io/v1beta1", "kind": "Machine", "name": "m"}


def obj(owners: list[dict[str, Any]] | None = None, **parts: Any) -> dict[str, Any]:
    meta = parts.pop("metadata", {})
    return {"metadata": {"ownerReferences": owners or [], **meta}, **parts}


READY_V1BETA2 = {"status": {"initialization": {"infrastructureProvisioned": True}}}
READY_V1BETA1 = {"status": {"infrastructureReady": True}}
WITH_DATA = {"spec": {"bootstrap": {"dataSecretName": "m-bootstrap-data"}}}


def test_owners_are_found_by_kind_and_group_whatever_the_version() -> None:
    o = obj([{"apiVersion": "other.io/v1", "kind": "Machine", "name": "x"}, MACHINE_OWNER])
    assert owner(o, "Machine") == MACHINE_OWNER
    assert owner(o, "Cluster") is None


@pytest.mark.parametrize(
    ("cluster", "annotations", "expected"),
    [
        (None, {}, False),
        ({"spec": {"paused": True}}, {}, True),
        ({"spec": {"paused": False}}, {"cluster.x-k8s.io/paused": ""}, True),
        ({"spec": {}}, {}, False),
    ],
)
def test_pause_comes_from_the_cluster_or_the_annotation(
    cluster: dict[str, Any] | None, annotations: dict[str, str], expected: bool
) -> None:
    assert paused(cluster, obj(metadata={"annotations": annotations})) is expected


@pytest.mark.parametrize(
    ("metal", "cluster", "reason"),
    [
        (obj(), {"spec": {}}, "WaitingForClusterOwner"),
        (obj([CLUSTER_OWNER]), None, "WaitingForCluster"),
        (obj([CLUSTER_OWNER]), {"spec": {}}, "WaitingForControlPlaneEndpoint"),
        (
            obj([CLUSTER_OWNER], spec={"controlPlaneEndpoint": {"host": "v", "port": 6443}}),
            {},
            None,
        ),
        (obj([CLUSTER_OWNER]), {"spec": {"controlPlaneEndpoint": {"host": "v", "port": 1}}}, None),
    ],
)
def test_what_a_metal_cluster_waits_for(
    metal: dict[str, Any], cluster: dict[str, Any] | None, reason: str | None
) -> None:
    gate = cluster_gate(metal, cluster)
    assert (gate.reason if gate else None) == reason


def test_the_endpoint_is_the_metal_clusters_own_else_the_clusters() -> None:
    own = obj(spec={"controlPlaneEndpoint": {"host": "a", "port": 1}})
    theirs = {"spec": {"controlPlaneEndpoint": {"host": "b", "port": 2}}}
    assert endpoint(own, theirs) == {"host": "a", "port": 1}
    assert endpoint(obj(), theirs) == {"host": "b", "port": 2}


@pytest.mark.parametrize(
    ("metal", "machine", "cluster", "reason"),
    [
        (obj(), None, None, "WaitingForMachineOwner"),
        (obj([MACHINE_OWNER]), None, None, "WaitingForMachine"),
        (obj([MACHINE_OWNER]), WITH_DATA, None, "WaitingForCluster"),
        (obj([MACHINE_OWNER]), WITH_DATA, {"status": {}}, "WaitingForClusterInfrastructure"),
        (obj([MACHINE_OWNER]), {"spec": {}}, READY_V1BETA2, "WaitingForBootstrapData"),
        (obj([MACHINE_OWNER]), WITH_DATA, READY_V1BETA2, None),
        (obj([MACHINE_OWNER]), WITH_DATA, READY_V1BETA1, None),
    ],
)
def test_what_a_metal_machine_waits_for_in_the_contracts_order(
    metal: dict[str, Any],
    machine: dict[str, Any] | None,
    cluster: dict[str, Any] | None,
    reason: str | None,
) -> None:
    gate = machine_gate(metal, machine, cluster)
    assert (gate.reason if gate else None) == reason


def test_infrastructure_ready_reads_either_contract() -> None:
    assert infrastructure_ready(READY_V1BETA1) and infrastructure_ready(READY_V1BETA2)
    assert not infrastructure_ready({"status": {"initialization": {}}})


@pytest.mark.parametrize(
    ("ref", "name"),
    [
        (None, None),
        ({"apiVersion": "metal.arges.dev/v1alpha1", "kind": "ServerClass", "name": "a"}, "a"),
        ({"apiVersion": "metal.sidero.dev/v1alpha2", "kind": "ServerClass", "name": "b"}, "b"),
        ({"name": "c"}, "c"),
    ],
)
def test_server_class_references_of_arges_and_sidero(
    ref: dict[str, Any] | None, name: str | None
) -> None:
    assert server_class_name(ref) == name


@pytest.mark.parametrize(
    "ref",
    [
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "x"},
        {"apiVersion": "example.com/v1", "kind": "ServerClass", "name": "x"},
        {"kind": "ServerClass"},
    ],
)
def test_other_references_are_refused_with_a_reason(ref: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="serverClassRef"):
        server_class_name(ref)


def test_role_provider_id_and_addresses() -> None:
    assert role({"metadata": {"labels": {"cluster.x-k8s.io/control-plane": ""}}}) == "controlplane"
    assert role({"metadata": {}}) == "worker"
    assert provider_id("4c4c") == "arges://4c4c"
    s = server("s")
    s.status.addresses = []
    s.status.hostname = "node-1"
    assert [a.to_json() for a in addresses(s)] == [{"type": "Hostname", "address": "node-1"}]


def _binding(consumer: dict[str, Any], **meta: Any) -> dict[str, Any]:
    return {"metadata": {"name": "srv", **meta}, "spec": {"consumerRef": consumer}}


MOVED = {"metadata": {"name": "cp-0", "namespace": "prod", "uid": "new-uid"}}
IMPORTED = {
    "apiVersion": "infrastructure.cluster.x-k8s.io/v1alpha3",
    "kind": "MetalMachine",
    "name": "cp-0",
    "namespace": "prod",
}


@pytest.mark.parametrize(
    ("binding", "adopted"),
    [
        (_binding(IMPORTED), True),
        (_binding({**IMPORTED, "uid": "old-uid"}), False),
        (_binding({**IMPORTED, "namespace": "default"}), False),
        (_binding({**IMPORTED, "name": "cp-1"}), False),
        (_binding({**IMPORTED, "kind": "TalosCluster"}), False),
        (_binding({**IMPORTED, "apiVersion": "example.com/v1"}), False),
        (_binding(IMPORTED, deletionTimestamp="2026-01-01T00:00:00Z"), False),
    ],
)
def test_an_imported_binding_is_one_naming_the_machine_without_a_uid(
    binding: dict[str, Any], adopted: bool
) -> None:
    assert (imported_binding([binding], MOVED) is binding) is adopted
