"""A server's stage, decided in one place: one table over its whole life."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from arges.api.base import Condition
from arges.api.binding import ServerBinding
from arges.api.server import Server
from arges.metal.stage import (
    REGISTRATION_GRACE,
    BootReason,
    Stage,
    clean_after_wipe,
    last_boot,
    registration_wait,
    runs_agent,
    stage,
    stays_clean,
)
from tests.unit.metal.conftest import QEMU
from tests.unit.metal.conftest import server as make_server

NOW = dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.UTC)


def server(
    *,
    registered: bool = True,
    accepted: bool = True,
    clean: bool = False,
    booted: str | None = None,
    wipe: str | None = None,
) -> Server:
    s = make_server("s", accepted=accepted, clean=clean, hardware=QEMU if registered else None)
    conditions = []
    if booted is not None:
        conditions.append(
            Condition(type="PXEBooted", status="True", reason=booted, last_transition_time=NOW)
        )
    if wipe is not None:
        conditions.append(Condition(type="Wipe", status=wipe, last_transition_time=NOW))
    s.status.conditions = conditions or None
    return s


def binding(*conditions: str) -> ServerBinding:
    status: dict[str, Any] = {
        "conditions": [
            {"type": c, "status": "True", "lastTransitionTime": NOW.isoformat()} for c in conditions
        ]
    }
    return ServerBinding.from_json(
        {
            "metadata": {"name": "s"},
            "spec": {
                "serverRef": {"name": "s"},
                "consumerRef": {"apiVersion": "v1", "kind": "X", "name": "x"},
            },
            "status": status,
        }
    )


@pytest.mark.parametrize(
    ("srv", "bnd", "releasing", "expected"),
    [
        (None, None, False, Stage.UNREGISTERED),
        (server(registered=False), None, False, Stage.UNREGISTERED),
        (server(accepted=False), None, False, Stage.REGISTERED),
        (server(accepted=False, clean=True), None, False, Stage.REGISTERED),
        (server(), None, False, Stage.ACCEPTED),
        (server(wipe="Unknown"), None, False, Stage.WIPING),
        (server(wipe="False"), None, False, Stage.WIPE_FAILED),
        (server(wipe="True"), None, False, Stage.ACCEPTED),
        (server(clean=True, wipe="True"), None, False, Stage.CLEAN),
        (server(booted="Agent"), binding(), False, Stage.ALLOCATED),
        (server(booted="Target"), binding(), False, Stage.BOOTING),
        (server(booted="Target"), binding("ConfigDelivered"), False, Stage.CONFIG_DELIVERED),
        (server(booted="Disk"), binding("ConfigDelivered", "Installed"), False, Stage.INSTALLED),
        (server(booted="Disk"), binding("Installed"), True, Stage.RELEASED),
        (server(), binding(), True, Stage.RELEASED),
    ],
)
def test_stage(
    srv: Server | None, bnd: ServerBinding | None, releasing: bool, expected: Stage
) -> None:
    assert stage(srv, bnd, releasing=releasing) is expected


@pytest.mark.parametrize(
    ("booted", "reason", "agent"),
    [
        (None, None, True),
        ("Agent", BootReason.AGENT, True),
        ("NotReady", BootReason.NOT_READY, True),
        ("Target", BootReason.TARGET, False),
        ("Disk", BootReason.DISK, False),
        ("SomethingNewer", None, True),
    ],
)
def test_last_boot_and_who_reports(
    booted: str | None, reason: BootReason | None, agent: bool
) -> None:
    s = server(booted=booted)
    assert last_boot(s) is reason
    assert runs_agent(s) is agent


@pytest.mark.parametrize(
    ("accepted", "clean", "bound", "released", "stays"),
    [
        (True, True, False, False, True),
        (True, True, True, False, False),
        (True, True, False, True, False),
        (False, True, False, False, False),
        (True, False, False, False, False),
    ],
)
def test_a_clean_server_stays_clean_only_while_accepted_unbound_and_not_released(
    accepted: bool, clean: bool, bound: bool, released: bool, stays: bool
) -> None:
    s = server(accepted=accepted, clean=clean)
    assert stays_clean(s, bound=bound, released=released) is stays


@pytest.mark.parametrize(
    ("accepted", "bound", "clean"),
    [(True, False, True), (True, True, False), (False, False, False)],
)
def test_a_wipe_makes_only_an_accepted_unbound_server_clean(
    accepted: bool, bound: bool, clean: bool
) -> None:
    assert clean_after_wipe(accepted=accepted, bound=bound) is clean


@pytest.mark.parametrize(
    ("has_status", "age", "wait"),
    [
        (False, 0.0, REGISTRATION_GRACE),
        (False, 1.0, REGISTRATION_GRACE - 1.0),
        (False, REGISTRATION_GRACE, 0.0),
        (False, 60.0, 0.0),
        (True, 0.0, 0.0),
        (False, -5.0, 0.0),
        (False, None, 0.0),
    ],
    ids=[
        "just created: left to its registration",
        "a second old: the rest of the grace",
        "the grace is over",
        "made otherwise, long ago",
        "its registration wrote its status",
        "created in this clock's future: no wait",
        "no creation time",
    ],
)
def test_a_server_without_status_is_left_to_its_registration_a_while(
    has_status: bool, age: float | None, wait: float
) -> None:
    created = None if age is None else NOW - dt.timedelta(seconds=age)
    assert registration_wait(has_status, created, NOW) == pytest.approx(wait)
