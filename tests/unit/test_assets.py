"""Which local files an Environment's ``file://`` URL may name: an ``--asset-dir`` around the
data directory grants nothing inside it; the agent image's own files (inside it) stay usable."""

from __future__ import annotations

from pathlib import Path

import pytest

from arges.assets import AssetCache, AssetError


@pytest.fixture
def layout(tmp_path: Path) -> Path:
    for name in ("data/pki/ca.key", "data/state.db", "data/agent/k1/vmlinuz", "images/vmlinuz"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(name.encode())
    return tmp_path


@pytest.mark.parametrize(
    ("name", "granted"),
    [
        ("images/vmlinuz", True),
        ("data/agent/k1/vmlinuz", True),
        ("data/pki/ca.key", False),
        ("data/state.db", False),
        ("data/agent/k1/../../pki/ca.key", False),
    ],
)
async def test_a_root_around_the_data_directory_grants_nothing_inside_it(
    layout: Path, name: str, granted: bool
) -> None:
    data = layout / "data"
    cache = AssetCache(data / "assets", [layout, data / "agent" / "k1" / "vmlinuz"], private=[data])
    url = f"file://{layout}/{name}"
    if granted:
        cached = await cache.ensure("env", "kernel", url, None)
        assert cached.path.read_bytes() == (layout / name).resolve().read_bytes()
        return
    with pytest.raises(AssetError) as refused:
        await cache.ensure("env", "kernel", url, None)
    assert refused.value.reason == "URLNotAllowed"
    assert f"data directory ({data}:" in refused.value.message
    assert cache.cached("env", "kernel") is None, "nothing was read"
