"""Cluster membership decisions: pools, member states, scale-down choice, bootstrap node, phase."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from arges.api.binding import ServerBinding
from arges.api.cluster import TalosClusterSpec
from arges.api.server import Server
from arges.metal.clusters import (
    Liveness,
    MemberView,
    PoolRequest,
    bootstrap_member,
    leaving,
    member_state,
    phase,
    pools,
    readiness,
    shortfall,
    surplus,
    unhealthy,
)
from tests.unit.metal.conftest import server

T0 = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)


def at(minutes: int) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def cond(kind: str, status: str = "True", reason: str = "") -> dict[str, Any]:
    return {"type": kind, "status": status, "reason": reason, "lastTransitionTime": T0.isoformat()}


def binding(*conditions: dict[str, Any]) -> ServerBinding:
    return ServerBinding.from_json(
        {
            "metadata": {"name": "s"},
            "spec": {
                "serverRef": {"name": "s"},
                "consumerRef": {"apiVersion": "v1", "kind": "TalosCluster", "name": "c"},
            },
            "status": {"conditions": list(conditions)},
        }
    )


def booted(reason: str) -> Server:
    """A server whose last network boot got ``reason`` (Agent, Target, Disk)."""
    s = server("s")
    s.status.conditions = binding(cond("PXEBooted", reason=reason)).status.conditions
    return s


@pytest.mark.parametrize(
    ("bnd", "srv", "answers", "expected"),
    [
        (binding(), server("s"), False, "Allocated"),
        (binding(), None, False, "Allocated"),
        (binding(), booted("Agent"), False, "Allocated"),
        (binding(), booted("Target"), False, "Booting"),
        (binding(cond("ConfigDelivered")), booted("Target"), False, "ConfigDelivered"),
        (binding(cond("ConfigDelivered", "False")), booted("Target"), False, "Booting"),
        (binding(cond("ConfigDelivered"), cond("Installed")), booted("Disk"), False, "Installed"),
        (binding(cond("Installed")), server("s"), True, "Ready"),
        (binding(cond("Installed", "False")), server("s"), True, "Allocated"),
    ],
)
def test_member_state(bnd: ServerBinding, srv: Any, answers: bool, expected: str) -> None:
    assert member_state(bnd, srv, talos_answers=answers) == expected


def spec(**fields: Any) -> TalosClusterSpec:
    return TalosClusterSpec.from_json({"endpoint": "https://10.5.0.10:6443", **fields})


def test_pools_control_plane_first_then_workers_in_order() -> None:
    got = pools(
        spec(
            controlPlane={"replicas": 3, "serverClassRef": {"name": "cp"}},
            workers=[
                {"name": "gpu", "replicas": 2, "serverClassRef": {"name": "gpus"}},
                {"name": "general", "replicas": 5},
            ],
        )
    )
    assert got == [
        PoolRequest("controlplane", "controlplane", 3, "cp"),
        PoolRequest("gpu", "worker", 2, "gpus"),
        PoolRequest("general", "worker", 5, "any"),
    ]


@pytest.mark.parametrize("names", [["a", "a"], ["controlplane"]])
def test_pool_names_must_be_unique(names: list[str]) -> None:
    with pytest.raises(ValueError, match="used twice or is reserved"):
        pools(spec(workers=[{"name": n, "replicas": 1} for n in names]))


def m(name: str, state: str = "Ready", created: int = 0, role: str = "worker") -> MemberView:
    pool = "controlplane" if role == "controlplane" else "workers"
    return MemberView(name, pool, role, at(created), state)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("members", "replicas", "released"),
    [
        ([m("a"), m("b")], 2, []),
        ([m("a"), m("b")], 3, []),
        ([m("a", created=0), m("b", created=5)], 1, ["b"]),
        ([m("a", created=5), m("b", created=0)], 1, ["a"]),
        ([m("a", created=9), m("b", "Allocated", created=0)], 1, ["b"]),
        ([m("a", "Installed"), m("b", "Booting"), m("c", "Ready")], 1, ["b", "a"]),
        ([m("a"), m("b")], 0, ["a", "b"]),
        ([m("a", created=1), m("b", created=1)], 1, ["a"]),
    ],
)
def test_surplus(members: list[MemberView], replicas: int, released: list[str]) -> None:
    assert [v.server for v in surplus(members, replicas)] == released


def test_bootstrap_member_is_the_oldest_control_plane() -> None:
    members = [
        m("w", created=0),
        m("cp-b", "Allocated", created=3, role="controlplane"),
        m("cp-a", created=7, role="controlplane"),
    ]
    first = bootstrap_member(members)
    assert first is not None and first.server == "cp-b"
    assert bootstrap_member([m("w")]) is None


REQUESTS = [
    PoolRequest("controlplane", "controlplane", 1, "any"),
    PoolRequest("workers", "worker", 1, "any"),
]
SETTLED = [m("cp", role="controlplane"), m("w")]


@pytest.mark.parametrize(
    ("members", "deleting", "was_running", "expected"),
    [
        (SETTLED, True, True, "Deleting"),
        ([], False, False, "Pending"),
        (SETTLED, False, False, "Running"),
        ([m("cp", role="controlplane"), m("w", "Installed")], False, False, "Provisioning"),
        ([m("cp", role="controlplane")], False, False, "Provisioning"),
        ([m("cp", role="controlplane")], False, True, "Scaling"),
        ([*SETTLED, m("w2")], False, True, "Scaling"),
    ],
)
def test_phase(members: list[MemberView], deleting: bool, was_running: bool, expected: str) -> None:
    assert phase(REQUESTS, members, deleting=deleting, was_running=was_running) == expected


@pytest.mark.parametrize(
    ("members", "was_running", "expected"),
    [
        (SETTLED, True, "Updating"),
        ([m("cp", "Installed", role="controlplane"), m("w")], True, "Updating"),
        (SETTLED, False, "Provisioning"),
        ([*SETTLED, m("w2")], True, "Scaling"),
    ],
)
def test_phase_during_a_roll_out(
    members: list[MemberView], was_running: bool, expected: str
) -> None:
    got = phase(REQUESTS, members, deleting=False, was_running=was_running, up_to_date=False)
    assert got == expected


POOLS = [
    PoolRequest("controlplane", "controlplane", 1, "any"),
    PoolRequest("workers", "worker", 2, "any"),
]


@pytest.mark.parametrize(
    ("members", "replace", "expected"),
    [
        ([m("cp", role="controlplane"), m("a"), m("b")], set(), []),
        (
            [m("cp", role="controlplane"), m("a"), m("b", created=5), m("c", created=9)],
            set(),
            ["c"],
        ),
        ([m("cp", role="controlplane"), m("a"), m("b")], {"a"}, ["a"]),
        ([m("cp", role="controlplane"), m("a"), m("b"), m("c", created=9)], {"a"}, ["a"]),
        (
            [m("cp", role="controlplane"), MemberView("g", "gone", "worker", at(0), "Ready")],
            set(),
            ["g"],
        ),
    ],
)
def test_leaving(members: list[MemberView], replace: set[str], expected: list[str]) -> None:
    assert sorted(v.server for v in leaving(POOLS, members, replace)) == expected


@pytest.mark.parametrize(
    ("members", "expected"),
    [
        ([], {"controlplane": 1, "workers": 2}),
        ([m("cp", role="controlplane"), m("a")], {"workers": 1}),
        ([m("cp", role="controlplane"), m("a"), m("b"), m("c")], {}),
    ],
)
def test_shortfall(members: list[MemberView], expected: dict[str, int]) -> None:
    assert shortfall(POOLS, members) == expected


@pytest.mark.parametrize(
    ("seen", "rebooting", "sick"),
    [
        (None, False, False),
        (at(-4), False, False),
        (at(-6), False, True),
        (at(-6), True, False),
    ],
)
def test_unhealthy(seen: dt.datetime | None, rebooting: bool, sick: bool) -> None:
    got = unhealthy([Liveness("a", seen, rebooting)], now=at(0), after=dt.timedelta(minutes=5))
    assert got == (["a"] if sick else [])


def test_phase_of_an_empty_cluster_is_running() -> None:
    assert (
        phase(
            [PoolRequest("controlplane", "controlplane", 0, "any")],
            [],
            deleting=False,
            was_running=False,
        )
        == "Running"
    )


def test_readiness_counts_ready_members_of_a_role() -> None:
    members = [m("a", role="controlplane"), m("b", "Installed", role="controlplane"), m("w")]
    assert readiness(members, "controlplane", 3) == "1/3"
    assert readiness(members, "worker", 2) == "1/2"
