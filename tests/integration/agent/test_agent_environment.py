"""The built-in ``agent`` Environment: from a prebuilt image directory, or left out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from arges.api.environment import BUILT_IN
from arges.cli.agent import agent_environment
from arges.kube.resources import ENVIRONMENTS
from arges.plane import ManagementPlane, PlaneConfig
from tests.integration.conftest import eventually, sha512


def prebuilt(directory: Path) -> Path:
    directory.mkdir(parents=True)
    (directory / "vmlinuz").write_bytes(b"kernel " * 100)
    (directory / "initramfs.img").write_bytes(b"initramfs " * 100)
    return directory


def test_a_directory_without_an_image_leaves_the_environment_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty").mkdir()
    assert agent_environment(tmp_path / "data", tmp_path / "empty") is None
    err = capsys.readouterr().err
    assert "warning: no agent image" in err and "vmlinuz" in err and "--agent-image" in err


@pytest.fixture
async def plane(tmp_path: Path) -> AsyncIterator[ManagementPlane]:
    spec = agent_environment(tmp_path / "data", prebuilt(tmp_path / "image"))
    assert spec is not None
    p = ManagementPlane(PlaneConfig(data_dir=tmp_path / "data", api_port=0, agent_environment=spec))
    await p.start()
    yield p
    await p.stop()


async def test_a_prebuilt_image_becomes_the_ready_built_in_agent_environment(
    plane: ManagementPlane, tmp_path: Path
) -> None:
    assert plane.kube is not None
    kube = plane.kube

    async def ready() -> dict | None:
        env = await kube.get(ENVIRONMENTS, "agent")
        conditions = (env.get("status") or {}).get("conditions") or []
        return (
            env if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions) else None
        )

    env = await eventually(ready)
    assert env["metadata"]["annotations"][BUILT_IN] == "true"
    kernel = env["spec"]["kernel"]
    assert kernel["url"] == (tmp_path / "image" / "vmlinuz").as_uri()
    assert kernel["sha512"] == sha512(tmp_path / "image" / "vmlinuz")
    assert kernel["args"] == ["console=ttyS0,115200n8", "console=tty0"]
    assert env["spec"]["initrd"]["sha512"] == sha512(tmp_path / "image" / "initramfs.img")
