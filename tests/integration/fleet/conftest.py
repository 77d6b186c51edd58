"""A rack of simulated servers beside a real plane (the cluster tests' rack), and a scraper."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.clusters.conftest import Rack, open_rack
from tests.integration.conftest import api_session
from tests.integration.fleet.browser import Browser

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
async def rack(tmp_path: Path) -> AsyncIterator[Rack]:
    async with open_rack(tmp_path) as r:
        yield r


def parse(text: str) -> Samples:
    """Every sample of a Prometheus text exposition, by name and sorted labels."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sample ``name`` with exactly ``labels`` (0 when absent)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def scrape(rack: Rack) -> Samples:
    """/metrics of the rack's plane, on its API port with the admin token."""
    api = rack.plane.api
    assert api is not None
    async with (
        api_session(api.data_dir) as session,
        session.get(f"{api.url}/metrics", headers={"Authorization": f"Bearer {api.token}"}) as resp,
    ):
        assert resp.status == 200, await resp.text()
        assert resp.headers["Content-Type"].startswith("text/plain")
        return parse(await resp.text())


async def http_get(session: aiohttp.ClientSession, url: str, **kw: Any) -> tuple[int, bytes]:
    async with session.get(url, **kw) as resp:
        return resp.status, await resp.read()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    """Headless Chromium (skips where Debian's chromium is absent); screenshots under
    ``tmp_path/screenshots``."""
    b = Browser(tmp_path / "chromium-profile", tmp_path / "screenshots")
    try:
        yield b
    finally:
        b.quit()
