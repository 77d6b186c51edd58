"""Benchmark of the fleet views: /metrics and the dashboard's pages with many servers.

Runs a plane in this process (API server, controllers, dashboard; no boot services), creates
``--servers`` Servers with an inventory, a ServerClass membership and a few Events each, waits
until the dashboard's mirrors and the controllers' cache hold them all, and then times, over
HTTPS on the API port (median and maximum of ``--runs``):

- ``GET /metrics`` (the Prometheus text, with every family);
- the dashboard's overview, servers table (all rows), servers table filtered, and one server.

Figures, not assertions: this machine is shared and noisy.

    .venv/bin/python benchmarks/fleetviews.py [--servers 500] [--runs 20]
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from arges.kube.resources import SERVERS
from arges.plane import ManagementPlane, PlaneConfig

HARDWARE = {
    "system": {"manufacturer": "Dell Inc.", "productName": "PowerEdge R650", "serialNumber": "X"},
    "compute": {"processorCount": 2, "totalCoreCount": 64, "totalThreadCount": 128},
    "memory": {"totalSize": 512 * 2**30, "moduleCount": 16},
    "storage": {
        "deviceCount": 2,
        "devices": [
            {"name": "nvme0n1", "type": "NVMe", "size": 3_840_000_000_000},
            {"name": "nvme1n1", "type": "NVMe", "size": 3_840_000_000_000},
        ],
    },
    "network": {
        "interfaceCount": 2,
        "interfaces": [{"name": "eno1", "mac": "aa:bb:cc:00:00:01", "link": "up"}],
    },
}


async def timed(session: aiohttp.ClientSession, url: str, runs: int, **kw: Any) -> str:
    times = []
    size = 0
    for _ in range(runs):
        started = time.perf_counter()
        async with session.get(url, **kw) as resp:
            body = await resp.read()
            assert resp.status == 200, (url, resp.status)
        times.append(time.perf_counter() - started)
        size = len(body)
    return (
        f"median {statistics.median(times) * 1000:7.1f} ms  max {max(times) * 1000:7.1f} ms  "
        f"{size / 1024:7.1f} KiB"
    )


async def main(servers: int, runs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        plane = ManagementPlane(PlaneConfig(data_dir=Path(tmp), api_port=0))
        await plane.start()
        try:
            assert plane.kube is not None and plane.api is not None
            kube = plane.kube
            started = time.perf_counter()
            sem = asyncio.Semaphore(16)

            async def make(i: int) -> None:
                name = f"4c4c4544-0000-4000-8000-{i:012x}"
                async with sem:
                    body = await kube.create(
                        SERVERS,
                        {
                            "metadata": {"name": name, "labels": {"rack": f"r{i % 20}"}},
                            "spec": {"accepted": i % 10 != 0, "cordoned": i % 50 == 0},
                        },
                    )
                    hardware = {**HARDWARE, "system": {**HARDWARE["system"], "uuid": name}}
                    await kube.patch(
                        SERVERS,
                        name,
                        {"status": {"hardware": hardware, "isClean": i % 3 == 0, "power": "off"}},
                        subresource="status",
                    )
                    await kube.event(body, "Registered", f"discovered server {i}")

            await asyncio.gather(*(make(i) for i in range(servers)))
            print(f"{servers} servers created in {time.perf_counter() - started:.1f} s")
            dashboard = plane.dashboard
            assert dashboard is not None
            while len(dashboard.informers.objects(SERVERS)) < servers or (
                len(list(plane.metrics.servers())) < servers
            ):
                await asyncio.sleep(0.2)
            tls = ssl.create_default_context(cafile=str(Path(tmp) / "pki" / "ca.crt"))
            jar = aiohttp.CookieJar(unsafe=True)
            async with aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=tls), cookie_jar=jar
            ) as session:
                base = plane.api.url
                auth = {"Authorization": f"Bearer {plane.api.token}"}
                async with session.post(f"{base}/ui/login", data={"token": plane.api.token}):
                    pass
                one = "4c4c4544-0000-4000-8000-000000000007"
                metrics = await timed(session, base + "/metrics", runs, headers=auth)
                print(f"{'GET /metrics':28s} {metrics}")
                for label, path in [
                    ("overview", "/ui"),
                    ("servers (all rows)", "/ui/servers"),
                    ("servers ?label=rack=r3", "/ui/servers?label=rack%3Dr3"),
                    ("one server", f"/ui/servers/{one}"),
                ]:
                    print(f"{label:28s} {await timed(session, base + path, runs)}")
        finally:
            await plane.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", type=int, default=500)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    asyncio.run(main(args.servers, args.runs))
