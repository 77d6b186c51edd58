"""A person's power-cycle and re-inspection requests in the power rules."""

import datetime as dt

from arges.api.base import Condition
from arges.api.server import Server
from arges.metal.power import intent
from arges.metal.requests import POWER_CYCLE_REQUESTED, REINSPECT_REQUESTED, requested, stamp
from tests.unit.metal.conftest import server
from tests.unit.metal.test_power_intent import NOW, TIMEOUT, binding


def asking(annotation: str, *, minutes_ago: int = 1, accepted: bool = True, **kw) -> Server:
    s = server("s", accepted=accepted, **kw)
    s.metadata["annotations"] = {annotation: stamp(NOW - dt.timedelta(minutes=minutes_ago))}
    return s


def cycled(s: Server, minutes_ago: float) -> Server:
    s.status.conditions = [
        Condition(
            type="PowerCycle",
            status="True",
            last_transition_time=NOW - dt.timedelta(minutes=minutes_ago),
        )
    ]
    return s


def test_a_requested_cycle_happens_once_whatever_the_server_does() -> None:
    for bnd in (None, binding(), binding(installed=True)):
        fresh = asking(POWER_CYCLE_REQUESTED)
        got = intent(fresh, bnd, now=NOW, reboot_timeout=TIMEOUT)
        assert (got.action, got.network_boot) == ("cycle", True)
        assert "requested by a person" in got.reason
        done = cycled(asking(POWER_CYCLE_REQUESTED), minutes_ago=0.5)
        assert intent(done, bnd, now=NOW, reboot_timeout=TIMEOUT).reason != got.reason


def test_a_clean_server_is_cycled_not_powered_off_when_asked() -> None:
    plain = server("s", clean=True)
    assert intent(plain, None, now=NOW, reboot_timeout=TIMEOUT).action == "off"
    got = intent(asking(POWER_CYCLE_REQUESTED, clean=True), None, now=NOW, reboot_timeout=TIMEOUT)
    assert got.action == "cycle"


def test_a_cycled_clean_server_boots_before_it_is_powered_off_again() -> None:
    s = cycled(asking(POWER_CYCLE_REQUESTED, clean=True), minutes_ago=0.5)
    s.status.last_seen = NOW - dt.timedelta(minutes=5)
    got = intent(s, None, now=NOW, reboot_timeout=TIMEOUT)
    assert got.action is None and "waiting for the agent" in got.reason
    s.status.last_seen = NOW
    assert intent(s, None, now=NOW, reboot_timeout=TIMEOUT).action == "off"


def test_requests_of_a_server_not_accepted_do_nothing() -> None:
    for annotation in (POWER_CYCLE_REQUESTED, REINSPECT_REQUESTED):
        got = intent(asking(annotation, accepted=False), None, now=NOW, reboot_timeout=TIMEOUT)
        assert got.action is None


def test_reinspection_boots_the_agent_then_waits_for_its_registration() -> None:
    s = asking(REINSPECT_REQUESTED, clean=True)
    got = intent(s, None, now=NOW, reboot_timeout=TIMEOUT)
    assert (got.action, got.network_boot) == ("cycle", True)

    # Cycled; the agent has not registered since: a clean server is not powered off meanwhile.
    cycled(s, minutes_ago=0.5)
    s.status.last_seen = NOW - dt.timedelta(minutes=5)
    got = intent(s, None, now=NOW, reboot_timeout=TIMEOUT)
    assert got.action is None and "waiting for the agent" in got.reason

    # Registered: done, and the usual rule (clean: power off) applies again.
    s.status.last_seen = NOW
    assert intent(s, None, now=NOW, reboot_timeout=TIMEOUT).action == "off"


def test_reinspection_gives_up_waiting_after_the_reboot_timeout() -> None:
    s = cycled(asking(REINSPECT_REQUESTED, minutes_ago=30, clean=True), minutes_ago=20)
    assert intent(s, None, now=NOW, reboot_timeout=TIMEOUT).action == "off"


def test_reinspection_of_a_bound_server_is_not_done() -> None:
    got = intent(
        asking(REINSPECT_REQUESTED), binding(installed=True), now=NOW, reboot_timeout=TIMEOUT
    )
    assert got.action == "on"


def test_reinspection_by_virtual_media() -> None:
    s = asking(REINSPECT_REQUESTED, clean=True)
    got = intent(s, None, now=NOW, reboot_timeout=TIMEOUT, boot_method="virtualMedia")
    assert (got.action, got.network_boot, got.media) == ("cycle", False, True)


def test_values_that_are_no_time_ask_for_nothing() -> None:
    s = server("s")
    s.metadata["annotations"] = {POWER_CYCLE_REQUESTED: "now please"}
    assert requested(s, POWER_CYCLE_REQUESTED) is None
    s.metadata["annotations"] = {POWER_CYCLE_REQUESTED: "2026-12-03T10:00:00"}
    assert requested(s, POWER_CYCLE_REQUESTED) == dt.datetime(2026, 12, 3, 10, tzinfo=dt.UTC)
