"""Restarts and kill -9: nothing acknowledged is lost, watches resume exactly where they were."""

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

from arges.cli.running import BOOT_RECORD, running_boot
from tests.integration.conftest import Api, api_session, eventually

pytestmark = pytest.mark.slow
CM = "/api/v1/namespaces/default/configmaps"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Process:
    """``arges up`` as a child process."""

    def __init__(self, data: Path, port: int, log: Path) -> None:
        self.data, self.port, self.log = data, port, log
        self.proc: subprocess.Popen[bytes] | None = None
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            self.tftp_port = int(s.getsockname()[1])

    def agent_image(self) -> Path:
        """Stand-in agent kernel and initramfs, so ``up`` does not build the real image."""
        directory = self.data.parent / "agent-image"
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "vmlinuz").write_bytes(b"kernel")
        (directory / "initramfs.img").write_bytes(b"initramfs")
        return directory

    async def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "arges",
                    "up",
                    "--data-dir",
                    str(self.data),
                    "--api-port",
                    str(self.port),
                    "--agent-image",
                    str(self.agent_image()),
                    # Free ports rather than 8081/69/67: other test runs on the host may
                    # hold those, and these tests are about the state, not the boot ports.
                    "--http-port",
                    "0",
                    "--tftp-port",
                    str(self.tftp_port),
                    "--dhcp-mode",
                    "off",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    if (self.data / "kubeconfig").exists():
                        return
            except OSError:
                pass
            await asyncio.sleep(0.1)
        raise AssertionError(f"arges up did not start:\n{self.log.read_text()}")

    def signal(self, sig: int) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=30)


@pytest.fixture
async def server(tmp_path: Path):
    proc = Process(tmp_path / "data", free_port(), tmp_path / "arges.log")
    await proc.start()
    yield proc
    if proc.proc is not None and proc.proc.poll() is None:
        proc.signal(signal.SIGKILL)


def client(server: Process, session: aiohttp.ClientSession) -> Api:
    token = (server.data / "pki" / "admin.token").read_text().strip()
    return Api(session, f"https://127.0.0.1:{server.port}", token)


async def test_sigterm_shuts_down_cleanly_and_state_survives(server: Process) -> None:
    async with api_session(server.data) as session:
        api = client(server, session)
        _, made = await api.post(
            CM,
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "keep"},
                "data": {"a": "b"},
            },
        )
    # What arges lab up reads: this Arges' boot settings, for as long as it runs.
    told = await eventually(lambda: running_boot(server.data), what="the boot record")
    assert told is not None and told.address and told.dhcp_mode is None
    assert server.signal(signal.SIGTERM) == 0
    assert not (server.data / BOOT_RECORD).exists(), "a stopped Arges leaves no record"
    await server.start()
    async with api_session(server.data) as session:
        api = client(server, session)
        status, got = await api.get(f"{CM}/keep")
    assert status == 200
    assert got["metadata"]["uid"] == made["metadata"]["uid"]
    assert got["metadata"]["resourceVersion"] == made["metadata"]["resourceVersion"]


async def test_kill_9_loses_nothing_acknowledged_and_watches_resume(server: Process) -> None:
    acked: dict[str, tuple[str, int]] = {}
    seen: list[int] = []
    last_rv = "0"

    async def watcher(api: Api, stop: asyncio.Event) -> None:
        nonlocal last_rv
        while not stop.is_set():
            try:
                async with api.session.get(
                    api.base + CM,
                    headers=api.headers,
                    params={"watch": "true", "resourceVersion": last_rv},
                ) as resp:
                    async for line in resp.content:
                        event = json.loads(line)
                        assert event["type"] != "ERROR", event
                        rv = event["object"]["metadata"]["resourceVersion"]
                        seen.append(int(rv))
                        last_rv = rv
            except (aiohttp.ClientError, ConnectionError):
                await asyncio.sleep(0.1)

    async def writer(api: Api, prefix: str, count: int) -> None:
        for i in range(count):
            name = f"{prefix}-{i}"
            try:
                status, body = await api.post(
                    CM, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}}
                )
            except (aiohttp.ClientError, ConnectionError):
                return
            if status == 201:
                acked[name] = (body["metadata"]["uid"], int(body["metadata"]["resourceVersion"]))

    async with api_session(server.data) as session:
        api = client(server, session)
        _, listed = await api.get(CM)
        last_rv = listed["metadata"]["resourceVersion"]
        stop = asyncio.Event()
        watching = asyncio.create_task(watcher(api, stop))
        writing = asyncio.create_task(writer(api, "before", 100000))
        while len(acked) < 150:
            await asyncio.sleep(0.01)
        server.signal(signal.SIGKILL)
        await writing
        await server.start()
        await writer(api, "after", 50)
        final_rv = max(rv for _, rv in acked.values())
        async with asyncio.timeout(20):
            while not seen or seen[-1] < final_rv:
                await asyncio.sleep(0.05)
        stop.set()
        watching.cancel()
        _status, listed = await api.get(CM)
    stored = {i["metadata"]["name"]: i["metadata"]["uid"] for i in listed["items"]}
    missing = [n for n, (uid, _) in acked.items() if stored.get(n) != uid]
    assert not missing, f"acknowledged but lost after kill -9: {missing[:5]}"
    assert seen == sorted(set(seen)), "the watch repeated or reordered events"
    assert {rv for _, rv in acked.values()} <= set(seen), "the watch missed acknowledged writes"
