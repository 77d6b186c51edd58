from typing import Any

import pytest

from arges.controllers.relevance import (
    ClassBoot,
    Facts,
    boot_affected,
    member_facts,
    power_facts,
)


def server(
    *, address: str | None = None, booted: str | None = None, heartbeat: str = "t0"
) -> dict[str, Any]:
    status: dict[str, Any] = {"lastHeartbeat": heartbeat}
    if address is not None:
        status["addresses"] = [{"type": "InternalIP", "address": address}]
    if booted is not None:
        status["conditions"] = [{"type": "PXEBooted", "status": "True", "reason": booted}]
    return {"metadata": {"name": "s1", "resourceVersion": "1"}, "status": status}


def test_facts_change_only_with_what_a_cluster_reads_of_a_member() -> None:
    facts = Facts(member_facts)
    assert facts.changed("ADDED", server()), "first sight"
    assert not facts.changed("MODIFIED", server(heartbeat="t1")), "a heartbeat"
    assert facts.changed("MODIFIED", server(address="10.0.0.5")), "an address"
    assert not facts.changed("MODIFIED", server(address="10.0.0.5", heartbeat="t2"))
    assert facts.changed("MODIFIED", server(address="10.0.0.5", booted="Target")), "booted"
    deleting = server(address="10.0.0.5", booted="Target")
    deleting["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert facts.changed("MODIFIED", deleting), "being deleted"
    assert facts.changed("DELETED", deleting)
    assert facts.changed("ADDED", server()), "seen anew after a deletion"


def powered(**changes: Any) -> dict[str, Any]:
    """A Server as the power controller sees it, with ``changes`` applied (dotted paths)."""
    body: dict[str, Any] = {
        "metadata": {"name": "s1", "resourceVersion": "1", "annotations": {}},
        "spec": {"accepted": True, "bmc": {"address": "bmc", "protocol": "ipmi"}},
        "status": {
            "power": "on",
            "isClean": False,
            "lastSeen": "2026-01-01T00:00:00Z",
            "conditions": [
                {"type": "PowerManagement", "status": "True", "reason": "BMCAnswers"},
                {"type": "PXEBooted", "status": "True", "reason": "Agent"},
            ],
        },
    }
    for path, value in changes.items():
        *parents, last = path.split("__")
        node = body
        for part in parents:
            node = node[part]
        node[last] = value
    return body


OWN = frozenset({"PowerManagement", "BMCCertificateVerified"})


@pytest.mark.parametrize(
    ("change", "wakes"),
    [
        ({"metadata__resourceVersion": "2"}, False),
        ({"status__power": "off"}, False),
        (
            {
                "status__conditions": [
                    {"type": "PowerManagement", "status": "False", "reason": "BmcUnreachable"},
                    {"type": "PXEBooted", "status": "True", "reason": "Agent"},
                ]
            },
            False,
        ),
        (
            {
                "status__conditions": [
                    {"type": "PowerManagement", "status": "True", "reason": "BMCAnswers"},
                    {"type": "PXEBooted", "status": "True", "reason": "Agent"},
                    {"type": "BMCCertificateVerified", "status": "False", "reason": "Insecure"},
                ]
            },
            False,
        ),
        ({"status__isClean": True}, True),
        ({"status__lastSeen": "2026-01-01T00:01:00Z"}, True),
        ({"spec__accepted": False}, True),
        ({"spec__bmc": {"address": "bmc2", "protocol": "ipmi"}}, True),
        ({"metadata__annotations": {"metal.arges.dev/power-cycle": "now"}}, True),
        ({"metadata__deletionTimestamp": "2026-01-01T00:02:00Z"}, True),
        (
            {
                "status__conditions": [
                    {"type": "PowerManagement", "status": "True", "reason": "BMCAnswers"},
                    {"type": "PXEBooted", "status": "True", "reason": "Target"},
                ]
            },
            True,
        ),
        (
            {
                "status__conditions": [
                    {"type": "PowerManagement", "status": "True", "reason": "BMCAnswers"},
                    {"type": "PXEBooted", "status": "True", "reason": "Agent"},
                    {"type": "PowerCycle", "status": "True", "reason": "Requested"},
                ]
            },
            True,
        ),
    ],
)
def test_power_facts_leave_out_only_the_power_controllers_own_records(
    change: dict[str, Any], wakes: bool
) -> None:
    facts = Facts(lambda body: power_facts(body, OWN))
    assert facts.changed(None, powered()), "first sight"
    assert facts.changed("MODIFIED", powered(**change)) is wakes


NONE: ClassBoot = (None, frozenset())


@pytest.mark.parametrize(
    ("old", "new", "affected"),
    [
        (NONE, (None, frozenset({"a", "b"})), set()),
        ((None, frozenset({"a"})), (None, frozenset({"b"})), set()),
        (NONE, ("virtual-media", frozenset({"a"})), {"a"}),
        (
            ("virtual-media", frozenset({"a", "b"})),
            ("virtual-media", frozenset({"b", "c"})),
            {"a", "c"},
        ),
        (("virtual-media", frozenset({"a"})), ("network", frozenset({"a", "b"})), {"a", "b"}),
        (("virtual-media", frozenset({"a"})), (None, frozenset({"a"})), {"a"}),
        (("virtual-media", frozenset({"a"})), NONE, {"a"}),
    ],
)
def test_boot_affected(old: ClassBoot, new: ClassBoot, affected: set[str]) -> None:
    assert boot_affected(old, new) == affected
