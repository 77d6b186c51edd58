"""The agent image, built once per test session from the real Debian packages.

Packages are kept in the repository's ``.cache/agent-debs`` between sessions (only the
download is cached: the image itself is built afresh every session).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from arges.agent.image import Image, ensure

DEBS = Path(__file__).parents[3] / ".cache" / "agent-debs"


@dataclass(frozen=True)
class Built:
    image: Image
    seconds: float
    data_dir: Path


@pytest.fixture(scope="session")
def agent_image(tmp_path_factory: pytest.TempPathFactory) -> Built:
    data = tmp_path_factory.mktemp("agent-image")
    started = time.monotonic()
    image = ensure(data, DEBS)
    seconds = time.monotonic() - started
    print(
        f"\n[figure] agent image build: {seconds:.1f} s, initramfs "
        f"{image.initrd.stat().st_size / 2**20:.1f} MiB, kernel "
        f"{image.kernel.stat().st_size / 2**20:.1f} MiB"
    )
    return Built(image, seconds, data)
