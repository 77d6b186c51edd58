"""Superseded agent images and packages are removed once a new image is built."""

from __future__ import annotations

from pathlib import Path

from arges.agent.image.build import prune


def test_only_the_current_image_and_its_packages_stay(tmp_path: Path) -> None:
    root = tmp_path / "agent"
    for name in ("507be8bbb70a6dda", "0123456789abcdef", "notes"):
        (root / name).mkdir(parents=True)
        (root / name / "vmlinuz").write_bytes(b"k")
    debs = root / "debs"
    debs.mkdir()
    for name in ("libc6_2.36-9_amd64.deb", "libc6_2.36-8_amd64.deb", "README"):
        (debs / name).write_bytes(b"d")

    prune(root, "507be8bbb70a6dda", debs, {"libc6_2.36-9_amd64.deb"})

    assert sorted(p.name for p in root.iterdir()) == ["507be8bbb70a6dda", "debs", "notes"]
    assert sorted(p.name for p in debs.iterdir()) == ["README", "libc6_2.36-9_amd64.deb"]
