"""Benchmark of the embedded API server: creates, full lists, watch fan-out, memory.

Runs ``arges up`` as a child process (so its peak RSS is its own), installs a Server-like CRD,
and through HTTPS:

1. creates 10,000 objects of about 2 KiB (``--concurrency`` requests in flight);
   then ``--secrets`` Secrets and as many ConfigMaps holding the same 2 KiB (Secrets are
   encrypted at rest, ConfigMaps are not: the difference is the cost of encryption);
2. lists them all (median of 5 full lists, JSON);
3. opens 50 watches, then updates objects at a steady rate and measures, per event and
   watcher, the time from sending the update to the event's arrival;
4. reads the server's peak RSS (VmHWM).

Every figure is printed next to a baseline measured in the same run with the same client:
``GET /version`` requests per second (the cost of HTTPS + aiohttp alone) and an empty list.
Targets from the issue: >= 300 creates/s, full list <= 1.0 s, watch p99 <= 50 ms,
RSS <= 300 MiB. Figures, not assertions: this machine is shared and noisy.

    .venv/bin/python benchmarks/apiserver.py [--objects 10000] [--watchers 50]

``--watch-only`` skips the Secrets, ConfigMaps and lists (the baseline and the creates stay:
the watched objects must exist); ``--rounds N`` measures the watch N times on the same
server and prints each round and their median, for comparisons on a noisy machine:

    .venv/bin/python benchmarks/apiserver.py --watch-only --objects 2000 --rounds 5

``--busy N`` keeps N processes spinning on the CPU while the watches are measured (the issue's
"busy 2-core machine", made the same from run to run); each round then prints the 1-minute
load average beside its figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

GROUP = "bench.arges.dev"
CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"servers.{GROUP}"},
    "spec": {
        "group": GROUP,
        "names": {"plural": "servers", "singular": "server", "kind": "Server"},
        "scope": "Cluster",
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "properties": {
                                    "accepted": {"type": "boolean"},
                                    "hostname": {"type": "string"},
                                    "bmc": {
                                        "type": "object",
                                        "properties": {
                                            "address": {"type": "string"},
                                            "port": {"type": "integer"},
                                        },
                                    },
                                    "hardware": {
                                        "type": "object",
                                        "x-kubernetes-preserve-unknown-fields": True,
                                    },
                                },
                            },
                            "status": {
                                "type": "object",
                                "x-kubernetes-preserve-unknown-fields": True,
                            },
                        },
                    }
                },
            }
        ],
    },
}
PATH = f"/apis/{GROUP}/v1/servers"


def server_object(i: int) -> dict[str, Any]:
    """A Server of about 2 KiB: the inventory a discovered machine carries."""
    return {
        "apiVersion": f"{GROUP}/v1",
        "kind": "Server",
        "metadata": {
            "name": f"4c4c4544-0035-4b10-8036-{i:012x}",
            "labels": {"rack": f"r{i % 40}", "zone": f"z{i % 3}"},
        },
        "spec": {
            "accepted": i % 2 == 0,
            "hostname": f"node-{i}",
            "bmc": {"address": f"10.0.{i // 250}.{i % 250}", "port": 623},
            "hardware": {
                "bios": {"vendor": "Dell Inc.", "version": "2.17.1", "releaseDate": "12/06/2022"},
                "system": {
                    "manufacturer": "Dell Inc.",
                    "productName": "PowerEdge R640",
                    "serialNumber": f"SN{i:08d}",
                    "sku": "SKU=NotProvided;ModelName=R640",
                },
                "compute": {
                    "processors": [
                        {
                            "manufacturer": "Intel(R) Corporation",
                            "productName": "Intel(R) Xeon(R) Gold 6130 CPU",
                            "speed": 2100,
                            "coreCount": 16,
                            "threadCount": 32,
                        }
                        for _ in range(2)
                    ]
                },
                "memory": {
                    "totalSize": 412316860416,
                    "modules": [
                        {"size": 34359738368, "speed": 2666, "manufacturer": "Samsung"}
                        for _ in range(4)
                    ],
                },
                "storage": {
                    "devices": [
                        {
                            "name": f"/dev/sd{c}",
                            "size": 960197124096,
                            "type": "SSD",
                            "model": "SAMSUNG MZ7LH960",
                            "serial": f"S4{i:06d}{c}",
                            "wwid": f"naa.5002538e{i:08x}",
                        }
                        for c in "abc"
                    ]
                },
                "network": {
                    "interfaces": [
                        {
                            "name": f"eno{n}",
                            "mac": f"24:6e:96:{i % 256:02x}:00:{n:02x}",
                            "addresses": [f"10.1.{i // 250}.{i % 250}/24"],
                        }
                        for n in range(4)
                    ]
                },
            },
        },
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def run(args: argparse.Namespace) -> None:
    data = Path(tempfile.mkdtemp(prefix="arges-bench-"))
    port = free_port()
    log = (data / "server.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "arges",
            "--log-level",
            "warning",
            "up",
            "--data-dir",
            str(data),
            "--api-port",
            str(port),
            # The API server alone: no boot ports to collide with other runs on the host.
            "--no-boot",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        while not (data / "kubeconfig").exists():
            await asyncio.sleep(0.05)
        tls = ssl.create_default_context(cafile=str(data / "pki" / "ca.crt"))
        token = (data / "pki" / "admin.token").read_text().strip()
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        base = f"https://127.0.0.1:{port}"
        connector = aiohttp.TCPConnector(ssl=tls, limit=0)
        async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
            await bench(session, base, args, proc.pid)
    finally:
        proc.terminate()
        proc.wait()
        log.close()
        shutil.rmtree(data, ignore_errors=True)


async def timed_requests(
    session: aiohttp.ClientSession, requests: list[tuple[str, str, Any]], concurrency: int
) -> float:
    queue: asyncio.Queue[tuple[str, str, Any]] = asyncio.Queue()
    for r in requests:
        queue.put_nowait(r)

    async def worker() -> None:
        while not queue.empty():
            method, url, body = queue.get_nowait()
            data = None if body is None else json.dumps(body)
            async with session.request(method, url, data=data) as resp:
                await resp.read()
                if resp.status >= 300:
                    raise RuntimeError(f"{method} {url}: {resp.status}")

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - start


async def bench(
    session: aiohttp.ClientSession, base: str, args: argparse.Namespace, pid: int
) -> None:
    async with session.post(
        base + "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", data=json.dumps(CRD)
    ) as resp:
        assert resp.status == 201, await resp.text()
    size = len(json.dumps(server_object(0)))
    print(f"object size: {size} bytes; objects: {args.objects}; concurrency: {args.concurrency}")

    n_base = 3000
    t = await timed_requests(session, [("GET", base + "/version", None)] * n_base, args.concurrency)
    baseline_rps = n_base / t
    print(f"baseline  GET /version: {baseline_rps:8.0f} req/s")

    creates = [("POST", base + PATH, server_object(i)) for i in range(args.objects)]
    t = await timed_requests(session, creates, args.concurrency)
    rate = args.objects / t
    print(f"  server RSS after creates: {rss_mib(pid):.0f} MiB")
    print(
        f"create:                 {rate:8.0f} objects/s  ({rate / baseline_rps:.2f} x baseline)"
        f"  target >= 300"
    )
    if not args.watch_only:
        await creates_and_lists(session, base, args, pid)
    p99s = []
    spinners = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)
    ]
    try:
        if spinners:
            # The load average follows in about a minute: let it show the spinners.
            await asyncio.sleep(30)
        for _ in range(args.rounds):
            p99s.append(await watch_round(session, base, args))
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()
    if args.rounds > 1:
        print(
            f"watch p99 over {args.rounds} rounds: median {statistics.median(p99s):.1f} ms, "
            f"range {min(p99s):.1f}-{max(p99s):.1f} ms  target p99 <= 50 ms"
        )
    print(f"server peak RSS: {peak_rss_mib(pid):.0f} MiB  target <= 300 MiB")


async def creates_and_lists(
    session: aiohttp.ClientSession, base: str, args: argparse.Namespace, pid: int
) -> None:
    payload = json.dumps(server_object(0)["spec"])
    for kind, plural, field in (
        ("ConfigMap", "configmaps", "data"),
        ("Secret", "secrets", "stringData"),
    ):
        made = [
            (
                "POST",
                f"{base}/api/v1/namespaces/default/{plural}",
                {
                    "apiVersion": "v1",
                    "kind": kind,
                    "metadata": {"name": f"b{i}"},
                    field: {"v": payload},
                },
            )
            for i in range(args.secrets)
        ]
        t = await timed_requests(session, made, args.concurrency)
        print(f"create {kind:<10}       {args.secrets / t:8.0f} objects/s  (2 KiB each)")

    empty = []
    for _ in range(5):
        start = time.perf_counter()
        async with session.get(base + "/api/v1/namespaces/default/configmaps") as resp:
            await resp.read()
        empty.append(time.perf_counter() - start)
    lists = []
    for _ in range(5):
        start = time.perf_counter()
        async with session.get(base + PATH) as resp:
            body = await resp.read()
        lists.append(time.perf_counter() - start)
    count = len(json.loads(body)["items"])
    print(
        f"full list ({count} items, {len(body) / 2**20:.1f} MiB): median "
        f"{statistics.median(lists):.3f} s  (empty list {statistics.median(empty) * 1000:.1f} ms)"
        f"  target <= 1.0 s"
    )

    print(f"  server RSS after lists: {rss_mib(pid):.0f} MiB")


async def watch_round(session: aiohttp.ClientSession, base: str, args: argparse.Namespace) -> float:
    """Open the watches, update at the steady rate, print the delivery figures; returns p99 (ms)."""
    async with session.get(base + PATH, params={"limit": "1"}) as resp:
        rv = (await resp.json())["metadata"]["resourceVersion"]
    latencies: list[float] = []
    expected = args.updates * args.watchers
    done = asyncio.Event()
    ready = 0

    async def watcher() -> None:
        nonlocal ready
        async with session.get(
            base + PATH,
            params={"watch": "true", "resourceVersion": rv},
            timeout=aiohttp.ClientTimeout(total=None),
        ) as resp:
            ready += 1
            async for line in resp.content:
                now = time.perf_counter()
                event = json.loads(line)
                sent = event["object"]["metadata"].get("annotations", {}).get("bench/sent")
                if sent is not None:
                    latencies.append(now - float(sent))
                    if len(latencies) >= expected:
                        done.set()
                        return

    tasks = [asyncio.create_task(watcher()) for _ in range(args.watchers)]
    while ready < args.watchers:
        await asyncio.sleep(0.01)
    interval = 1.0 / args.update_rate
    start = time.perf_counter()
    for i in range(args.updates):
        target = start + i * interval
        await asyncio.sleep(max(0.0, target - time.perf_counter()))
        name = server_object(i)["metadata"]["name"]
        patch = {"metadata": {"annotations": {"bench/sent": repr(time.perf_counter())}}}
        async with session.patch(
            base + f"{PATH}/{name}",
            data=json.dumps(patch),
            headers={"Content-Type": "application/merge-patch+json"},
        ) as r:
            await r.read()
    try:
        await asyncio.wait_for(done.wait(), 60)
    finally:
        for task in tasks:
            task.cancel()
    ms = [x * 1000 for x in latencies]
    print(
        f"watch delivery ({args.watchers} watchers, {args.updates} updates at "
        f"{args.update_rate}/s, {len(ms)} events): p50 {percentile(ms, 50):.1f} ms, "
        f"p99 {percentile(ms, 99):.1f} ms  target p99 <= 50 ms  "
        f"(load {os.getloadavg()[0]:.1f}, {args.busy} spinning)"
    )
    return percentile(ms, 99)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=10000)
    parser.add_argument("--secrets", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--watchers", type=int, default=50)
    parser.add_argument("--updates", type=int, default=500)
    parser.add_argument("--update-rate", type=float, default=50.0)
    parser.add_argument("--watch-only", action="store_true")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument(
        "--busy", type=int, default=0, help="processes spinning on the CPU during the watches"
    )
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
