"""Benchmark of large request bodies: what decoding costs and whether it stalls the API server.

Two parts:

1. In this process, the time to decode a body of about 3 MiB (kube-apiserver's request
   limit) as JSON and as YAML, and to check it as the API server checks every body before
   validation (Go's typed decoding, depth), and to encode the result, as the answer to a
   create is encoded on the event loop, and the longest an event loop waits for the GIL while
   the body decodes on the API server's decoding thread: median of ``--repeat`` runs, with a
   same-run reference (``orjson.loads`` of the same JSON, the floor of any decoder).
2. Against ``arges up`` (a child process, API server only), ``--posts`` dry-run creates of such
   a body (JSON, then YAML) posted back to back by ``--posters`` clients, while a probe (a
   process of its own) asks ``/readyz`` every 5 ms: the probe's latency (median, p99, max) is
   how long other requests wait behind a large body. The reference is the same probe with no
   bodies in flight.

Figures, not assertions: this machine is shared and noisy.

    .venv/bin/python benchmarks/large_bodies.py [--posts 20] [--posters 2]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import yaml

from apiserver import CRD, GROUP, PATH, free_port, percentile
from arges.apiserver import codec
from arges.apiserver.decoding import decode_error
from arges.apiserver.http import params
from arges.cli.up import SWITCH_INTERVAL

TARGET_BYTES = 3 * 1024 * 1024 - 64 * 1024
"""A little under kube-apiserver's 3 MiB limit, leaving room for the YAML spelling."""


def large_server(target: int = TARGET_BYTES) -> dict[str, Any]:
    """A Server whose preserved ``spec.hardware`` holds enough disks to reach ``target``
    bytes as JSON: the shape of a large, legitimate inventory."""
    disk = {
        "deviceName": "/dev/nvme0n1",
        "model": "SAMSUNG MZQL23T8HCLS-00A07",
        "serial": "S64HNE0R000000",
        "size": 3840755982336,
        "type": "NVMe",
        "wwid": "eui.36344830526000000025384500000001",
    }
    per_disk = len(orjson.dumps(disk)) + 1
    return {
        "apiVersion": f"{GROUP}/v1",
        "kind": "Server",
        "metadata": {"name": "large"},
        "spec": {
            "hostname": "large",
            "hardware": {
                "storage": [dict(disk, serial=f"S64HNE{i:08d}") for i in range(target // per_disk)]
            },
        },
    }


def bodies() -> tuple[bytes, bytes]:
    """The large Server as JSON and as (block-style) YAML, each under 3 MiB."""
    obj = large_server()
    as_json = orjson.dumps(obj)
    as_yaml = yaml.safe_dump(obj, default_flow_style=None, width=1 << 20).encode()
    while len(as_yaml) > 3 * 1024 * 1024:
        obj["spec"]["hardware"]["storage"] = obj["spec"]["hardware"]["storage"][:-500]
        as_yaml = yaml.safe_dump(obj, default_flow_style=None, width=1 << 20).encode()
    return as_json, as_yaml


def median_ms(fn: Any, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def in_process(as_json: bytes, as_yaml: bytes, repeat: int) -> None:
    print(f"bodies: JSON {len(as_json) / 2**20:.2f} MiB, YAML {len(as_yaml) / 2**20:.2f} MiB")
    ref = median_ms(lambda: orjson.loads(as_json), repeat)
    print(f"  reference orjson.loads:           {ref:8.1f} ms")
    for label, data, media in (
        ("JSON", as_json, "application/json"),
        ("YAML", as_yaml, "application/yaml"),
    ):
        decoded = codec.decode_body(data, media, kind="Server", expanded_limit=6 << 20)
        spent = median_ms(
            lambda d=data, m=media: codec.decode_body(d, m, kind="Server", expanded_limit=6 << 20),
            repeat,
        )
        check = median_ms(
            lambda o=decoded: (decode_error(o, "Server", None), codec.depth(o)), repeat
        )
        # On the event loop: the answer to a create is the decoded object, encoded.
        encode = median_ms(lambda o=decoded: codec.dumps(o), repeat)
        held = statistics.median(
            asyncio.run(loop_wait_while_decoding(data, media)) for _ in range(repeat)
        )
        print(
            f"  decode {label}: {spent:8.1f} ms ({spent / ref:5.1f}x ref)"
            f"   typed check + depth: {check:6.1f} ms   encode the result: {encode:5.1f} ms"
            f"   loop's longest wait while it decodes on its thread: {held:5.1f} ms"
        )


async def loop_wait_while_decoding(data: bytes, media: str) -> float:
    """The longest an event loop waited (ms past a 0.2 ms sleep) while ``data`` decoded as a
    request body does (``params.decode``: on the API server's decoding thread), at ``arges
    up``'s GIL switch interval: how long the decoding thread held the GIL at a stretch."""
    longest = 0.0
    decoding = True

    async def tick() -> None:
        nonlocal longest
        while decoding:
            start = time.perf_counter()
            await asyncio.sleep(0.0002)
            longest = max(longest, (time.perf_counter() - start) * 1000 - 0.2)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(SWITCH_INTERVAL)
    ticker = asyncio.create_task(tick())
    try:
        await params.decode(data, media, kind="Server")
    finally:
        decoding = False
        await ticker
        sys.setswitchinterval(interval)
    return longest


async def probe(session: aiohttp.ClientSession, base: str, stop: threading.Event) -> list[float]:
    """``/readyz`` every 5 ms until ``stop``: each answer's latency in ms."""
    latencies = []
    while not stop.is_set():
        start = time.perf_counter()
        async with session.get(f"{base}/readyz") as resp:
            await resp.read()
        latencies.append((time.perf_counter() - start) * 1000)
        if len(latencies) == 1:
            print("probing", flush=True)
        await asyncio.sleep(0.005)
    return latencies


def probe_process(base: str, cafile: str) -> None:
    """The probe as a process of its own (``--probe``): the admin token on the first line of
    standard input, then probing until standard input closes; prints the latencies as JSON.

    Its own process, so what it measures is the API server: the posters' client spends
    milliseconds at a time encrypting 3 MiB, and a probe sharing their event loop would wait
    for that too."""
    token = sys.stdin.readline().strip()
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()

    async def run() -> list[float]:
        tls = ssl.create_default_context(cafile=cafile)
        headers = {"Authorization": f"Bearer {token}"}
        connector = aiohttp.TCPConnector(ssl=tls)
        async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
            return await probe(session, base, stop)

    print(orjson.dumps(asyncio.run(run())).decode(), flush=True)


async def probed(base: str, cafile: str, token: str) -> Callable[[], Awaitable[list[float]]]:
    """Start a :func:`probe_process` and wait for its first answer; returns the coroutine
    function that stops it and returns its latencies."""
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, __file__, "--probe", base, cafile),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(token.encode() + b"\n")
    await proc.stdin.drain()
    assert await proc.stdout.readline() == b"probing\n"

    async def stop() -> list[float]:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.close()
        latencies: list[float] = orjson.loads(await proc.stdout.read())
        await proc.wait()
        return latencies

    return stop


async def under_load(
    session: aiohttp.ClientSession,
    base: str,
    body: bytes | None,
    media: str,
    args: argparse.Namespace,
) -> tuple[list[float], list[float]]:
    """Probe latencies while ``--posts`` dry-run creates of ``body`` run (None: for 2 s idle),
    and each create's own latency."""
    stop = await probed(base, args.cafile, args.token)
    posts: list[float] = []
    if body is None:
        await asyncio.sleep(2)
    else:
        queue = list(range(args.posts))

        async def poster() -> None:
            while queue:
                queue.pop()
                start = time.perf_counter()
                async with session.post(
                    f"{base}{PATH}?dryRun=All", data=body, headers={"Content-Type": media}
                ) as resp:
                    await resp.read()
                    if resp.status != 201:
                        raise RuntimeError(f"POST: {resp.status} {await resp.text()}")
                posts.append((time.perf_counter() - start) * 1000)

        await asyncio.gather(*(poster() for _ in range(args.posters)))
    return await stop(), posts


async def against_server(as_json: bytes, as_yaml: bytes, args: argparse.Namespace) -> None:
    data = Path(tempfile.mkdtemp(prefix="arges-bench-"))
    port = free_port()
    log = (data / "server.log").open("wb")
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "arges", "--log-level", "warning", "up"),
            *("--data-dir", str(data), "--api-port", str(port), "--no-boot"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        while not (data / "kubeconfig").exists():
            await asyncio.sleep(0.05)
        tls = ssl.create_default_context(cafile=str(data / "pki" / "ca.crt"))
        token = (data / "pki" / "admin.token").read_text().strip()
        args.cafile, args.token = str(data / "pki" / "ca.crt"), token
        base = f"https://127.0.0.1:{port}"
        connector = aiohttp.TCPConnector(ssl=tls, limit=0)
        headers = {"Authorization": f"Bearer {token}"}
        async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
            async with session.post(
                f"{base}/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=CRD
            ) as resp:
                assert resp.status == 201, await resp.text()
            for _ in range(200):
                async with session.get(f"{base}{PATH}") as resp:
                    if resp.status == 200:
                        break
                await asyncio.sleep(0.05)
            print(f"/readyz every 5 ms; {args.posts} dry-run creates by {args.posters} clients")
            for label, body, media in (
                ("idle (reference)", None, ""),
                ("JSON 3 MiB", as_json, "application/json"),
                ("YAML 3 MiB", as_yaml, "application/yaml"),
            ):
                lat, posts = await under_load(session, base, body, media, args)
                line = (
                    f"  {label:17} /readyz p50 {percentile(lat, 50):6.1f} ms  "
                    f"p99 {percentile(lat, 99):7.1f} ms  max {max(lat):7.1f} ms"
                )
                if posts:
                    line += f"   create p50 {percentile(posts, 50):7.1f} ms"
                print(line)
    finally:
        proc.terminate()
        proc.wait()
        log.close()
        shutil.rmtree(data, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=20)
    parser.add_argument("--posters", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--probe", nargs=2, metavar=("BASE", "CAFILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        probe_process(*args.probe)
        return
    as_json, as_yaml = bodies()
    in_process(as_json, as_yaml, args.repeat)
    asyncio.run(against_server(as_json, as_yaml, args))


if __name__ == "__main__":
    main()
