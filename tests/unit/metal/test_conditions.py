"""condition_patch: the status fields a write needs, or None when the object says it already
(Kubernetes API conventions: lastTransitionTime moves only with the status)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from arges.metal.conditions import condition_patch

NOW = dt.datetime(2026, 12, 5, 21, 0, 0, 123456, tzinfo=dt.UTC)
EARLIER = "2026-12-05T20:00:00Z"
LATER = "2026-12-05T21:00:00Z"


def power(**overrides: Any) -> dict[str, Any]:
    condition = {
        "type": "PowerManagement",
        "status": "True",
        "lastTransitionTime": EARLIER,
        "reason": "BMCAnswers",
        "message": "installed: keep it running",
        **overrides,
    }
    return {k: v for k, v in condition.items() if v is not None}


WIPE = {
    "type": "Wipe",
    "status": "True",
    "lastTransitionTime": EARLIER,
    "reason": "Wiped",
    "message": "wiped 1 disk(s)",
}


def server(*conditions: dict[str, Any], **status: Any) -> dict[str, Any]:
    return {"status": {"conditions": list(conditions), **status}}


def ask(obj: dict[str, Any], **kw: Any) -> dict[str, Any] | None:
    args: dict[str, Any] = {
        "kind": "PowerManagement",
        "status": "True",
        "reason": "BMCAnswers",
        "message": "installed: keep it running",
        "extra": {"power": "on"},
        **kw,
    }
    return condition_patch(obj, now=NOW, **args)


@pytest.mark.parametrize(
    ("obj", "kw", "expected"),
    [
        pytest.param(server(WIPE, power(), power="on"), {}, None, id="says it already"),
        pytest.param(
            server(power(), power="off"),
            {},
            {"conditions": [power()], "power": "on"},
            id="an extra field differs",
        ),
        pytest.param(
            server(WIPE, power(), power="on"),
            {"message": "clean and available: power off"},
            {
                "conditions": [WIPE, power(message="clean and available: power off")],
                "power": "on",
            },
            id="message: same status keeps its transition time",
        ),
        pytest.param(
            server(power(), power="on"),
            {"status": "False", "reason": "IPMIError"},
            {
                "conditions": [power(status="False", reason="IPMIError", lastTransitionTime=LATER)],
                "power": "on",
            },
            id="status: the transition time moves",
        ),
        pytest.param(
            server(WIPE, power="on"),
            {},
            {"conditions": [WIPE, power(lastTransitionTime=LATER)], "power": "on"},
            id="absent: appended",
        ),
        pytest.param(
            {},
            {"extra": None},
            {"conditions": [power(lastTransitionTime=LATER)]},
            id="no status at all",
        ),
        pytest.param(
            server(power(observedGeneration=3), power="on"),
            {},
            {"conditions": [power()], "power": "on"},
            id="an observedGeneration the write does not give is dropped",
        ),
        pytest.param(
            server(power(observedGeneration=3), power="on"),
            {"observed_generation": 3},
            None,
            id="the same observedGeneration",
        ),
        pytest.param(
            server(power(), power(), power="on"),
            {},
            None,
            id="an identical duplicate",
        ),
        pytest.param(
            server(power(), power(message="stale"), power="on"),
            {},
            {"conditions": [power(), power()], "power": "on"},
            id="a differing duplicate is set too",
        ),
    ],
)
def test_condition_patch(
    obj: dict[str, Any], kw: dict[str, Any], expected: dict[str, Any] | None
) -> None:
    assert ask(obj, **kw) == expected
