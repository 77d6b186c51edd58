"""OwnWrites: a controller's own last write, preferred only while the cache lags behind it."""

from __future__ import annotations

from typing import Any

import pytest

from arges.controllers.ownwrites import OwnWrites


def at(rv: str, **status: Any) -> dict[str, Any]:
    return {"metadata": {"name": "s", "resourceVersion": rv}, "status": status}


V1, V2, V3 = at("1"), at("2", power="on"), at("3", power="off")


@pytest.mark.parametrize(
    ("written", "cached", "expected"),
    [
        # Nothing written yet: the cache's copy.
        (None, V1, V1),
        # The cache still holds what the write replaced: the write's result.
        ((V1, V2), V1, V2),
        # The cache has the write itself, or a later change by anyone: the cache's copy.
        ((V1, V2), V2, V2),
        ((V1, V2), V3, V3),
        # The cache has no copy (not listed yet, or deleted): nothing to write on.
        ((V1, V2), None, None),
        # A write that changed nothing (update_status returns its input) is not kept.
        ((V1, V1), V1, V1),
    ],
)
def test_the_copy_to_write_on(
    written: tuple[dict[str, Any], dict[str, Any]] | None,
    cached: dict[str, Any] | None,
    expected: dict[str, Any] | None,
) -> None:
    own = OwnWrites()
    if written is not None:
        own.wrote("s", *written)
    assert own.current("s", cached) == expected


def test_once_the_cache_moves_on_the_write_is_dropped_for_good() -> None:
    own = OwnWrites()
    own.wrote("s", V1, V2)
    assert own.current("s", V3) is V3
    # Even were the cache to show V1 again (it cannot), V2 is no longer offered.
    assert own.current("s", V1) is V1


def test_forget_and_other_names() -> None:
    own = OwnWrites()
    own.wrote("s", V1, V2)
    assert own.current("t", V1) is V1
    own.forget("s")
    assert own.current("s", V1) is V1


def test_a_write_made_without_a_copy_is_not_kept() -> None:
    own = OwnWrites()
    own.wrote("s", None, V2)
    assert own.current("s", V1) is V1
