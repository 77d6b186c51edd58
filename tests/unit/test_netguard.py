"""Repeated failures log one line per cause per interval (#23)."""

from __future__ import annotations

import logging
import resource

from arges.netguard import ConnectionLimits, OncePerInterval, raise_open_files_limit


def _record(msg: str, level: int = logging.ERROR, exc: type[BaseException] | None = None):
    exc_info = (exc, exc(), None) if exc else None
    return logging.LogRecord("x", level, __file__, 1, msg, None, exc_info)


def test_one_record_per_cause_per_interval_then_a_count() -> None:
    now = [0.0]
    guard = OncePerInterval(60, clock=lambda: now[0])
    passed = [guard.filter(_record("accept failed: %s", exc=OSError)) for _ in range(1000)]
    assert passed.count(True) == 1
    assert guard.filter(_record("another cause"))
    assert guard.filter(_record("accept failed: %s", exc=ValueError)), "another exception type"
    assert guard.filter(_record("chatty", level=logging.INFO))
    assert guard.filter(_record("chatty", level=logging.INFO)), "info is never held back"
    now[0] = 61
    record = _record("accept failed: %s", exc=OSError)
    assert guard.filter(record)
    assert "999 more like this" in str(record.msg)


def test_limits_count_per_client_and_in_all() -> None:
    limits = ConnectionLimits(per_client=2, total=3)
    assert limits.admit("a") and limits.admit("a")
    assert not limits.admit("a")
    assert limits.admit("b")
    assert not limits.admit("c"), "total reached"
    limits.release("a")
    assert limits.admit("c")
    assert limits.refused == 2


def test_the_open_files_limit_is_raised_never_lowered() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        lower = min(soft, 512)
        resource.setrlimit(resource.RLIMIT_NOFILE, (lower, hard))
        raised = raise_open_files_limit(lower + 100)
        assert raised == resource.getrlimit(resource.RLIMIT_NOFILE)[0] == min(lower + 100, hard)
        assert raise_open_files_limit(10) == raised, "never lowered"
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
