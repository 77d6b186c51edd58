"""The lab's stand-in image: the agent image plus the fake apid, whose Python (the image's
own, with only the image's files) serves Talos' API to Arges' client."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from arges.lab.standin import image as standin
from arges.talos import secrets
from arges.talos.api import TalosApi
from arges.talos.configgen import ClusterInput
from arges.talos.render import render
from arges.talos.talosconfig import credentials, talosconfig
from tests.integration.agent.conftest import Built

pytestmark = pytest.mark.slow

SERVE = """
import asyncio, sys
from arges.lab.standin.node import admin_kubeconfig, facts, identity
from arges.talos.fakeapi import FakeTalosNode

async def main():
    node = facts(open(sys.argv[1]).read(), ["127.0.0.1"])
    cert = await identity(node, trustd_port=0)
    apid = FakeTalosNode(cert, address="127.0.0.1", kubeconfig=admin_kubeconfig(node),
                         talos_version=node.talos_version)
    await apid.start()
    print(apid.port, flush=True)
    await asyncio.sleep(120)

asyncio.run(main())
"""


def unpack(data: bytes, into: Path) -> None:
    """Unpack a gzip'd archive as the kernel does: no directory it does not list."""
    subprocess.run(["sh", "-c", "zcat | cpio -imu --quiet"], input=data, cwd=into, check=True)


async def test_the_stand_in_image_serves_talos_api_with_its_own_python(
    agent_image: Built, tmp_path: Path
) -> None:
    started = time.monotonic()
    built = standin.ensure(agent_image.data_dir, agent_image.image.initrd)
    took = time.monotonic() - started
    agent_bytes = agent_image.image.initrd.read_bytes()
    data = built.initrd.read_bytes()
    print(
        f"\n[figure] stand-in image build: {took:.1f} s, initramfs {len(data) / 2**20:.1f} MiB "
        f"(the agent's {len(agent_bytes) / 2**20:.1f} MiB and the apid's "
        f"{(len(data) - len(agent_bytes)) / 2**20:.1f} MiB)"
    )
    assert data.startswith(agent_bytes), "the agent's initramfs, then the overlay"
    assert standin.ensure(agent_image.data_dir, agent_image.image.initrd).reused

    root = tmp_path / "root"
    root.mkdir()
    unpack(agent_bytes, root)
    unpack(data[len(agent_bytes) :], root)
    assert b"arges.lab.standin.apid" in (root / "init").read_bytes()
    assert b"starting the agent" in (root / "init-agent").read_bytes()

    bundle = secrets.generate()
    spec = ClusterInput("lab", "https://127.0.0.1:6443")
    config = tmp_path / "controlplane.yaml"
    config.write_text(render(bundle, "controlplane", spec))
    libs = root / "lib/x86_64-linux-gnu"
    usr_libs = root / "usr/lib/x86_64-linux-gnu"
    process = await asyncio.create_subprocess_exec(
        str(libs / "ld-linux-x86-64.so.2"),
        "--library-path",
        f"{libs}:{usr_libs}",
        str(root / "usr/bin/python3.11"),
        "-S",
        "-c",
        SERVE,
        str(config),
        env={
            "PYTHONHOME": str(root / "usr"),
            "PYTHONPATH": f"{root / 'usr/lib/arges'}:{root / 'usr/lib/arges-vendor'}",
            "PATH": os.environ["PATH"],
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None and process.stderr is not None
        line = await asyncio.wait_for(process.stdout.readline(), 60)
        if not line:
            pytest.fail((await process.stderr.read()).decode())
        port = int(line)
        api = TalosApi(credentials(talosconfig(bundle, "lab")), timeout=10)
        assert await api.version("127.0.0.1", port) == "v1.11.6"
        assert "admin@lab" in await api.kubeconfig("127.0.0.1", port)
    finally:
        process.kill()
        await process.wait()
    assert sys.version_info[:2] == (3, 11)
