"""Roll-out decisions: what a member still needs, where a recorded step is, who goes next."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from arges.metal.rollout import (
    STAGES,
    Decision,
    MemberRollout,
    Step,
    pending,
    plan,
    progress,
)

T0 = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
TIMEOUT = dt.timedelta(minutes=15)
NEW = "ghcr.io/siderolabs/installer:v1.11.7"

IMAGES_OLD = {
    "kube-apiserver": "registry.k8s.io/kube-apiserver:v1.34.1",
    "kube-controller-manager": "registry.k8s.io/kube-controller-manager:v1.34.1",
    "kube-scheduler": "registry.k8s.io/kube-scheduler:v1.34.1",
    "kube-proxy": "registry.k8s.io/kube-proxy:v1.34.1",
    "kubelet": "ghcr.io/siderolabs/kubelet:v1.34.1",
}
IMAGES_NEW = {k: v.replace("1.34.1", "1.34.2") for k, v in IMAGES_OLD.items()}
WORKER_NEW = {**dict.fromkeys(IMAGES_NEW), "kubelet": IMAGES_NEW["kubelet"]}


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, ()),
        ({"version": "v1.11.6"}, ("talos",)),
        ({"version": None}, ()),
        ({"wanted": IMAGES_NEW}, STAGES[1:6]),
        ({"wanted": WORKER_NEW}, ("kubelet",)),
        ({"applied": None, "config_current": False}, ("config",)),
        ({"applied": None, "wanted": IMAGES_NEW, "config_current": False}, ("config",)),
        (
            {"version": "v1.11.6", "wanted": IMAGES_NEW, "config_current": False},
            ("talos", *STAGES[1:6], "config"),
        ),
    ],
)
def test_pending(kwargs: dict[str, Any], expected: tuple[str, ...]) -> None:
    args: dict[str, Any] = {
        "version": "v1.11.7",
        "wanted_version": "v1.11.7",
        "applied": IMAGES_OLD,
        "wanted": IMAGES_OLD,
        "config_current": True,
    }
    assert pending(**{**args, **kwargs}) == expected


def step(stage: str = "talos", **fields: Any) -> Step:
    return Step(stage, NEW, 1000, T0, **fields)  # type: ignore[arg-type]


def where(s: Step, *, minutes: int = 1, **seen: Any) -> str:
    args: dict[str, Any] = {
        "answers": True,
        "boot_time": 1000,
        "version": "v1.11.6",
        "healthy": True,
        "wanted_version": "v1.11.7",
    }
    return progress(s, now=T0 + dt.timedelta(minutes=minutes), timeout=TIMEOUT, **{**args, **seen})


@pytest.mark.parametrize(
    ("s", "seen", "minutes", "expected"),
    [
        # An upgrade: confirmed, then down, then back on the new version and healthy.
        (step(accepted=True, reboots=True), {}, 1, "waiting"),
        (step(accepted=True, reboots=True), {"answers": False, "boot_time": None}, 1, "waiting"),
        (step(accepted=True), {"boot_time": 2000, "version": "v1.11.7"}, 2, "done"),
        (
            step(accepted=True),
            {"boot_time": 2000, "version": "v1.11.7", "healthy": False},
            2,
            "waiting",
        ),
        (
            step(accepted=True),
            {"boot_time": 2000, "version": "v1.11.6"},
            2,
            "it came back on Talos v1.11.6, not v1.11.7",
        ),
        (step(accepted=True), {}, 16, "not back on Talos v1.11.7 within 900 s"),
        (
            step(accepted=True),
            {"boot_time": 2000, "version": "v1.11.7", "healthy": False},
            16,
            "not healthy within 900 s",
        ),
        # Recorded but not confirmed (Arges stopped in between): sent again only while the
        # node has not rebooted; once it has, what it runs decides.
        (step(), {}, 1, "resend"),
        (step(), {"answers": False, "boot_time": None}, 1, "waiting"),
        (step(), {"boot_time": 2000, "version": "v1.11.7"}, 1, "done"),
        (step(), {"boot_time": 2000}, 1, "it came back on Talos v1.11.6, not v1.11.7"),
        (step(), {}, 16, "not confirmed by Talos within 900 s"),
        # A config change that reboots, and one that does not.
        (step("config", accepted=True, reboots=True), {}, 1, "waiting"),
        (step("config", accepted=True, reboots=True), {"boot_time": 2000}, 1, "done"),
        (
            step("config", accepted=True, reboots=True),
            {},
            16,
            "not back from its reboot within 900 s",
        ),
        (step("config", accepted=True), {}, 1, "done"),
        (step("kubelet", accepted=True), {"healthy": False}, 1, "waiting"),
        (step("kubelet"), {"boot_time": 2000}, 1, "resend"),
        (step(failed="Talos refused it"), {}, 1, "Talos refused it"),
    ],
)
def test_progress(s: Step, seen: dict[str, Any], minutes: int, expected: str) -> None:
    assert where(s, minutes=minutes, **seen) == expected


def test_a_step_reads_back_as_recorded() -> None:
    s = step("kube-scheduler", accepted=True, reboots=False, failed="x")
    assert Step.from_text(s.to_text()) == s
    assert Step.from_text(None) is None
    assert Step.from_text("not json") is None
    assert Step.from_text('{"stage": "dance", "target": "x"}') is None


def cp(name: str, *pending_: str, healthy: bool = True, **fields: Any) -> MemberRollout:
    return MemberRollout(name, "controlplane", "controlplane", healthy, pending_, **fields)  # type: ignore[arg-type]


def w(
    name: str, *pending_: str, pool: str = "a", healthy: bool = True, **fields: Any
) -> MemberRollout:
    return MemberRollout(name, pool, "worker", healthy, pending_, **fields)  # type: ignore[arg-type]


IN_FLIGHT = step(accepted=True, reboots=True)


@pytest.mark.parametrize(
    ("members", "options", "expected"),
    [
        ([cp("c1"), w("w1")], {}, Decision(None)),
        # Control planes first, one at a time, by name.
        ([cp("c2", "talos"), cp("c1", "talos"), w("w1", "talos")], {}, Decision("talos", ("c1",))),
        (
            [cp("c1", step=IN_FLIGHT), cp("c2", "talos"), w("w1", "talos")],
            {},
            Decision("talos", waiting="control plane c1 is not done yet"),
        ),
        (
            [cp("c1"), cp("c2", "talos", healthy=False)],
            {},
            Decision("talos", waiting="control plane c2 is not healthy"),
        ),
        (
            [cp("c1", "talos"), cp("c2", "talos")],
            {"etcd_problem": "member cp-2 does not answer"},
            Decision("talos", waiting="etcd is not healthy: member cp-2 does not answer"),
        ),
        # Workers only once every control plane is done with the stage; per pool, within
        # maxUnavailable, unhealthy members counting as down.
        (
            [cp("c1"), w("w1", "talos"), w("w2", "talos")],
            {},
            Decision(
                "talos", ("w1",), "pool a: 1 more wait their turn (maxUnavailable 1, 0 down now)"
            ),
        ),
        (
            [cp("c1"), w("w1", "talos"), w("w2", "talos"), w("w3", "talos")],
            {"max_unavailable": {"a": 2}},
            Decision(
                "talos",
                ("w1", "w2"),
                "pool a: 1 more wait their turn (maxUnavailable 2, 0 down now)",
            ),
        ),
        (
            [cp("c1"), w("w1", step=IN_FLIGHT), w("w2", "talos"), w("x1", "talos", pool="b")],
            {},
            Decision(
                "talos", ("x1",), "pool a: 1 more wait their turn (maxUnavailable 1, 1 down now)"
            ),
        ),
        (
            [cp("c1"), w("w1", "talos", healthy=False), w("w2", "talos")],
            {},
            Decision("talos", (), "pool a: 1 more wait their turn (maxUnavailable 1, 1 down now)"),
        ),
        # Stages in order: the next starts when the previous is done everywhere.
        ([cp("c1", "kubelet"), w("w1", "talos")], {}, Decision("talos", ("w1",))),
        (
            [cp("c1", "kube-apiserver"), cp("c2", "kube-apiserver")],
            {},
            Decision("kube-apiserver", ("c1",)),
        ),
        # Config changes that need no reboot go everywhere at once; those that do, one by one.
        (
            [cp("c1", "config"), cp("c2", "config"), w("w1", "config"), w("w2", "config")],
            {},
            Decision("config", ("c1", "c2")),
        ),
        ([cp("c1"), w("w1", "config"), w("w2", "config")], {}, Decision("config", ("w1", "w2"))),
        (
            [cp("c1", "config", reboots=True), cp("c2", "config", reboots=True)],
            {},
            Decision("config", ("c1",)),
        ),
        (
            [cp("c1"), w("w1", "config", reboots=True), w("w2", "config", reboots=True)],
            {},
            Decision(
                "config", ("w1",), "pool a: 1 more wait their turn (maxUnavailable 1, 0 down now)"
            ),
        ),
        # Paused, and failed.
        (
            [cp("c1", "talos")],
            {"paused": True},
            Decision("talos", waiting="the roll-out is paused (spec.paused)"),
        ),
        (
            [cp("c1"), w("w1", step=step(failed="it came back on v1.11.6")), w("w2", "talos")],
            {},
            Decision("talos", failed="member w1 (talos): it came back on v1.11.6"),
        ),
    ],
)
def test_plan(members: list[MemberRollout], options: dict[str, Any], expected: Decision) -> None:
    args: dict[str, Any] = {"paused": False, "etcd_problem": None, "max_unavailable": {}}
    assert plan(members, **{**args, **options}) == expected
