from typing import Any

import pytest

from arges.apiserver.fieldpath import (
    FieldSet,
    key_pe,
    normalize_pe,
    path_string,
    value_pe,
)


@pytest.mark.parametrize(
    ("paths", "fields_v1"),
    [
        # a leaf is {}; a container only appears through its children
        ([("f:data", "f:k")], {"f:data": {"f:k": {}}}),
        # a path that is a member and has children gets "."
        (
            [("f:data",), ("f:data", "f:k")],
            {"f:data": {".": {}, "f:k": {}}},
        ),
        # field names sort bytewise, before keys, values and indexes
        (
            [("f:b",), ("f:B",), ("i:0",), ("v:1",), ('k:{"a":1}',), ("f:a",)],
            {"f:B": {}, "f:a": {}, "f:b": {}, 'k:{"a":1}': {}, "v:1": {}, "i:0": {}},
        ),
        # keys compare name by name, values numbers < strings < booleans
        (
            [('k:{"a":"x"}',), ('k:{"a":2}',), ('k:{"a":true}',), ('k:{"a":1,"b":1}',)],
            {'k:{"a":1,"b":1}': {}, 'k:{"a":2}': {}, 'k:{"a":"x"}': {}, 'k:{"a":true}': {}},
        ),
        # indexes sort numerically
        ([("i:10",), ("i:9",)], {"i:9": {}, "i:10": {}}),
    ],
)
def test_fields_v1_encoding(paths: list[tuple[str, ...]], fields_v1: dict[str, Any]) -> None:
    encoded = FieldSet.of(*paths).to_fields_v1()
    assert encoded == fields_v1
    assert list(encoded) == list(fields_v1), "keys come out in SMD's order"
    assert FieldSet.from_fields_v1(encoded) == FieldSet.of(*paths)


def test_path_elements_are_written_as_structured_merge_diff_writes_them() -> None:
    assert key_pe({"type": "Ready"}) == 'k:{"type":"Ready"}'
    assert key_pe({"protocol": "TCP", "containerPort": 80}) == (
        'k:{"containerPort":80,"protocol":"TCP"}'
    ), "key fields sorted by name"
    assert value_pe("a<b&c") == r'v:"a\u003cb\u0026c"', "HTML characters escaped as Go does"
    assert value_pe(True) == "v:true"
    assert normalize_pe('k:{ "b": 1, "a": "x" }') == 'k:{"a":"x","b":1}'
    assert normalize_pe("i:007") == "i:7"


@pytest.mark.parametrize(
    "bad",
    [[], {"x:y": {}}, {"f:a": []}, {'k:{"a":': {}}, {"k:[1]": {}}, {"nope": {}}],
)
def test_bad_fields_v1_is_refused(bad: Any) -> None:
    with pytest.raises(ValueError):
        FieldSet.from_fields_v1(bad)


def test_paths_print_as_in_conflicts() -> None:
    assert path_string(("f:spec", "f:containers", 'k:{"name":"a"}', "f:image")) == (
        '.spec.containers[name="a"].image'
    )
    assert path_string(("f:metadata", "f:finalizers", 'v:"x"')) == '.metadata.finalizers[="x"]'
    assert path_string(("f:ports", 'k:{"port":80,"protocol":"TCP"}')) == (
        '.ports[port=80,protocol="TCP"]'
    )
    assert path_string(("f:items", "i:3")) == ".items[3]"


def test_set_operations() -> None:
    a = FieldSet.of(("f:a",), ("f:b", "f:c"), ("f:b", "f:d"))
    b = FieldSet.of(("f:b",), ("f:b", "f:c"), ("f:e",))
    assert a.union(b) == FieldSet.of(("f:a",), ("f:b",), ("f:b", "f:c"), ("f:b", "f:d"), ("f:e",))
    assert a.intersection(b) == FieldSet.of(("f:b", "f:c"))
    assert a.difference(b) == FieldSet.of(("f:a",), ("f:b", "f:d"))
    assert a.recursive_difference(b) == FieldSet.of(("f:a",)), "b and all under it go"
    assert b.difference(b).empty()
    assert list(a.union(b).paths()) == [
        ("f:a",),
        ("f:b",),
        ("f:e",),
        ("f:b", "f:c"),
        ("f:b", "f:d"),
    ], "members before children, as SMD iterates"
    assert a.has(("f:b", "f:c")) and not a.has(("f:b",))


def test_each_encoding_is_a_new_object_and_follows_the_set_while_it_is_built() -> None:
    built = FieldSet.of(("f:spec", "f:a"))
    first = built.to_fields_v1()
    first["f:spec"]["f:b"] = {}
    assert built.to_fields_v1() == {"f:spec": {"f:a": {}}}, "the caller's copy is its own"
    built.insert(("f:spec", "f:c"))
    built.insert(("f:spec",))
    assert built.to_fields_v1() == {"f:spec": {".": {}, "f:a": {}, "f:c": {}}}
    # A union shares its operands' parts, encoded once, and encodes as a fresh set would.
    both = built.union(FieldSet.of(("f:status", 'k:{"type":"Ready"}', "f:status")))
    assert both.to_fields_v1() == FieldSet.from_fields_v1(both.to_fields_v1()).to_fields_v1()
    assert both.to_fields_v1()["f:status"] == {'k:{"type":"Ready"}': {"f:status": {}}}
