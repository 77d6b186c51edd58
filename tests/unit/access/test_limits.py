"""Rate limits per client, and one log line per client for a sweep."""

from __future__ import annotations

import logging

import pytest

from arges.access.limits import RateLimiter, RefusalLog


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_each_client_has_a_burst_then_a_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=2.0, burst=5.0, clock=clock)
    assert [limiter.allow("a") for _ in range(7)] == [True] * 5 + [False] * 2
    assert limiter.allow("b"), "another client has its own budget"
    clock.now = 1.0
    assert [limiter.allow("a") for _ in range(3)] == [True, True, False]
    assert limiter.retry_after() == 1


def test_a_sweep_is_one_line_per_client(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    refusals = RefusalLog(window=60.0, clock=clock)
    with caplog.at_level(logging.WARNING, logger="arges.access"):
        for i in range(3000):
            refusals.refused("10.0.0.66", "/configdata", f"uuid-{i % 1000}", "no such server")
        refusals.limited("10.0.0.66", "/configdata")
        refusals.refused("10.0.0.7", "/configdata", "u", "no credential")
        assert len(caplog.records) == 2
        assert "10.0.0.66" in caplog.records[0].getMessage()
        clock.now = 61.0
        refusals.refused("10.0.0.8", "/ipxe", "u", "no credential")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 4
    assert "2999 more request(s) from 10.0.0.66 refused" in lines[2]
    assert "1 more over the rate limit; 1000 distinct UUID(s)" in lines[2]
    assert "10.0.0.8" in lines[3]
