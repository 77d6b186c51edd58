"""The decisions of ``arges move``: what goes with what, in what order, rewritten how, and what
to do with what the target already holds."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from arges.metal.move import (
    MOVED_FROM,
    Action,
    MoveError,
    Phase,
    Record,
    capi_cluster,
    copy_of,
    decide,
    leftovers,
    moves,
    moves_kind,
    order,
    secrets_to_move,
    status_differs,
    subject,
    unacknowledged,
)

METAL = "metal.arges.dev/v1alpha1"


def obj(kind: str, name: str, uid: str, namespace: str = "", **fields: Any) -> dict[str, Any]:
    api = {"Secret": "v1", "TalosCluster": "cluster.arges.dev/v1alpha1"}.get(kind, METAL)
    meta: dict[str, Any] = {"name": name, "uid": uid, **fields.pop("meta", {})}
    if namespace:
        meta["namespace"] = namespace
    return {"apiVersion": api, "kind": kind, "metadata": meta, **fields}


def owned_by(owner: dict[str, Any]) -> dict[str, Any]:
    return {
        "ownerReferences": [
            {
                "apiVersion": owner["apiVersion"],
                "kind": owner["kind"],
                "name": owner["metadata"]["name"],
                "uid": owner["metadata"]["uid"],
            }
        ]
    }


CLUSTER = obj("TalosCluster", "demo", "u-cluster", "default", spec={"controlPlane": {}})
BINDING = obj(
    "ServerBinding",
    "s1",
    "u-binding",
    spec={"consumerRef": {"kind": "TalosCluster", "name": "demo", "uid": "u-cluster"}},
    meta={"labels": {"metal.arges.dev/consumer-uid": "u-cluster"}},
)
CONFIG = obj(
    "Secret",
    "demo-config-s1",
    "u-config",
    "default",
    meta={
        **owned_by(BINDING),
        "annotations": {"cluster.arges.dev/binding-uid": "u-binding"},
        "labels": {"cluster.arges.dev/cluster-name": "demo"},
    },
    data={"config": "bWFjaGluZTo="},
    type="Opaque",
)
SERVER = obj(
    "Server",
    "s1",
    "u-server",
    spec={
        "accepted": True,
        "bmc": {"credentialsSecretRef": {"name": "bmc", "namespace": "ops"}},
    },
    status={"isClean": False, "inUse": True},
)
ENV = obj("Environment", "default", "u-env", spec={})
BMC = obj("Secret", "bmc", "u-bmc", "ops", data={"password": "cHc="})
METAL_MACHINE = obj("MetalMachine", "mm", "u-mm", "ns")


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        pytest.param(
            [CONFIG, BINDING, CLUSTER],
            ["TalosCluster default/demo", "ServerBinding s1", "Secret default/demo-config-s1"],
            id="owners and consumers first, whatever the input order",
        ),
        pytest.param(
            [BINDING, SERVER, BMC, ENV, CLUSTER],
            [
                "Environment default",
                "Secret ops/bmc",
                "Server s1",
                "TalosCluster default/demo",
                "ServerBinding s1",
            ],
            id="otherwise settings, Secrets, Servers, clusters, bindings",
        ),
        pytest.param(
            [obj("Machine", "m", "u-m", "ns", meta=owned_by(METAL_MACHINE)), METAL_MACHINE],
            ["MetalMachine ns/mm", "Machine ns/m"],
            id="other kinds by kind name, after their owner",
        ),
    ],
)
def test_order(given: list[dict[str, Any]], expected: list[str]) -> None:
    assert [subject(o) for o in order(given)] == expected


def test_order_refuses_a_cycle_naming_its_objects() -> None:
    a = obj("Widget", "a", "u-a", spec={"peer": "u-b"})
    b = obj("Widget", "b", "u-b", spec={"peer": "u-a"})
    with pytest.raises(MoveError, match="Widget a, Widget b"):
        order([a, b, ENV])


def test_a_uid_in_status_orders_nothing() -> None:
    server = obj("Server", "s1", "u-s", status={"binding": "u-binding"})
    binding = obj("ServerBinding", "s1", "u-binding", spec={"server": "u-s"})
    assert [subject(o) for o in order([binding, server])] == ["Server s1", "ServerBinding s1"]


UIDS = {"u-cluster": "t-cluster", "u-binding": "t-binding"}


@pytest.mark.parametrize(
    ("source", "uids", "expected"),
    [
        pytest.param(
            {
                **BINDING,
                "metadata": {
                    **BINDING["metadata"],
                    "resourceVersion": "9",
                    "creationTimestamp": "2026-01-01T00:00:00Z",
                    "managedFields": [{}],
                    "generation": 3,
                    "finalizers": ["metal.arges.dev/server-release"],
                },
                "status": {"conditions": [{"type": "Installed"}]},
            },
            UIDS,
            {
                "apiVersion": METAL,
                "kind": "ServerBinding",
                "metadata": {
                    "name": "s1",
                    "finalizers": ["metal.arges.dev/server-release"],
                    "labels": {"metal.arges.dev/consumer-uid": "t-cluster"},
                    "annotations": {MOVED_FROM: "u-binding"},
                },
                "spec": {
                    "consumerRef": {"kind": "TalosCluster", "name": "demo", "uid": "t-cluster"}
                },
                "status": {"conditions": [{"type": "Installed"}]},
            },
            id="server-made metadata dropped, uids remapped, finalizers and status kept",
        ),
        pytest.param(
            {**CONFIG, "stringData": {"x": "y"}},
            UIDS,
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {
                    "name": "demo-config-s1",
                    "namespace": "default",
                    "ownerReferences": [
                        {
                            "apiVersion": METAL,
                            "kind": "ServerBinding",
                            "name": "s1",
                            "uid": "t-binding",
                        }
                    ],
                    "annotations": {
                        "cluster.arges.dev/binding-uid": "t-binding",
                        MOVED_FROM: "u-config",
                    },
                    "labels": {"cluster.arges.dev/cluster-name": "demo"},
                },
                "data": {"config": "bWFjaGluZTo="},
                "type": "Opaque",
            },
            id="a Secret: owner remapped, its data as it is",
        ),
        pytest.param(
            CONFIG,
            {},
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {
                    "name": "demo-config-s1",
                    "namespace": "default",
                    "annotations": {
                        "cluster.arges.dev/binding-uid": "u-binding",
                        MOVED_FROM: "u-config",
                    },
                    "labels": {"cluster.arges.dev/cluster-name": "demo"},
                },
                "data": {"config": "bWFjaGluZTo="},
                "type": "Opaque",
            },
            id="an owner that does not move is dropped, not left dangling",
        ),
    ],
)
def test_copy_of(source: dict[str, Any], uids: dict[str, str], expected: dict[str, Any]) -> None:
    assert copy_of(source, uids) == expected


def marked(o: dict[str, Any], source_uid: str, **changes: Any) -> dict[str, Any]:
    copy = copy_of(o, {})
    copy["metadata"] = {**copy["metadata"], "uid": "t-1", "resourceVersion": "5"}
    copy["metadata"]["annotations"][MOVED_FROM] = source_uid
    return {**copy, **changes}


BUILT_IN_ENV = obj(
    "Environment", "default", "t-env", meta={"annotations": {"metal.arges.dev/built-in": "true"}}
)


@pytest.mark.parametrize(
    ("source", "existing", "expected"),
    [
        pytest.param(SERVER, None, Action.CREATE, id="absent: created"),
        pytest.param(SERVER, marked(SERVER, "u-server"), Action.UNCHANGED, id="its copy"),
        pytest.param(
            SERVER,
            marked(SERVER, "u-server", status={"isClean": True}),
            Action.UNCHANGED,
            id="its copy, status aside (written through the subresource)",
        ),
        pytest.param(
            SERVER,
            marked(SERVER, "u-server", spec={"accepted": False}),
            Action.UPDATE,
            id="its copy, changed since",
        ),
        pytest.param(SERVER, marked(SERVER, "u-other"), Action.CONFLICT, id="another's copy"),
        pytest.param(SERVER, obj("Server", "s1", "t-1", spec={}), Action.CONFLICT, id="not a copy"),
        pytest.param(ENV, BUILT_IN_ENV, Action.UPDATE, id="a built-in Environment: taken over"),
        pytest.param(
            obj("Server", "s1", "u-back", spec={}, meta={"annotations": {MOVED_FROM: "t-1"}}),
            obj("Server", "s1", "t-1", spec={}),
            Action.UPDATE,
            id="moving back: the object it was copied from is updated",
        ),
        pytest.param(
            obj("ServerClass", "any", "u-any", spec={}),
            obj("ServerClass", "any", "t-any", spec={}),
            Action.UPDATE,
            id="the class any: taken over",
        ),
    ],
)
def test_decide(source: dict[str, Any], existing: dict[str, Any] | None, expected: Action) -> None:
    assert decide(source, copy_of(source, {}), existing) == expected


def test_status_differs() -> None:
    copy = copy_of(SERVER, {})
    assert status_differs(copy, {**copy, "status": {}})
    assert not status_differs(copy, {**copy})
    assert not status_differs({"spec": {}}, {"spec": {}, "status": {}})


def secret(name: str, namespace: str = "default", **meta: Any) -> dict[str, Any]:
    return obj("Secret", name, f"u-{name}", namespace, meta=meta)


def test_secrets_go_with_what_owns_names_or_labels_them() -> None:
    cluster = obj(
        "TalosCluster",
        "demo",
        "u-cluster",
        "default",
        spec={"workers": [{"patchesFrom": [{"name": "patches", "key": "p"}]}]},
    )
    machine = obj("Machine", "m", "u-m", "capi", spec={"bootstrap": {"dataSecretName": "m-boot"}})
    candidates = [
        BMC,
        secret("owned", **owned_by(cluster)),
        secret("patches"),
        secret("m-boot", "capi"),
        secret("demo-kubeconfig", labels={"cluster.arges.dev/cluster-name": "demo"}),
        secret("other-kubeconfig", labels={"cluster.arges.dev/cluster-name": "other"}),
        secret("m-boot"),
        secret("unrelated"),
    ]
    chosen = secrets_to_move([SERVER, cluster, machine], candidates)
    assert [subject(s) for s in chosen] == [
        "Secret ops/bmc",
        "Secret default/owned",
        "Secret default/patches",
        "Secret capi/m-boot",
        "Secret default/demo-kubeconfig",
    ]


def test_the_record_reads_back_and_refuses_garbage() -> None:
    record = Record("https://10.0.0.1:6443", Phase.COPYING, target_was_paused=False)
    assert Record.decode(record.encode()) == record
    assert Record.decode(None) is None
    with pytest.raises(MoveError, match="not readable"):
        Record.decode('{"phase": "copying"}')


NOW = dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.UTC)


def instance(name: str, paused: bool, generation: int, age: float) -> dict[str, Any]:
    beat = (NOW - dt.timedelta(seconds=age)).isoformat().replace("+00:00", "Z")
    return {"id": name, "paused": paused, "observedGeneration": generation, "heartbeat": beat}


@pytest.mark.parametrize(
    ("instances", "expected"),
    [
        pytest.param([], [], id="no Arges runs there"),
        pytest.param([instance("a", True, 4, 5)], [], id="acknowledged"),
        pytest.param([instance("a", True, 3, 5)], ["a"], id="an older generation"),
        pytest.param([instance("a", False, 4, 5)], ["a"], id="still running"),
        pytest.param([instance("a", False, 4, 600)], [], id="gone: its heartbeat is old"),
        pytest.param(
            [instance("a", True, 4, 1), instance("b", False, 3, 1)], ["b"], id="one of two"
        ),
    ],
)
def test_unacknowledged(instances: list[dict[str, Any]], expected: list[str]) -> None:
    plane = {"metadata": {"generation": 4}, "status": {"instances": instances}}
    assert unacknowledged(plane, NOW.timestamp()) == expected


def test_built_in_environments_stay() -> None:
    assert not moves(BUILT_IN_ENV)
    assert moves(ENV) and moves(SERVER)


def test_leftovers_of_an_earlier_move_out_go_dependents_first() -> None:
    released = obj("ServerBinding", "s2", "u-b2", spec={"consumerRef": {"uid": "u-cluster"}})
    its_config = obj("Secret", "demo-config-s2", "u-c2", "default", meta=owned_by(released))
    held = [CLUSTER, BINDING, CONFIG, released, its_config, BUILT_IN_ENV, BMC, secret("mine")]
    moving = [CLUSTER, BINDING, CONFIG, BMC]
    assert [subject(o) for o in leftovers(held, moving)] == [
        "Secret default/demo-config-s2",
        "ServerBinding s2",
    ]


@pytest.mark.parametrize(
    ("group", "labels", "expected"),
    [
        pytest.param("cluster.x-k8s.io", {}, True, id="Cluster API core"),
        pytest.param("bootstrap.cluster.x-k8s.io", {}, True, id="a provider's group"),
        pytest.param("example.com", {"cluster.x-k8s.io/provider": "x"}, True, id="labelled"),
        pytest.param("example.com", {}, False, id="anything else"),
        pytest.param("notcluster.x-k8s.io", {}, False, id="a look-alike group"),
    ],
)
def test_moves_kind(group: str, labels: dict[str, str], expected: bool) -> None:
    crd = {"metadata": {"name": f"things.{group}", "labels": labels}, "spec": {"group": group}}
    assert moves_kind(crd) is expected


def test_only_cluster_api_clusters_are_paused() -> None:
    assert capi_cluster(obj("Cluster", "c", "u", "ns") | {"apiVersion": "cluster.x-k8s.io/v1beta2"})
    assert not capi_cluster(CLUSTER)
