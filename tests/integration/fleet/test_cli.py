"""``arges status`` and ``arges up --log-format json``, as a person runs them."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from arges.cli.status import summary
from arges.kube.resources import SERVERS
from tests.integration.clusters.conftest import Rack, create_cluster
from tests.integration.conftest import eventually

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def arges(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "arges",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_status_shows_the_fleet_and_its_failures(rack: Rack) -> None:
    healthy, broken, _spare = [await rack.add() for _ in range(3)]
    await rack.kube.patch(SERVERS, healthy.uuid, {"spec": {"cordoned": True}})
    await create_cluster(rack.kube, workers=0)
    broken.machine.faults.fail = 1000  # its BMC stops answering
    await rack.kube.patch(SERVERS, broken.uuid, {"metadata": {"labels": {"poke": "1"}}})

    async def failing() -> str | None:
        text = await summary(rack.kube)
        return text if "PowerFailed" in text and "Needing attention: 1" in text else None

    text = await eventually(failing, timeout=30, what="a failing BMC in the summary")
    lines = text.splitlines()
    assert lines[0].startswith("Servers: 3  accepted 3  clean ")
    assert "cordoned 1" in lines[0]
    assert any(
        line.startswith(f"  {broken.uuid}  PowerManagement: BmcUnreachable") for line in lines
    )
    assert any(line.startswith("Clusters: 1 ") for line in lines)
    assert any(line.startswith("  default/demo  ") and "servers ready" in line for line in lines)
    assert len(lines) < 25, "one screen"

    # The command itself, against the rack's API.
    api = rack.plane.api
    assert api is not None
    code, out, err = await arges("status", "--kubeconfig", str(api.kubeconfig_path))
    assert code == 0, err
    assert out.startswith("Servers: 3  accepted 3  ")
    assert "Needing attention: 1" in out and "  default/demo  " in out


async def test_status_without_arges_says_so(tmp_path: Path) -> None:
    code, _, err = await arges("status", "--kubeconfig", str(tmp_path / "missing"))
    assert code != 0 and "is Arges running?" in err


async def test_up_logs_json_and_serves_metrics_on_its_own_port(tmp_path: Path) -> None:
    api_port, metrics_port = free_port(), free_port()
    data = tmp_path / "data"
    log = tmp_path / "stderr.log"
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "arges",
                "up",
                "--data-dir",
                str(data),
                "--api-port",
                str(api_port),
                "--no-boot",
                "--log-format",
                "json",
                "--metrics-port",
                str(metrics_port),
            ],
            stdout=subprocess.PIPE,
            stderr=err,
        )
    try:
        deadline = time.monotonic() + 60
        async with aiohttp.ClientSession() as session:
            while True:
                assert proc.poll() is None, log.read_text()
                try:
                    async with session.get(f"http://127.0.0.1:{metrics_port}/metrics") as resp:
                        body = await resp.text()
                        if "arges_workqueue_depth{" in body:
                            break
                except aiohttp.ClientError:
                    pass
                assert time.monotonic() < deadline, log.read_text()
                await asyncio.sleep(0.2)
        assert 'arges_servers{state="discovered"} 0.0' in body
    finally:
        proc.send_signal(signal.SIGTERM)
        stdout, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, log.read_text()
    assert f"metrics: http://127.0.0.1:{metrics_port}/metrics" in stdout.decode()
    entries = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    assert entries, "it logged"
    assert all(set(e) >= {"time", "level", "logger", "message"} for e in entries)
    assert any(e["logger"] == "arges.apiserver.server" and "ready" in e["message"] for e in entries)
    token = (data / "pki" / "admin.token").read_text().strip()
    assert token not in log.read_text()
