"""A whole management plane (API server + controllers) per test."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from arges.api.environment import Asset, EnvironmentSpec, Kernel
from arges.kube.client import KubeClient
from arges.kube.resources import SERVERS
from arges.plane import ManagementPlane, PlaneConfig


def make_assets(directory: Path) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    kernel, initrd = directory / "vmlinuz", directory / "initrd.img"
    kernel.write_bytes(b"kernel " * 1000)
    initrd.write_bytes(b"initrd " * 5000)
    return kernel, initrd


def sha512(path: Path) -> str:
    return hashlib.sha512(path.read_bytes()).hexdigest()


@pytest.fixture
async def plane(tmp_path: Path) -> AsyncIterator[ManagementPlane]:
    kernel, initrd = make_assets(tmp_path / "talos")
    spec = EnvironmentSpec(
        kernel=Kernel(url=kernel.as_uri(), sha512=sha512(kernel), args=["talos.platform=metal"]),
        initrd=Asset(url=initrd.as_uri(), sha512=sha512(initrd)),
    )
    p = ManagementPlane(
        PlaneConfig(data_dir=tmp_path / "data", api_port=0, default_environment=spec)
    )
    await p.start()
    yield p
    await p.stop()


@pytest.fixture
def kube(plane: ManagementPlane) -> KubeClient:
    assert plane.kube is not None
    return plane.kube


HARDWARE: dict[str, Any] = {
    "system": {"uuid": "", "manufacturer": "QEMU", "productName": "Standard PC"},
    "compute": {
        "processorCount": 1,
        "totalCoreCount": 2,
        "totalThreadCount": 2,
        "processors": [{"manufacturer": "AMD", "coreCount": 2, "threadCount": 2}],
    },
    "memory": {"totalSize": 2 * 2**30},
    "storage": {"deviceCount": 1, "devices": [{"name": "vda", "type": "virtio", "size": 10**10}]},
}


async def register(
    kube: KubeClient, name: str, *, accepted: bool = False, clean: bool = False
) -> dict[str, Any]:
    """What the agent's registration does: create the Server and report its inventory."""
    await kube.create(SERVERS, {"metadata": {"name": name}, "spec": {"accepted": accepted}})
    return await kube.patch(
        SERVERS,
        name,
        {
            "status": {
                "hardware": {**HARDWARE, "system": {**HARDWARE["system"], "uuid": name}},
                "isClean": clean,
                "hostname": f"host-{name[:4]}",
            }
        },
        subresource="status",
    )
