"""Go's decoding errors for built-in kinds' nested fields: the struct and type names of
k8s.io/api, as kube-apiserver's 400 words them."""

from __future__ import annotations

from typing import Any

import pytest

from arges.apiserver.builtin import builtin_types
from arges.apiserver.decoding import GO_NAMES, decode_error

SCHEMAS = {rt.kind: v.schema.raw for rt in builtin_types() for v in rt.versions if v.schema}
CANNOT = "json: cannot unmarshal "


@pytest.mark.parametrize(
    ("kind", "body", "message"),
    [
        (
            "Event",
            {"involvedObject": {"name": 5}},
            "number into Go struct field ObjectReference.involvedObject.name of type string",
        ),
        (
            "Event",
            {"involvedObject": "x"},
            "string into Go struct field Event.involvedObject of type v1.ObjectReference",
        ),
        (
            "Event",
            {"involvedObject": {"uid": 5}},
            "number into Go struct field ObjectReference.involvedObject.uid of type types.UID",
        ),
        (
            "Event",
            {"related": {"kind": True}},
            "bool into Go struct field ObjectReference.related.kind of type string",
        ),
        (
            "Event",
            {"source": {"host": 1}},
            "number into Go struct field EventSource.source.host of type string",
        ),
        (
            "Event",
            {"series": {"count": "1"}},
            "string into Go struct field EventSeries.series.count of type int32",
        ),
        (
            "Event",
            {"series": "x"},
            "string into Go struct field Event.series of type v1.EventSeries",
        ),
        # metav1.Time and MicroTime decode a string first, outside the struct's context.
        ("Event", {"series": {"lastObservedTime": 5}}, "number into Go value of type string"),
        ("Event", {"firstTimestamp": 5}, "number into Go value of type string"),
        ("Event", {"eventTime": 5}, "number into Go value of type string"),
        ("Event", {"count": "3"}, "string into Go struct field Event.count of type int32"),
        (
            "Namespace",
            {"spec": {"finalizers": "kubernetes"}},
            "string into Go struct field NamespaceSpec.spec.finalizers of type []v1.FinalizerName",
        ),
        (
            "Namespace",
            {"spec": {"finalizers": [5]}},
            "number into Go struct field NamespaceSpec.spec.finalizers of type v1.FinalizerName",
        ),
        (
            "Namespace",
            {"status": {"phase": 5}},
            "number into Go struct field NamespaceStatus.status.phase of type v1.NamespacePhase",
        ),
        (
            "Namespace",
            {"status": {"conditions": {}}},
            "object into Go struct field NamespaceStatus.status.conditions of type "
            "[]v1.NamespaceCondition",
        ),
        (
            "Namespace",
            {"status": {"conditions": [5]}},
            "number into Go struct field NamespaceStatus.status.conditions of type "
            "v1.NamespaceCondition",
        ),
        (
            "Namespace",
            {"status": {"conditions": [{"type": 5}]}},
            "number into Go struct field NamespaceCondition.status.conditions.type of type "
            "v1.NamespaceConditionType",
        ),
        (
            "Namespace",
            {"status": {"conditions": [{"status": True}]}},
            "bool into Go struct field NamespaceCondition.status.conditions.status of type "
            "v1.ConditionStatus",
        ),
        (
            "Namespace",
            {"status": {"conditions": [{"lastTransitionTime": 5}]}},
            "number into Go value of type string",
        ),
        (
            "Lease",
            {"spec": {"holderIdentity": 5}},
            "number into Go struct field LeaseSpec.spec.holderIdentity of type string",
        ),
        (
            "Lease",
            {"spec": {"leaseDurationSeconds": "x"}},
            "string into Go struct field LeaseSpec.spec.leaseDurationSeconds of type int32",
        ),
        ("Lease", {"spec": {"renewTime": 5}}, "number into Go value of type string"),
        (
            "Lease",
            {"spec": {"strategy": 5}},
            "number into Go struct field LeaseSpec.spec.strategy of type "
            "v1.CoordinatedLeaseStrategy",
        ),
        ("Lease", {"spec": "x"}, "string into Go struct field Lease.spec of type v1.LeaseSpec"),
    ],
)
def test_nested_fields_are_named_as_go_names_them(
    kind: str, body: dict[str, Any], message: str
) -> None:
    assert decode_error(body, kind, SCHEMAS[kind]) == CANNOT + message


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        (
            "Event",
            {
                "involvedObject": {"kind": "Server", "name": "s", "uid": "u"},
                "source": {"component": "arges"},
                "series": {"count": 2, "lastObservedTime": "2026-12-04T10:00:00.000000Z"},
                "firstTimestamp": "2026-12-04T10:00:00Z",
                "count": 2,
            },
        ),
        ("Namespace", {"spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}),
        ("Lease", {"spec": {"holderIdentity": "a", "leaseDurationSeconds": 15}}),
        ("Event", {"involvedObject": None, "series": None}),
    ],
)
def test_well_typed_bodies_decode(kind: str, body: dict[str, Any]) -> None:
    assert decode_error(body, kind, SCHEMAS[kind]) is None


def _nested_structs(schema: dict[str, Any], path: str = "") -> list[str]:
    """The JSON paths (no list indices) of a schema's nested objects with properties."""
    kind = schema.get("type")
    if kind == "array":
        return _nested_structs(schema.get("items") or {}, path)
    if kind != "object" or not schema.get("properties"):
        return []
    found = [path] if path else []
    for key, sub in schema["properties"].items():
        if key != "metadata" or path:
            found += _nested_structs(sub, f"{path}.{key}" if path else key)
    return found


@pytest.mark.parametrize("kind", sorted(SCHEMAS))
def test_every_nested_struct_of_the_core_kinds_has_its_go_name(kind: str) -> None:
    for path in _nested_structs(SCHEMAS[kind]):
        assert (kind, path) in GO_NAMES, f"{kind} {path}: add its Go struct name to GO_NAMES"
