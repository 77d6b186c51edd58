from typing import Any

import pytest

from arges.apiserver.fieldpath import FieldSet
from arges.apiserver.typed import (
    MISSING,
    TypedError,
    compare,
    ensure_named_fields_are_members,
    from_schema,
    merge,
    remove_items,
    to_field_set,
)

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "atomic": {"type": "array", "items": {"type": "string"}},
        "set": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
        "map": {
            "type": "array",
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name", "proto"],
            "items": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "proto": {"type": "string", "default": "TCP"},
                    "value": {"type": "integer"},
                },
            },
        },
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "sealed": {
            "type": "object",
            "x-kubernetes-map-type": "atomic",
            "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
        },
        "spec": {
            "type": "object",
            "properties": {"x": {"type": "integer"}, "y": {"type": "string"}},
        },
        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
    },
}
T = from_schema(SCHEMA)


def fs(*paths: str) -> FieldSet:
    """Paths written with '/' between FieldsV1 keys."""
    return FieldSet.of(*(tuple(p.split("/")) for p in paths))


@pytest.mark.parametrize(
    ("live", "config", "merged"),
    [
        # atomic lists are replaced whole
        ({"atomic": ["a", "b"]}, {"atomic": ["c"]}, {"atomic": ["c"]}),
        # sets are unions; live-only items keep their place, config items come in its order
        ({"set": ["a", "b", "c"]}, {"set": ["c", "d"]}, {"set": ["a", "b", "c", "d"]}),
        ({"set": ["b", "a"]}, {"set": ["a", "b"]}, {"set": ["a", "b"]}),
        # maps merge by key (with key defaults), item by item
        (
            {"map": [{"name": "a", "value": 1}, {"name": "b", "proto": "UDP", "value": 2}]},
            {"map": [{"name": "b", "proto": "UDP", "value": 3}, {"name": "c"}]},
            {
                "map": [
                    {"name": "a", "value": 1},
                    {"name": "b", "proto": "UDP", "value": 3},
                    {"name": "c"},
                ]
            },
        ),
        (
            {"map": [{"name": "a", "proto": "TCP", "value": 1}]},
            {"map": [{"name": "a", "value": 5}]},
            {"map": [{"name": "a", "proto": "TCP", "value": 5}]},
        ),
        # granular maps merge by entry, atomic maps are replaced
        ({"labels": {"a": "1"}}, {"labels": {"b": "2"}}, {"labels": {"a": "1", "b": "2"}}),
        ({"sealed": {"a": "1"}}, {"sealed": {"b": "2"}}, {"sealed": {"b": "2"}}),
        ({"spec": {"x": 1, "y": "a"}}, {"spec": {"x": 2}}, {"spec": {"x": 2, "y": "a"}}),
        # unknown fields merge as maps, their lists atomically
        (
            {"free": {"a": {"b": 1}, "l": [1, 2]}},
            {"free": {"a": {"c": 2}, "l": [3]}},
            {"free": {"a": {"b": 1, "c": 2}, "l": [3]}},
        ),
    ],
)
def test_merge(live: dict[str, Any], config: dict[str, Any], merged: dict[str, Any]) -> None:
    assert merge(live, config, T) == merged


@pytest.mark.parametrize(
    ("config", "paths"),
    [
        ({"atomic": ["a"]}, ["f:atomic"]),
        ({"set": ["a", "b"]}, ['f:set/v:"a"', 'f:set/v:"b"']),
        (
            {"map": [{"name": "a", "value": 1}]},
            [
                'f:map/k:{"name":"a","proto":"TCP"}',
                'f:map/k:{"name":"a","proto":"TCP"}/f:name',
                'f:map/k:{"name":"a","proto":"TCP"}/f:value',
            ],
        ),
        ({"labels": {"a": "1"}}, ["f:labels/f:a"]),
        ({"sealed": {"a": "1"}}, ["f:sealed"]),
        ({"spec": {"x": 1}}, ["f:spec/f:x"]),
        ({"spec": {}}, []),
        ({"free": {"a": {"b": 1}}}, ["f:free/f:a", "f:free/f:a/f:b"]),
    ],
)
def test_applied_configurations_own_their_leaves_and_items(
    config: dict[str, Any], paths: list[str]
) -> None:
    assert to_field_set(config, T) == fs(*paths)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"spec": {"z": 1}}, ".spec.z: field not declared in schema"),
        ({"spec": [1]}, ".spec: expected map, got list"),
        (
            {"map": [{"value": 1}]},
            ".map: element 0: associative list with keys has an element that omits key field "
            '"name" (and doesn\'t have default value)',
        ),
        ({"set": ["a", "a"]}, '.set: duplicate entries for key [="a"]'),
        (
            {"set": [{"a": 1}]},
            ".set: element 0: associative list without keys has an element that's a map type",
        ),
    ],
)
def test_configurations_that_do_not_fit_the_schema(config: dict[str, Any], message: str) -> None:
    with pytest.raises(TypedError) as err:
        to_field_set(config, T)
    assert str(err.value) == message


@pytest.mark.parametrize(
    ("lhs", "rhs", "added", "modified", "removed"),
    [
        # a container that appears is added with everything in it
        ({}, {"spec": {"x": 1}}, ["f:spec", "f:spec/f:x"], [], []),
        ({"spec": {"x": 1}}, {"spec": {"x": 2, "y": "a"}}, ["f:spec/f:y"], ["f:spec/f:x"], []),
        ({"labels": {"a": "1"}}, {}, [], [], ["f:labels", "f:labels/f:a"]),
        # empty on both sides is a leaf: kept distinct from absent
        ({}, {"labels": {}}, ["f:labels"], [], []),
        ({"atomic": ["a"]}, {"atomic": ["b"]}, [], ["f:atomic"], []),
        (
            {"set": ["a"]},
            {"set": ["a", "b"]},
            ['f:set/v:"b"'],
            [],
            [],
        ),
        (
            {"map": [{"name": "a", "value": 1}]},
            {"map": [{"name": "a", "value": 2}]},
            [],
            ['f:map/k:{"name":"a","proto":"TCP"}/f:value'],
            [],
        ),
        ({"spec": {"x": 1}}, {"spec": {"x": True}}, [], ["f:spec/f:x"], []),
    ],
)
def test_compare(
    lhs: dict[str, Any],
    rhs: dict[str, Any],
    added: list[str],
    modified: list[str],
    removed: list[str],
) -> None:
    cmp = compare(lhs, rhs, T)
    assert (cmp.added, cmp.modified, cmp.removed) == (fs(*added), fs(*modified), fs(*removed))
    assert compare(rhs, rhs, T).same()


def test_remove_items_and_named_fields() -> None:
    obj = {"spec": {"x": 1, "y": "a"}, "set": ["a", "b"], "labels": {"a": "1"}}
    gone = remove_items(obj, fs("f:spec/f:y", 'f:set/v:"a"', "f:labels"), T)
    assert gone == {"spec": {"x": 1}, "set": ["b"]}
    named = ensure_named_fields_are_members(fs("f:spec/f:x", "f:labels/f:a"), T)
    assert named == fs("f:spec", "f:spec/f:x", "f:labels", "f:labels/f:a")
    named = ensure_named_fields_are_members(fs("f:free/f:a/f:b"), T)
    assert named == fs("f:free", "f:free/f:a/f:b"), "map entries are not named fields"
    assert merge(MISSING, {"a": 1}, T) == {"a": 1}
