"""Large request bodies decode on a thread, with the process tuned for it only meanwhile:
the garbage collector off and the GIL switch interval short, both as they were afterwards,
whatever the body and however many decode at once."""

from __future__ import annotations

import asyncio
import gc
import sys
from collections.abc import Iterator

import orjson
import pytest

from arges.apiserver.errors import BadRequest
from arges.apiserver.http import params

LARGE = orjson.dumps({"items": [{"name": f"disk-{i}", "size": i} for i in range(20_000)]})


@pytest.fixture
def tuned() -> Iterator[None]:
    interval = sys.getswitchinterval()
    sys.setswitchinterval(0.0005)
    yield
    sys.setswitchinterval(interval)


async def test_what_a_decode_changes_lasts_only_while_it_runs(
    tuned: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert len(LARGE) > params.INLINE_DECODE_BYTES
    seen: list[tuple[float, bool]] = []
    real = params.codec.decode_body

    def decode_body(*args: object, **kw: object) -> object:
        seen.append((sys.getswitchinterval(), gc.isenabled()))
        return real(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(params.codec, "decode_body", decode_body)
    results = await asyncio.gather(
        *(params.decode(LARGE, "application/json") for _ in range(4)),
        params.decode(b"{" + LARGE, "application/json"),
        return_exceptions=True,
    )
    assert all(isinstance(r, dict) for r in results[:4])
    assert isinstance(results[4], BadRequest)
    assert seen and all(
        interval == pytest.approx(params.DECODING_SWITCH_INTERVAL) and not enabled
        for interval, enabled in seen
    )
    assert sys.getswitchinterval() == pytest.approx(0.0005)
    assert gc.isenabled()
