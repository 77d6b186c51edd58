from __future__ import annotations

from typing import Any

import pytest

from arges.api.server import Server
from arges.api.serverclass import ServerClass
from arges.metal.allocation import candidates
from arges.metal.classes import (
    QualifierError,
    compile_class,
    matches,
    members,
    partial_match,
    write_membership_in,
)
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
    by_name = {s.name: s for s in servers}
    assert [s.name for s in candidates(compiled, by_name, bound={"c"})] == ["a"]
    assert [s.name for s in candidates(compiled, by_name, bound=set())] == ["a", "c"]


def at(rv: str, s: Server) -> Server:
    s.metadata["resourceVersion"] = rv
    return s


def test_members_remembers_answers_by_resource_version() -> None:
    compiled = compile_class(
        cls(qualifiers={"hardware": [{"system": {"manufacturer": "Dell Inc."}}]})
    )
    memo: dict[str, tuple[str, bool]] = {}
    first = [at("1", server("a", hardware=DELL)), at("1", server("b", hardware=QEMU))]
    assert members(compiled, first, set(), memo) == (["a"], [])
    assert memo == {"a": ("1", True), "b": ("1", False)}
    # The same resourceVersion: the remembered answer stands (here, a planted one).
    memo["b"] = ("1", True)
    assert members(compiled, first, set(), memo) == (["a", "b"], [])
    # A new resourceVersion is matched again; a server gone leaves the memo.
    assert members(compiled, [at("2", server("b", hardware=QEMU))], set(), memo) == ([], [])
    assert memo == {"b": ("2", False)}
    # Without a resourceVersion, nothing is taken on trust.
    memo["c"] = ("", True)
    assert members(compiled, [server("c", hardware=QEMU)], set(), memo) == ([], [])


# Sidero's own ServerClass cases (siderolabs/sidero, app/sidero-controller-manager/api/v1alpha2/
# serverclass_filter_test.go, TestFilterAcceptedServers), with its servers' inventories moved
# to status.hardware; the classes are written exactly as Sidero users write them.

INTEL = "Intel(R) Corporation"
AMD = "Advanced Micro Devices, Inc."
SIDERO_SERVERS = [
    server(
        "atom",
        labels={"common-label": "true", "zone": "central"},
        hardware={
            "compute": {
                "totalCoreCount": 4,
                "totalThreadCount": 4,
                "processorCount": 1,
                "processors": [
                    {
                        "manufacturer": INTEL,
                        "productName": "Intel(R) Atom(TM) CPU C3558 @ 2.20GHz",
                        "speed": 2200,
                        "coreCount": 4,
                        "threadCount": 4,
                    }
                ],
            }
        },
    ),
    server(
        "dual-xeon",
        hardware={
            "compute": {
                "totalCoreCount": 16,
                "totalThreadCount": 32,
                "processorCount": 2,
                "processors": [
                    {
                        "manufacturer": INTEL,
                        "productName": "Intel(R) Xeon(R) CPU E5-2630 v3 @ 2.40GHz",
                        "speed": 2400,
                        "coreCount": 8,
                        "threadCount": 16,
                    }
                ]
                * 2,
            }
        },
    ),
    server(
        "ryzen",
        labels={"common-label": "true", "zone": "east"},
        hardware={
            "system": {"manufacturer": "QEMU"},
            "compute": {
                "totalCoreCount": 8,
                "totalThreadCount": 16,
                "processorCount": 1,
                "processors": [
                    {
                        "manufacturer": AMD,
                        "productName": "AMD Ryzen 7 2700X Eight-Core Processor",
                        "speed": 3700,
                        "coreCount": 8,
                        "threadCount": 16,
                    }
                ],
            },
        },
    ),
    server(
        "not-accepted",
        accepted=False,
        labels={"common-label": "true", "zone": "west"},
        hardware={
            "system": {"manufacturer": "QEMU"},
            "compute": {"processors": [{"manufacturer": AMD}]},
        },
    ),
]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        pytest.param({}, ["atom", "dual-xeon", "ryzen"], id="empty selector, empty qualifier"),
        pytest.param(
            {"qualifiers": {"hardware": [{"compute": {"processors": [{"manufacturer": INTEL}]}}]}},
            ["atom", "dual-xeon"],
            id="Intel only",
        ),
        pytest.param(
            {
                "qualifiers": {
                    "hardware": [
                        {"compute": {"processors": [{"manufacturer": INTEL}]}},
                        {"compute": {"processors": [{"manufacturer": AMD}]}},
                    ]
                }
            },
            ["atom", "dual-xeon", "ryzen"],
            id="Intel and AMD",
        ),
        pytest.param(
            {"qualifiers": {"hardware": [{"system": {"manufacturer": "QEMU"}}]}},
            ["ryzen"],
            id="QEMU only",
        ),
        pytest.param(
            {"qualifiers": {"labelSelectors": [{"common-label": "true"}]}},
            ["atom", "ryzen"],
            id="with label",
        ),
        pytest.param(
            # Sidero ORs the pairs of one map too (sidero#288): zone=central does not narrow.
            {"qualifiers": {"labelSelectors": [{"common-label": "true", "zone": "central"}]}},
            ["atom", "ryzen"],
            id="with multiple labels, single selector",
        ),
        pytest.param(
            {"qualifiers": {"labelSelectors": [{"common-label": "true"}, {"zone": "central"}]}},
            ["atom", "ryzen"],
            id="with multiple labels, multiple selectors",
        ),
        pytest.param(
            {"qualifiers": {"labelSelectors": [{"zone": "central"}]}},
            ["atom"],
            id="with same label key, different label value",
        ),
        pytest.param(
            {"selector": {"matchLabels": {"zone": "central"}}},
            ["atom"],
            id="selector, single matchLabels, single result",
        ),
        pytest.param(
            {"selector": {"matchLabels": {"common-label": "true"}}},
            ["atom", "ryzen"],
            id="selector, single matchLabels, multiple results",
        ),
        pytest.param(
            {"selector": {"matchLabels": {"zone": "central", "common-label": "true"}}},
            ["atom"],
            id="selector, multiple matchLabels",
        ),
        pytest.param(
            {"selector": {"matchExpressions": [{"key": "common-label", "operator": "Exists"}]}},
            ["atom", "ryzen"],
            id="selector, matchExpressions, common label key",
        ),
        pytest.param(
            {
                "selector": {
                    "matchExpressions": [
                        {"key": "zone", "operator": "In", "values": ["east", "west"]}
                    ]
                }
            },
            ["ryzen"],
            id="selector, matchExpressions, multiple values",
        ),
        pytest.param(
            {
                "selector": {"matchLabels": {"common-label": "true"}},
                "qualifiers": {"hardware": [{"system": {"manufacturer": "QEMU"}}]},
            },
            ["ryzen"],
            id="selector and qualifiers both match",
        ),
        pytest.param(
            {
                "selector": {"matchLabels": {"common-label": "no-match"}},
                "qualifiers": {"hardware": [{"system": {"manufacturer": "QEMU"}}]},
            },
            [],
            id="selector and qualifiers, disqualifying selector",
        ),
        pytest.param(
            {
                "selector": {"matchLabels": {"common-label": "true"}},
                "qualifiers": {"hardware": [{"system": {"manufacturer": "Gateway"}}]},
            },
            [],
            id="selector and qualifiers, disqualifying qualifier",
        ),
    ],
)
def test_sideros_own_server_class_cases(spec: dict, expected: list[str]) -> None:
    available, in_use = members(compile_class(cls(**spec)), SIDERO_SERVERS, bound=set())
    assert (available, in_use) == (expected, [])


def test_label_selectors_need_no_inventory_and_an_empty_list_is_no_qualifier() -> None:
    bare = server("bare", labels={"zone": "central"})
    assert matches(compile_class(cls(qualifiers={"labelSelectors": [{"zone": "central"}]})), bare)
    assert not matches(compile_class(cls(qualifiers={"labelSelectors": [{"zone": "east"}]})), bare)
    assert matches(compile_class(cls(qualifiers={"labelSelectors": []})), bare)


# Sizes: Sidero's inventory wrote memory module sizes in MB and totals as "<N> GB" strings
# (whole GiB, rounded down); Arges' inventory is in bytes.

GIB = 2**30
MIB = 2**20
FOUR_MODULES = {
    "memory": {
        "totalSize": 64 * GIB,
        "moduleCount": 4,
        "modules": [{"manufacturer": "Samsung", "type": "DDR4", "size": 16 * GIB}] * 4,
    },
    "storage": {
        "totalSize": 960 * 10**9 + 4 * 10**12,
        "deviceCount": 2,
        "devices": [
            {"name": "nvme0n1", "type": "NVMe", "size": 960 * 10**9},
            {"name": "sda", "type": "HDD", "size": 4 * 10**12},
        ],
    },
}
ODD_TOTAL = {"memory": {"totalSize": 65535 * MIB}}


@pytest.mark.parametrize(
    ("hardware", "matched", "odd"),
    [
        pytest.param({"memory": {"modules": [{"size": 16 * GIB}]}}, True, False, id="module bytes"),
        pytest.param({"memory": {"modules": [{"size": 8 * GIB}]}}, False, False, id="8 GiB"),
        pytest.param({"memory": {"totalSize": 64 * GIB}}, True, False, id="total in bytes"),
        pytest.param({"memory": {"totalSize": "64 GB"}}, True, False, id="Sidero's total"),
        # Sidero's agent wrote total MB / 1024, rounded down: 65535 MB is "63 GB".
        pytest.param({"memory": {"totalSize": "63 GB"}}, False, True, id="rounded down"),
        pytest.param({"storage": {"totalSize": "4619 GB"}}, True, False, id="storage total"),
        pytest.param(
            {"storage": {"devices": [{"size": 960 * 10**9}]}}, True, False, id="disk size only"
        ),
        pytest.param({"memory": {"modules": [{"size": 0, "type": "DDR4"}]}}, True, False, id="0"),
    ],
)
def test_sizes_written_the_sidero_way_match_as_in_sidero(
    hardware: dict, matched: bool, odd: bool
) -> None:
    compiled = compile_class(cls(qualifiers={"hardware": [hardware]}))
    assert matches(compiled, server("big", hardware=FOUR_MODULES)) is matched
    assert matches(compiled, server("odd", hardware=ODD_TOTAL)) is odd


@pytest.mark.parametrize(
    ("hardware", "field", "words"),
    [
        (
            {"memory": {"modules": [{"size": 16 * GIB}, {"size": 16384}]}},
            "spec.qualifiers.hardware[1].memory.modules[1].size",
            "Sidero wrote module sizes in MB: 16384 MB is 17179869184 bytes",
        ),
        (
            {"memory": {"totalSize": "64GB"}},
            "spec.qualifiers.hardware[1].memory.totalSize",
            'give bytes (an integer) or Sidero\'s "<N> GB"',
        ),
        (
            {"storage": {"totalSize": "4 TB"}},
            "spec.qualifiers.hardware[1].storage.totalSize",
            "is not a size",
        ),
    ],
)
def test_sizes_that_cannot_mean_what_they_say_are_refused_saying_the_unit(
    hardware: dict, field: str, words: str
) -> None:
    with pytest.raises(QualifierError) as err:
        compile_class(cls(qualifiers={"hardware": [{"system": {"manufacturer": "x"}}, hardware]}))
    assert err.value.field == field
    assert words in err.value.message


@pytest.mark.parametrize(
    ("last_write", "now", "servers", "wait"),
    [
        (None, 100.0, 2000, 0.0),  # never written: now
        (99.0, 100.0, 10, 0.0),  # a small fleet: a second apart
        (99.5, 100.0, 10, 0.5),
        (99.5, 100.0, 250, 0.5),
        (99.0, 100.0, 1000, 3.0),  # 4 s apart at 1,000 servers
        (92.0, 100.0, 2000, 0.0),  # 8 s apart at 2,000
        (96.0, 100.0, 2000, 4.0),
        (100.0, 100.0, 0, 1.0),
    ],
)
def test_membership_writes_are_spaced_by_fleet_size(
    last_write: float | None, now: float, servers: int, wait: float
) -> None:
    assert write_membership_in(last_write, now, servers) == pytest.approx(wait)
