import datetime as dt

import pytest

from arges.api.binding import ServerBinding
from arges.metal.agent import instruct, seen_due, seen_interval
from tests.unit.metal.conftest import server

BINDING = ServerBinding.from_json(
    {
        "metadata": {"name": "s"},
        "spec": {
            "serverRef": {"name": "s"},
            "consumerRef": {"apiVersion": "v1", "kind": "X", "name": "x"},
        },
    }
)
BMC = {"bmc": {"address": "10.0.0.9"}}


@pytest.mark.parametrize(
    ("srv", "binding", "action"),
    [
        (server("s", accepted=False, clean=False), None, "wait"),
        (server("s", accepted=False, clean=True), None, "wait"),
        (server("s", clean=False), BINDING, "reboot"),
        (server("s", clean=True), BINDING, "reboot"),
        (server("s", clean=False), None, "wipe"),
        (server("s", clean=None), None, "wipe"),
        (server("s", clean=True, **BMC), None, "poweroff"),
        (server("s", clean=True), None, "wait"),
    ],
)
def test_instruction_table(srv, binding, action) -> None:
    got = instruct(srv, binding, wipe_mode="full")
    assert got.action == action and got.reason
    if action == "wipe":
        assert got.wipe_mode == "full"


@pytest.mark.parametrize(
    ("srv", "action"),
    [
        (server("s", accepted=False, clean=False), "wait"),
        (server("s", clean=False), "wipe"),
        (server("s", clean=True, **BMC), "wipe"),
    ],
)
def test_a_wiping_agent_carries_on_bound_or_not(srv, action) -> None:
    # The answer to a heartbeat: the wipe's outcome is reported, and answered, next.
    for binding in (None, BINDING):
        got = instruct(srv, binding, wipe_mode="full", wiping=True)
        assert got.action == action and got.reason
    if action == "wipe":
        assert got.wipe_mode == "full"


NOW = dt.datetime(2026, 12, 5, 12, 0, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("previous", "due"),
    [
        (None, True),
        (NOW, False),
        (NOW - dt.timedelta(seconds=59), False),
        (NOW - dt.timedelta(seconds=60), True),
        (NOW - dt.timedelta(hours=3), True),
        (NOW + dt.timedelta(seconds=1), True),
    ],
)
def test_an_unchanged_report_writes_last_seen_once_a_minute(
    previous: dt.datetime | None, due: bool
) -> None:
    assert seen_due(previous, NOW, 60.0) is due


@pytest.mark.parametrize(
    ("every", "reboot_timeout", "interval"),
    [(60.0, 900.0, 60.0), (60.0, 240.0, 60.0), (60.0, 60.0, 15.0), (60.0, 2.0, 0.5)],
)
def test_last_seen_is_written_four_times_per_reboot_timeout_at_least(
    every: float, reboot_timeout: float, interval: float
) -> None:
    assert seen_interval(every, reboot_timeout) == interval
