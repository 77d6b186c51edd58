"""Validation ratcheting (KEP-4008): an update may keep what was invalid, not add to it."""

from __future__ import annotations

from typing import Any

import pytest

from arges.apiserver.celrules import compile_rules
from arges.apiserver.celvalidator import Validator
from arges.apiserver.ratcheting import composition_depth, same, unchanged
from arges.apiserver.schema import Schema

CONDITIONS = {
    "type": "array",
    "x-kubernetes-list-type": "map",
    "x-kubernetes-list-map-keys": ["type"],
    "items": {
        "type": "object",
        "properties": {"type": {"type": "string"}, "message": {"type": "string", "maxLength": 3}},
    },
}
RAW: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "required": ["size"],
            "properties": {
                "name": {"type": "string", "maxLength": 3},
                "size": {"type": "integer", "maximum": 5},
                "tags": {"type": "array", "items": {"type": "string", "maxLength": 3}},
                "labels": {
                    "type": "object",
                    "additionalProperties": {"type": "string", "maxLength": 3},
                },
                "port": {"x-kubernetes-int-or-string": True, "maxLength": 3},
                "since": {"type": "string", "format": "date-time"},
                "set": {
                    "type": "array",
                    "x-kubernetes-list-type": "set",
                    "items": {"type": "string"},
                },
            },
        },
        "status": {"type": "object", "properties": {"conditions": CONDITIONS}},
    },
}


def obj(spec: dict[str, Any], conditions: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"apiVersion": "x/v1", "kind": "X", "metadata": {"name": "a"}}
    out["spec"] = spec
    if conditions is not None:
        out["status"] = {"conditions": conditions}
    return out


def fields(causes: list[Any]) -> list[str]:
    return [c.field for c in causes]


SCHEMA = Schema.compile(RAW)
LONG = {"size": 1, "name": "long"}


@pytest.mark.parametrize(
    ("old", "new", "refused"),
    [
        # The invalid name is kept while another field changes: ratcheted.
        (LONG, {**LONG, "size": 2}, []),
        # The invalid name changes to another invalid one: refused.
        (LONG, {**LONG, "name": "longer"}, ["spec.name"]),
        # A valid name made invalid: refused (no way to make a valid object invalid).
        ({"size": 1, "name": "ok"}, {"size": 1, "name": "long"}, ["spec.name"]),
        # A new invalid field beside an old one: only the new one is refused.
        (LONG, {**LONG, "size": 9}, ["spec.size"]),
        # An atomic list's items have no old values of their own: the list is compared whole.
        ({"size": 1, "tags": ["long"]}, {"size": 1, "tags": ["long"]}, []),
        ({"size": 1, "tags": ["long"]}, {"size": 1, "tags": ["long", "b"]}, ["spec.tags[0]"]),
        # Map values correlate by key.
        ({"size": 1, "labels": {"a": "long"}}, {"size": 1, "labels": {"a": "long", "b": "c"}}, []),
        # Compositions (int-or-string is one) ratchet where their place is unchanged.
        ({"size": 1, "port": "long"}, {"size": 2, "port": "long"}, []),
        ({"size": 1, "port": "long"}, {"size": 1, "port": "longer"}, ["spec.port"]),
        # Formats ratchet too.
        ({"size": 1, "since": "now"}, {"size": 2, "since": "now"}, []),
        ({"size": 1, "since": "now"}, {"size": 1, "since": "later"}, ["spec.since"]),
        # A required field missing from a changed object is refused.
        ({"name": "ok"}, {"name": "no"}, ["spec.size"]),
        # A set's duplicates are always refused.
        ({"size": 1, "set": ["a", "a"]}, {"size": 2, "set": ["a", "a"]}, ["spec.set[1]"]),
        # 9 and 9.0 are different values to Go: the change is not ratcheted (9.0 is also
        # no integer).
        ({"size": 9}, {"size": 9.0}, ["spec.size", "spec.size"]),
    ],
)
def test_an_update_keeps_invalid_parts_it_does_not_change(
    old: dict[str, Any], new: dict[str, Any], refused: list[str]
) -> None:
    assert fields(SCHEMA.validate(obj(new), obj(old))) == refused


def test_a_create_is_not_ratcheted() -> None:
    assert fields(SCHEMA.validate(obj(LONG))) == ["spec.name"]


def test_map_list_items_correlate_by_their_keys() -> None:
    old = obj({"size": 1}, [{"type": "Ready", "message": "long"}])
    moved = obj({"size": 1}, [{"type": "New", "message": "ok"}, old["status"]["conditions"][0]])
    assert SCHEMA.validate(moved, old) == []
    changed = obj({"size": 1}, [{"type": "Ready", "message": "longer"}])
    assert fields(SCHEMA.validate(changed, old)) == ["status.conditions[0].message"]


@pytest.mark.parametrize(
    ("new", "old", "expected"),
    [
        ({"a": 1, "b": [1, 2]}, {"b": [1, 2], "a": 1}, True),
        (1, 1.0, False),
        (True, 1, False),
        ([1, 2], [2, 1], False),
        (None, None, True),
    ],
)
def test_values_are_compared_as_go_compares_decoded_json(
    new: Any, old: Any, expected: bool
) -> None:
    assert same(new, old) is expected


@pytest.mark.parametrize(
    ("path", "depth"),
    [
        (["properties", "spec", "properties", "port", "anyOf"], 2),
        (["properties", "spec", "properties", "tags", "items", "maxLength"], None),
        (["allOf", 0, "properties", "x", "type"], 0),
        (["properties", "m", "additionalProperties", "oneOf"], 2),
    ],
)
def test_composition_depth_counts_places_not_keywords(path: list[Any], depth: int | None) -> None:
    assert composition_depth(path) == depth


def test_a_failure_below_a_composition_ratchets_only_at_or_above_it() -> None:
    new = {"a": {"b": {"c": 2}, "d": 1}}
    old = {"a": {"b": {"c": 2}, "d": 0}}
    # Followed to a.b (unchanged): ratcheted; stopped at a (changed): not.
    assert unchanged(["a", "b", "c"], new, old, {})
    assert not unchanged(["a", "b", "c"], new, old, {}, stop=1)


def rules_validator() -> Validator:
    raw: dict[str, Any] = {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "properties": {
                    "size": {
                        "type": "integer",
                        "x-kubernetes-validations": [{"rule": "self <= 5"}],
                    },
                    "name": {
                        "type": "string",
                        "x-kubernetes-validations": [
                            {"rule": "self == oldSelf", "message": "name is immutable"}
                        ],
                    },
                },
            }
        },
    }
    node, causes = compile_rules(raw, "spec.validation.openAPIV3Schema")
    assert causes == [] and node is not None
    return Validator(node)


def test_a_rule_failing_on_an_unchanged_value_is_a_warning() -> None:
    v = rules_validator()
    old = {"spec": {"size": 9, "name": "a"}}
    warnings: list[str] = []
    assert (
        v.validate({"spec": {"size": 9, "name": "a"}}, old, ratchet=True, warnings=warnings) == []
    )
    assert warnings == ['spec.size: Invalid value: "integer": failed rule: self <= 5']
    # Changed: refused; not ratcheting (a built-in kind, or a create): refused.
    assert fields(v.validate({"spec": {"size": 8, "name": "a"}}, old, ratchet=True)) == [
        "spec.size"
    ]
    assert fields(v.validate({"spec": {"size": 9, "name": "a"}}, old)) == ["spec.size"]


def test_transition_rules_are_never_ratcheted() -> None:
    v = rules_validator()
    # name changed against oldSelf: a transition rule, refused though ratcheting.
    causes = v.validate(
        {"spec": {"size": 1, "name": "b"}}, {"spec": {"size": 1, "name": "a"}}, ratchet=True
    )
    assert fields(causes) == ["spec.name"]
