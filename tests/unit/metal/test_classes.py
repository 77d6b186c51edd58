from __future__ import annotations

from typing import Any

import pytest

from arges.api.serverclass import ServerClass
from arges.metal.allocation import candidates
from arges.metal.classes import QualifierError, compile_class, matches, members, partial_match
from tests.unit.metal.conftest import DELL, QEMU, server


def cls(**spec: Any) -> ServerClass:
    return ServerClass.from_json({"metadata": {"name": "c"}, "spec": spec})


@pytest.mark.parametrize(
    ("spec", "dell", "qemu"),
    [
        ({}, True, True),
        ({"selector": {"matchLabels": {"rack": "a"}}}, True, False),
        (
            {
                "selector": {
                    "matchExpressions": [{"key": "rack", "operator": "In", "values": ["b"]}]
                }
            },
            False,
            True,
        ),
        ({"qualifiers": {"expressions": ["hardware.compute.totalCoreCount >= 16"]}}, True, False),
        (
            {
                "qualifiers": {
                    "expressions": ["hardware.memory.totalSize >= 64 * 1024 * 1024 * 1024"]
                }
            },
            True,
            False,
        ),
        (
            {
                "qualifiers": {
                    "expressions": ['hardware.storage.devices.exists(d, d.type == "NVMe")']
                }
            },
            True,
            False,
        ),
        (
            {
                "qualifiers": {
                    "expressions": [
                        "hardware.storage.deviceCount >= 1",
                        'hardware.system.manufacturer == "QEMU"',
                    ]
                }
            },
            False,
            True,
        ),
        (
            {"qualifiers": {"expressions": ['labels.rack == "a" && name.startsWith("dell")']}},
            True,
            False,
        ),
        ({"qualifiers": {"hardware": [{"system": {"manufacturer": "Dell Inc."}}]}}, True, False),
        (
            {
                "qualifiers": {
                    "hardware": [
                        {"compute": {"processors": [{"manufacturer": "AMD"}]}},
                        {"system": {"productName": "PowerEdge R640"}},
                    ]
                }
            },
            True,
            True,
        ),
        (
            {
                "qualifiers": {
                    "hardware": [{"compute": {"processors": [{}, {"manufacturer": "Intel"}]}}]
                }
            },
            False,
            False,
        ),
        (
            {
                "selector": {"matchLabels": {"rack": "a"}},
                "qualifiers": {"hardware": [{"system": {"manufacturer": "QEMU"}}]},
            },
            False,
            False,
        ),
    ],
)
def test_membership(spec: dict, dell: bool, qemu: bool) -> None:
    compiled = compile_class(cls(**spec))
    assert matches(compiled, server("dell-1", labels={"rack": "a"}, hardware=DELL)) is dell
    assert matches(compiled, server("qemu-1", labels={"rack": "b"}, hardware=QEMU)) is qemu


@pytest.mark.parametrize(
    "srv",
    [
        server("x", accepted=False, hardware=DELL),
        server("x", cordoned=True, hardware=DELL),
    ],
)
def test_unaccepted_and_cordoned_servers_belong_to_no_class(srv) -> None:
    assert not matches(compile_class(cls()), srv)


def test_a_server_without_inventory_matches_only_classes_without_qualifiers() -> None:
    bare = server("new")
    assert matches(compile_class(cls()), bare)
    assert not matches(compile_class(cls(qualifiers={"expressions": ["true"]})), bare)


@pytest.mark.parametrize(
    ("spec", "field", "words"),
    [
        (
            {"qualifiers": {"expressions": ["true", "hardware.compute.totalCoreCount >="]}},
            "spec.qualifiers.expressions[1]",
            "invalid CEL",
        ),
        (
            {"qualifiers": {"expressions": ["hardware.cpu.cores > 2"]}},
            "spec.qualifiers.expressions[0]",
            "cannot be evaluated",
        ),
        (
            {"qualifiers": {"expressions": ["hardware.compute.totalCoreCount"]}},
            "spec.qualifiers.expressions[0]",
            "must evaluate to a boolean",
        ),
        (
            {"selector": {"matchExpressions": [{"key": "a", "operator": "In"}]}},
            "spec.selector",
            "at least one value",
        ),
    ],
)
def test_bad_qualifiers_name_the_field(spec: dict, field: str, words: str) -> None:
    with pytest.raises(QualifierError) as err:
        compile_class(cls(**spec))
    assert err.value.field == field and words in err.value.message


def test_partial_match_rules() -> None:
    assert partial_match({"a": 1}, {"a": 1, "b": 2})
    assert not partial_match({"a": 1}, {"a": 2})
    assert partial_match([{"x": 1}], [{"x": 1, "y": 0}, {"x": 3}])
    assert not partial_match([{}, {}, {}], [{}, {}])
    assert not partial_match({"a": {"b": 1}}, {"a": None})


def test_members_and_allocation_order() -> None:
    servers = [
        server("c", hardware=DELL),
        server("a", hardware=DELL),
        server("b", hardware=DELL, clean=False),
        server("d", hardware=QEMU),
        server("e", hardware=DELL, cordoned=True),
    ]
    compiled = compile_class(
        cls(qualifiers={"hardware": [{"system": {"manufacturer": "Dell Inc."}}]})
    )
    available, in_use = members(compiled, servers, bound={"c"})
    assert (available, in_use) == (["a", "b"], ["c"])
    assert [s.name for s in candidates(compiled, servers, bound={"c"})] == ["a"]
    assert [s.name for s in candidates(compiled, servers, bound=set())] == ["a", "c"]
