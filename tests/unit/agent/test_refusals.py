"""An agent whose credential Arges keeps refusing reboots for a new one, and only then."""

from __future__ import annotations

import pytest

from arges.agent.client import HttpError
from arges.agent.main import Refusals


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_credential_refused_for_long_enough_reboots_the_machine() -> None:
    clock = Clock()
    reboots: list[float] = []
    refusals = Refusals(patience=120.0, clock=clock, reboot=lambda: reboots.append(clock.now))
    answers: list[HttpError | str] = []

    def attempt() -> str:
        answer = answers.pop(0)
        if isinstance(answer, HttpError):
            raise answer
        return answer

    watched = refusals(attempt)
    for now, answer in ((0.0, HttpError(403, "forbidden")), (100.0, HttpError(403, "x"))):
        clock.now = now
        answers.append(answer)
        with pytest.raises(HttpError):
            watched()
    assert reboots == []
    clock.now, answers[:] = 110.0, ["ok"]
    assert watched() == "ok", "a success starts the count again"
    for now, status in ((200.0, 403), (250.0, 503), (320.0, 403)):
        clock.now = now
        answers.append(HttpError(status, "no"))
        with pytest.raises(HttpError):
            watched()
    assert reboots == [320.0], "120 s of refusals since 200 s; other errors do not count"
