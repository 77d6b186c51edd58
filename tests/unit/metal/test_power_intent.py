import datetime as dt

import pytest

from arges.api.base import Condition
from arges.api.binding import ServerBinding
from arges.api.server import Server
from arges.metal.power import PowerIntent, Reading, intent, kept_on_release, read_again_in
from tests.unit.metal.conftest import server

NOW = dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.UTC)
TIMEOUT = dt.timedelta(minutes=15)


def binding(installed: bool = False) -> ServerBinding:
    status = (
        {
            "conditions": [
                {"type": "Installed", "status": "True", "lastTransitionTime": NOW.isoformat()}
            ]
        }
        if installed
        else {}
    )
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


def _with_cycle(minutes_ago: int):
    s = server("s", clean=False)
    s.status.conditions = [
        Condition(
            type="PowerCycle",
            status="True",
            last_transition_time=NOW - dt.timedelta(minutes=minutes_ago),
        )
    ]
    return s


def seen(minutes_ago: int, last_boot: str | None = None):
    s = server("s", clean=False)
    s.status.last_seen = NOW - dt.timedelta(minutes=minutes_ago)
    if last_boot is not None:
        s.status.conditions = [
            Condition(type="PXEBooted", status="True", reason=last_boot, last_transition_time=NOW)
        ]
    return s


@pytest.mark.parametrize(
    ("srv", "bnd", "action", "network"),
    [
        (server("s", accepted=False, clean=False), None, None, False),
        (server("s", accepted=False, clean=False), binding(), None, False),
        (server("s", clean=False), binding(), "on", True),
        (server("s", clean=True), binding(), "on", True),
        (server("s", clean=False), binding(installed=True), "on", False),
        (server("s", clean=False), None, "cycle", True),
        (server("s", clean=None), None, "cycle", True),
        (_with_cycle(5), None, None, False),
        (_with_cycle(30), None, "cycle", True),
        (seen(1), None, None, False),
        (seen(60), None, "cycle", True),
        (seen(1, last_boot="Agent"), None, None, False),
        # Released while running its target OS: it reported recently, but no agent runs.
        (seen(1, last_boot="Target"), None, "cycle", True),
        (seen(1, last_boot="Disk"), None, "cycle", True),
        (server("s", clean=True), None, "off", False),
    ],
)
def test_every_row_of_the_power_rules(srv, bnd, action, network) -> None:
    got = intent(srv, bnd, now=NOW, reboot_timeout=TIMEOUT)
    assert (got.action, got.network_boot) == (action, network) and got.reason


def _reset(minutes_ago: int, *, status: str = "True", agent_seen_minutes_ago: int | None = None):
    """A released server whose Talos was asked to reset ``minutes_ago``, last booted into its
    target (so a recent report is Talos', not the agent's)."""
    s = server("s", clean=False)
    s.status.conditions = [
        Condition(type="PXEBooted", status="True", reason="Target", last_transition_time=NOW),
        Condition(
            type="TalosReset",
            status=status,
            last_transition_time=NOW - dt.timedelta(minutes=minutes_ago),
        ),
    ]
    if agent_seen_minutes_ago is not None:
        s.status.last_seen = NOW - dt.timedelta(minutes=agent_seen_minutes_ago)
    return s


@pytest.mark.parametrize(
    ("srv", "action", "network"),
    [
        # Talos resets itself and reboots into the agent: nothing power-cycles it meanwhile.
        (_reset(1), None, False),
        (_reset(4), None, False),
        # Not back in the agent within reset_timeout (5 minutes): the network-booted wipe.
        (_reset(6), "cycle", True),
        # The reset was not asked (Talos did not answer): the network-booted wipe at once.
        (_reset(1, status="False"), "cycle", True),
        # Its last report in the very second the reset was asked (timestamps are whole
        # seconds): from before the reset, so it still waits for Talos.
        (_reset(1, agent_seen_minutes_ago=1), None, False),
        # Seen since the reset was asked, yet not clean and no agent recently: the wipe.
        (_reset(4, agent_seen_minutes_ago=2), "cycle", True),
    ],
)
def test_a_talos_reset_holds_the_network_wipe_until_reset_timeout(srv, action, network) -> None:
    got = intent(srv, None, now=NOW, reboot_timeout=TIMEOUT, reset_timeout=dt.timedelta(minutes=5))
    assert (got.action, got.network_boot) == (action, network) and got.reason


def _media(srv, inserted: bool = False, cycled_minutes_ago: int | None = None):
    conditions = []
    if inserted:
        conditions.append(
            Condition(type="AgentMedia", status="True", reason="Inserted", last_transition_time=NOW)
        )
    if cycled_minutes_ago is not None:
        conditions.append(
            Condition(
                type="PowerCycle",
                status="True",
                last_transition_time=NOW - dt.timedelta(minutes=cycled_minutes_ago),
            )
        )
    srv.status.conditions = conditions
    return srv


@pytest.mark.parametrize(
    ("srv", "bnd", "action", "media", "eject"),
    [
        # Asking for virtual media on a Server never seen is asking for its discovery.
        (server("s", accepted=False, clean=None), None, "cycle", True, False),
        (
            _media(server("s", accepted=False, clean=None), cycled_minutes_ago=5),
            None,
            None,
            False,
            False,
        ),
        (
            _media(server("s", accepted=False, clean=None), cycled_minutes_ago=30),
            None,
            "cycle",
            True,
            False,
        ),
        (
            server("s", accepted=False, clean=None, hardware={"system": {}}),
            None,
            None,
            False,
            False,
        ),
        (server("s", clean=False), None, "cycle", True, False),
        (
            _media(
                server("s", clean=False, hardware={"system": {}}),
                inserted=True,
                cycled_minutes_ago=5,
            ),
            None,
            None,
            False,
            False,
        ),
        (_media(server("s", clean=True), inserted=True), None, "off", False, True),
        (server("s", clean=True), None, "off", False, False),
        (_media(server("s", clean=True), inserted=True), binding(), "on", False, True),
    ],
)
def test_virtual_media_replaces_network_boot_for_the_agent(srv, bnd, action, media, eject) -> None:
    got = intent(srv, bnd, now=NOW, reboot_timeout=TIMEOUT, boot_method="virtualMedia")
    assert (got.action, got.media, got.eject) == (action, media, eject), got.reason
    assert not (got.media and got.network_boot)
    if bnd is not None:
        assert got.network_boot, "the target still boots from the network"


def test_network_servers_never_get_media() -> None:
    got = intent(server("s", accepted=False, clean=None), None, now=NOW, reboot_timeout=TIMEOUT)
    assert (got.action, got.media, got.eject) == (None, False, False)


OFF = PowerIntent("off", False, "clean and available: power off")
ON_NET = PowerIntent("on", True, "allocated: boot the target environment")
IDLE = PowerIntent(None, False, "the agent is running; waiting for its wipe")
CYCLE = PowerIntent("cycle", True, "not clean: boot the agent to wipe")
EJECT = PowerIntent("off", False, "clean and available: power off", eject=True)
MEDIA = PowerIntent("cycle", False, "not clean: boot the agent from virtual media", True)
BMC = '{"address": "10.0.0.9"}'


@pytest.mark.parametrize(
    ("last", "plan", "bmc", "now", "wait"),
    [
        (None, OFF, BMC, 10.0, 0.0),
        (Reading(OFF, BMC, "off", 0.0), OFF, BMC, 10.0, 50.0),
        (Reading(IDLE, BMC, "on", 0.0), IDLE, BMC, 59.0, 1.0),
        (Reading(ON_NET, BMC, "on", 0.0), ON_NET, BMC, 30.0, 30.0),
        # the refresh is due: read the BMC, however settled
        (Reading(OFF, BMC, "off", 0.0), OFF, BMC, 60.0, 0.0),
        (Reading(OFF, BMC, "off", 0.0), OFF, BMC, 75.0, 0.0),
        # the BMC did not report what the plan asks (a failed or lying BMC): ask it again
        (Reading(OFF, BMC, "on", 0.0), OFF, BMC, 10.0, 0.0),
        (Reading(OFF, BMC, "unknown", 0.0), OFF, BMC, 10.0, 0.0),
        # a new plan, or another BMC
        (Reading(OFF, BMC, "off", 0.0), ON_NET, BMC, 10.0, 0.0),
        (Reading(OFF, BMC, "off", 0.0), OFF, '{"address": "10.0.0.10"}', 10.0, 0.0),
        # done each time they are planned
        (Reading(CYCLE, BMC, "on", 0.0), CYCLE, BMC, 10.0, 0.0),
        (Reading(EJECT, BMC, "off", 0.0), EJECT, BMC, 10.0, 0.0),
        (Reading(MEDIA, BMC, "on", 0.0), MEDIA, BMC, 10.0, 0.0),
    ],
)
def test_the_bmc_is_read_again_only_for_what_its_last_reading_did_not_show(
    last: Reading | None, plan: PowerIntent, bmc: str, now: float, wait: float
) -> None:
    assert read_again_in(last, plan, bmc, now=now, refresh=60.0) == pytest.approx(wait)


def test_times_stored_without_a_zone_are_utc() -> None:
    # The API server stores a date-time without a zone (OpenAPI's format allows it): the
    # decision compares it with aware times, and takes it as UTC.
    s = Server.from_json(
        {
            "metadata": {"name": "s"},
            "spec": {"accepted": True},
            "status": {
                "isClean": False,
                "lastSeen": "2026-11-24T11:58:00",
                "conditions": [
                    {
                        "type": "PowerCycle",
                        "status": "True",
                        "lastTransitionTime": "2026-11-24T11:00:00",
                        "reason": "Requested",
                        "message": "",
                    }
                ],
            },
        }
    )
    assert s.status.last_seen == NOW - dt.timedelta(minutes=2)
    plan = intent(s, None, now=NOW, reboot_timeout=TIMEOUT, reset_timeout=TIMEOUT)
    assert plan.reason == "the agent is running; waiting for its wipe"


def _cycle(at: dt.datetime) -> Condition:
    return Condition(type="PowerCycle", status="True", reason="Requested", last_transition_time=at)


WIPED = Condition(type="Wipe", status="True", reason="Wiped", last_transition_time=NOW)
SECOND = dt.timedelta(seconds=1)


@pytest.mark.parametrize(
    ("conditions", "kept"),
    [
        pytest.param([WIPED, _cycle(NOW - SECOND)], [WIPED], id="a cycle before the release"),
        pytest.param(
            [WIPED, _cycle(NOW + SECOND)], [WIPED, _cycle(NOW + SECOND)], id="the wipe's own cycle"
        ),
        pytest.param([_cycle(NOW)], [_cycle(NOW)], id="a cycle in the release's second"),
        pytest.param([WIPED], [WIPED], id="no cycle"),
    ],
)
def test_a_release_drops_only_the_cycles_requested_before_it(
    conditions: list[Condition], kept: list[Condition]
) -> None:
    assert kept_on_release(conditions, NOW) == kept
