"""Fleet: hundreds to thousands of simulated servers through their whole life, per fleet size.

Each size (default 500, 1,000 and 2,000) gets a fresh embedded API server in a child process
(its CPU and RSS are its own), and in this process, on a thread and event loop of their own,
Arges' controllers and boot HTTP against it (``arges up --kubeconfig`` as a plane) with its
fake BMCs; with ``--layout embedded``, the plane runs the API server on its own loop, with
its dashboard, as ``arges up`` does (their CPU and RSS then together). The simulated servers
of the cluster tests (``tests/integration/clusters/sim.py``: they boot through ``/ipxe``,
register with their inventory, wipe, fetch their configs; no Talos API) run in a third process
(``benchmarks/fleetsims.py``: they share the BMCs' state with the plane through a mapped
file), so neither their CPU nor their hold on the GIL is the plane's. The API server's and
the plane's processes are tuned once started as ``arges up`` tunes itself
(``arges.cli.up.settle_process``: start-up objects frozen out of the garbage collector's
sight, a full collection per 100 middle-generation ones, a 0.5 ms GIL switch interval). The
life of the fleet:

1. discovery: every server powers on at once and registers;
2. acceptance: each is accepted and given its (fake) BMC, one PATCH per server;
3. wipe: the agent wipes it and it powers off, clean;
4. allocation: TalosClusters of ``--cluster-size`` servers (3 control planes, the rest
   workers) are created, and bind the servers;
5. config delivery: each bound server is powered on into its target, fetches its machine
   config from ``/configdata`` and reports it installed.

Printed per size: the time of each phase and in all; the control plane's latency per
transition, by controller (p50/p99 seconds from the watch event of an API write to the end
of the reconcile that decided on it); CPU seconds per server (API server process + the
plane's, without its main thread, which only drives the run, from the end of the plane's
start, whose CPU is printed apart) and how much of it the
clusters' secrets bundles took (one RSA-4096 key each, a per-cluster cost), the simulated
servers' own (not counted), the API server's RSS (peak and at the end), each work queue's
peak depth, and the API requests per server by verb and resource (the API server's
``arges_apiserver_requests_total``; the ten largest). The reference, measured in the same
run once the fleet is done: the CPU of one GET of a Server by the plane's client, both ends
(over the plane's transport to the API server's process once the plane stopped; embedded,
answered in the process before the plane stops); CPU per server is also printed in such
GETs, a figure the host's drifting speed moves less; so is how it grows from the first size
to the others, also without the secrets bundles. The secrets bundles' reference, measured before
the fleets: the CPU of an RSA-4096 key of Go's ``crypto/rsa``, what CABPT and talosctl run
for a bundle (:mod:`benchmarks.fleetkeys`; none where Go is not installed). Goals (issue #20):
per-server cost flat from 500 to 2,000, <= 50 ms CPU per server for its whole life, RSS
<= 500 MiB at 2,000. Figures, not assertions.

    .venv/bin/python benchmarks/fleet.py [--sizes 500,1000,2000] [--cluster-size 20]
        [--layout split|embedded] [--transport unix|tls]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.fleetkeys import go_key_cpu
from benchmarks.fleetprobe import Probe
from benchmarks.fleetsims import (
    BOOTED,
    INSTALLED,
    PLANE_BOOTS,
    REGISTERED,
    WIPED,
    Board,
    Sims,
    bmc_of,
    server_uuid,
)
from prometheus_client.parser import text_string_to_metric_families
from tests.integration.clusters.conftest import environment

from arges.api.crds import all_crds
from arges.apiserver.server import SOCKET, ApiServer, ApiServerConfig
from arges.boot.services import BootConfig
from arges.cli.up import settle_process
from arges.kube.client import KubeClient
from arges.kube.connection import Connection, from_kubeconfig
from arges.kube.resources import SECRETS, SERVERS, TALOS_CLUSTERS
from arges.metrics.http import exposition
from arges.plane import ManagementPlane, PlaneConfig
from arges.power import fake
from arges.power.base import PowerState

NS = "default"


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def proc_status(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class PlaneThread(threading.Thread):
    """The plane on its own event loop, as ``arges up --kubeconfig`` would run it."""

    def __init__(self, config: PlaneConfig) -> None:
        super().__init__(name="plane", daemon=True)
        self.config = config
        self.loop = asyncio.new_event_loop()
        self.plane: ManagementPlane | None = None
        self.started = threading.Event()
        self.error: BaseException | None = None
        self.cpu0 = 0.0

    profile: str = ""

    def run(self) -> None:
        asyncio.set_event_loop(self.loop)
        if not self.profile:
            self.loop.run_forever()
            return
        profiler = cProfile.Profile()
        profiler.runcall(self.loop.run_forever)
        profiler.dump_stats(self.profile)

    def call(self, coro: Any, timeout: float = 120) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)


def serve_api(data_dir: str, port: str, profile: str = "") -> None:
    """Child-process mode: the embedded API server alone, until SIGTERM (profiled into
    ``profile`` when given)."""
    if profile:
        profiler = cProfile.Profile()
        profiler.runcall(serve_api, data_dir, port)
        profiler.dump_stats(profile)
        return

    async def main() -> None:
        server = ApiServer(
            ApiServerConfig(data_dir=Path(data_dir), port=int(port), crds=all_crds())
        )
        await server.start()
        server.mounts["/metrics"] = exposition(server.metrics, server.token)
        settle_process()  # as `arges up` does once started
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await server.stop()

    asyncio.run(main())


async def wait_for(board: Board, flag: int, what: str, off: bool = False) -> float:
    """When every server on the ``board`` has ``flag`` (and, with ``off``, is powered off);
    progress is printed every 30 s."""
    started = time.perf_counter()
    said = started
    servers = range(1, board.servers + 1)

    def done(i: int) -> bool:
        return board.done(i, flag) and (not off or board.power(i) == PowerState.OFF)

    while (count := sum(1 for i in servers if done(i))) < board.servers:
        now = time.perf_counter()
        if now - said >= 30:
            booted = sum(1 for i in servers if board.done(i, BOOTED))
            print(
                f"    {what}: {count}/{board.servers} after {now - started:.0f} s "
                f"({booted} booted)",
                flush=True,
            )
            said = now
        await asyncio.sleep(0.2)
    return time.perf_counter()


async def run_size(n: int, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    data = work / f"fleet-{n}"
    data.mkdir(parents=True)
    board = Board(data / "bmcs", n, create=True)
    fake.MACHINES.clear()
    fake.MACHINES.update(board.machines(PLANE_BOOTS))
    api: subprocess.Popen[bytes] | None = None
    plane_connection = None
    if args.layout == "split":
        api, connection, plane_connection = await start_api(data, args, work / f"api-{n}.log")
    config = PlaneConfig(
        data_dir=data / "plane",
        api_port=free_port(),
        default_environment=environment(work / "talos", ["talos.platform=metal"]),
        agent_environment=environment(work / "agent", ["console=ttyS0"]),
        boot=BootConfig(
            address="127.0.0.1",
            http_port=free_port(),
            tftp_port=free_port(socket.SOCK_DGRAM),
            dhcp_mode=None,
        ),
        external_api=plane_connection,
    )
    probe = Probe()
    uninstall = probe.install()
    thread = PlaneThread(config)
    if args.profile:
        thread.profile = f"{args.profile}/plane-{n}.prof"
    thread.start()
    plane = ManagementPlane(config)
    thread.plane = plane
    start_cpu0, main_cpu0 = own_cpu(), time.thread_time()
    thread.call(plane.start())
    # As `arges up` does once started.
    settle_process()
    # The fleet's CPU from here: the plane's start (its API server's CRDs installed, their
    # schemas compiled) is paid once, whatever the fleet's size, and printed apart.
    process_cpu0 = own_cpu()
    start_cpu = process_cpu0 - start_cpu0 - (time.thread_time() - main_cpu0)
    main_cpu0 = time.thread_time()
    api_cpu0 = proc_cpu(api.pid) if api is not None else 0.0
    kubeconfig = data / "api" / "kubeconfig"
    if plane.api is not None:  # embedded: as `arges up` runs, the controllers on its socket
        kubeconfig = plane.api.kubeconfig_path
        connection = from_kubeconfig(kubeconfig)
        plane_connection = replace(connection, unix_socket=plane.api.socket_path)
    assert plane.boot is not None
    base_url = plane.boot.http.base_url
    timings: dict[str, float] = {}
    async with KubeClient(connection, component="fleet-benchmark") as kube:
        await kube.create(
            SECRETS,
            {
                "metadata": {"name": "sim-bmc"},
                "stringData": {"username": "a", "password": "secret"},
            },
            NS,
        )
        sims_log = (work / f"sims-{n}.log").open("wb")
        sims = Sims(
            data / "bmcs", n, base_url, kubeconfig, tick=args.tick, poll=args.poll, log=sims_log
        )
        sims_cpu0 = proc_cpu(sims.process.pid)
        start = time.perf_counter()
        sims.go()
        try:
            timings["discovery"] = await wait_for(board, REGISTERED, "discovery")
            slots = asyncio.Semaphore(16)

            async def accept(index: int) -> None:
                async with slots:
                    await kube.patch(
                        SERVERS,
                        server_uuid(index),
                        {
                            "spec": {
                                "accepted": True,
                                "bmc": {
                                    "address": bmc_of(index),
                                    "protocol": "fake",
                                    "credentialsSecretRef": {"name": "sim-bmc", "namespace": NS},
                                },
                            }
                        },
                    )

            await asyncio.gather(*(accept(i) for i in range(1, n + 1)))
            timings["acceptance"] = time.perf_counter()
            timings["wipe"] = await wait_for(board, WIPED, "wipe", off=True)
            clusters = max(1, n // args.cluster_size)
            for c in range(clusters):
                size = args.cluster_size if c < clusters - 1 else n - c * args.cluster_size
                await kube.create(
                    TALOS_CLUSTERS,
                    {
                        "metadata": {"name": f"c{c:04d}"},
                        "spec": {
                            "endpoint": f"https://10.5.{c // 250}.{c % 250}:6443",
                            "controlPlane": {"replicas": 3},
                            "workers": [{"name": "workers", "replicas": size - 3}],
                        },
                    },
                    NS,
                )
            timings["allocation"] = time.perf_counter()
            timings["config delivery"] = await wait_for(board, INSTALLED, "config delivery")
        finally:
            sims_cpu = proc_cpu(sims.process.pid) - sims_cpu0
            sims.stop()
            sims_log.close()
        requests = request_counts(await kube.request("GET", "/metrics"))
    total = time.perf_counter() - start
    process_cpu = own_cpu() - process_cpu0
    plane_cpu = process_cpu - (time.thread_time() - main_cpu0)
    api_cpu = proc_cpu(api.pid) - api_cpu0 if api is not None else 0.0
    pid = api.pid if api is not None else os.getpid()
    api_rss, api_peak = proc_status(pid, "VmRSS"), proc_status(pid, "VmHWM")
    names = {
        id(c.queue): c.name for c in (plane._manager.controllers.values() if plane._manager else [])
    }
    baseline = float("nan")
    if plane.api is not None and plane.kube is not None:
        baseline = thread.call(baseline_local_get(plane.kube, server_uuid(1)))
    thread.call(plane.stop())
    thread.loop.call_soon_threadsafe(thread.loop.stop)
    thread.join(30)
    # With the plane stopped, nothing else asks the API server meanwhile (its controllers
    # keep reconciling, the BMC readings every refresh period: more the larger the fleet).
    if api is not None:
        baseline = await baseline_get(plane_connection, api.pid, server_uuid(1))
        api.terminate()
        api.wait(30)
    fake.MACHINES.clear()
    board.close()
    gc.unfreeze()  # the next size starts its plane afresh
    uninstall()
    previous = start
    phases = {}
    for name, at in timings.items():
        phases[name] = at - previous
        previous = at
    return {
        "n": n,
        "total": total,
        "phases": phases,
        "api_cpu": api_cpu,
        "plane_cpu": plane_cpu,
        "start_cpu": start_cpu,
        "api_rss": api_rss,
        "api_peak": api_peak,
        "latency": {names.get(q, str(q)): v for q, v in probe.latencies.items()},
        "peaks": {names.get(q, str(q)): v for q, v in probe.peaks.items()},
        "requests": requests,
        "baseline": baseline,
        "bundles": probe.bundles,
        "bundle_cpu": probe.bundle_cpu,
        "sims_cpu": sims_cpu,
        "layout": args.layout,
    }


def own_cpu() -> float:
    """CPU seconds of this process so far, user and system."""
    return sum(resource.getrusage(resource.RUSAGE_SELF)[:2])


async def start_api(
    data: Path, args: argparse.Namespace, log: Path
) -> tuple[subprocess.Popen[bytes], Connection, Connection]:
    """The split layout's API server, in a process of its own (its output in ``log``): the
    process, the operator's connection (HTTPS), and the plane's (``--transport``)."""
    with log.open("wb") as out:
        api = subprocess.Popen(
            [
                *(sys.executable, __file__, "--serve-api", str(data / "api"), str(free_port())),
                *([f"{args.profile}/api-{data.name}.prof"] if args.profile else []),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    kubeconfig = data / "api" / "kubeconfig"
    while not kubeconfig.exists():
        if api.poll() is not None:
            raise SystemExit(f"the API server exited (its output: {log})")
        await asyncio.sleep(0.1)
    connection = from_kubeconfig(kubeconfig)
    if args.transport == "tls":
        return api, connection, connection
    # As in embedded mode: the controllers' requests go through the API server's socket
    # (the operator's own, acceptance and clusters, stay on HTTPS).
    while not (data / "api" / SOCKET).exists():
        await asyncio.sleep(0.1)
    return api, connection, replace(connection, unix_socket=data / "api" / SOCKET)


BASELINE_GETS = 3000


async def baseline_get(connection: Any, api_pid: int, name: str) -> float:
    """The reference of the run: CPU seconds of one GET of a Server by the plane's client
    over the plane's transport, both ends counted (the API server's process, this thread),
    once the fleet is done and the plane stopped. This shared host's speed drifts by a
    quarter from run to run; CPU per server in GETs drifts less."""
    async with KubeClient(connection, component="fleet-baseline") as kube:
        await kube.get(SERVERS, name)
        api0, here0 = proc_cpu(api_pid), time.thread_time()
        for _ in range(BASELINE_GETS):
            await kube.get(SERVERS, name)
        return (proc_cpu(api_pid) - api0 + time.thread_time() - here0) / BASELINE_GETS


async def baseline_local_get(kube: KubeClient, name: str) -> float:
    """Embedded, the reference of the run: CPU seconds of one GET of a Server by the
    controllers' client, answered in the process (``ApiServer.local``: both ends on the
    plane's thread), once the fleet is done and before the plane stops. Run on the plane's
    loop; its controllers are idle by then."""
    await kube.get(SERVERS, name)
    here0 = time.thread_time()
    for _ in range(BASELINE_GETS):
        await kube.get(SERVERS, name)
    return (time.thread_time() - here0) / BASELINE_GETS


def request_counts(exposition_text: str) -> dict[str, float]:
    """``arges_apiserver_requests_total`` from the Prometheus text, summed per "VERB
    resource" over groups and codes."""
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(exposition_text):
        for sample in family.samples:
            if sample.name != "arges_apiserver_requests_total":
                continue
            what = f"{sample.labels['verb']} {sample.labels['resource']}"
            counts[what] = counts.get(what, 0.0) + sample.value
    return counts


def report(r: dict[str, Any], go_key: tuple[float | None, str]) -> None:
    """Print one size's figures; ``go_key``: the reference for the secrets bundles
    (:func:`benchmarks.fleetkeys.go_key_cpu`)."""
    n = r["n"]
    phases = "  ".join(f"{k} {v:.1f} s" for k, v in r["phases"].items())
    cpu = r["api_cpu"] + r["plane_cpu"]
    get = r["baseline"]
    print(f"{n} servers: total {r['total']:.1f} s ({phases})")
    if r["layout"] == "embedded":
        print(
            f"  CPU per server: {cpu / n * 1000:.1f} ms (API server, controllers and boot HTTP "
            "in one process, as `arges up` runs them)  goal <= 50 ms"
        )
        print(
            f"  reference: a GET of a Server answered in the process, both ends, "
            f"{get * 1e6:.1f} us of CPU; CPU per server = {cpu / n / get:.0f} GETs"
        )
    else:
        print(
            f"  CPU per server: {cpu / n * 1000:.1f} ms (API server "
            f"{r['api_cpu'] / n * 1000:.1f} ms, controllers and boot HTTP "
            f"{r['plane_cpu'] / n * 1000:.1f} ms)  goal <= 50 ms"
        )
        print(
            f"  reference: a GET of a Server, both ends, {get * 1000:.3f} ms of CPU; CPU per "
            f"server = {cpu / n / get:.0f} GETs (API server {r['api_cpu'] / n / get:.0f}, "
            f"controllers and boot HTTP {r['plane_cpu'] / n / get:.0f})"
        )
    if r["bundles"]:
        print(
            f"  of which the clusters' secrets bundles: {r['bundle_cpu'] / n * 1000:.1f} ms "
            f"({r['bundles']} bundles, {r['bundle_cpu'] / r['bundles'] * 1000:.0f} ms each: "
            "an RSA-4096 service-account key each, as Talos' contract > 1.6 makes them); "
            f"the rest {(cpu - r['bundle_cpu']) / n * 1000:.1f} ms "
            f"({(cpu - r['bundle_cpu']) / n / get:.0f} GETs)"
        )
        key, how = go_key
        if key is None:
            print(f"  reference for the bundles: none ({how})")
        else:
            print(
                f"  reference for the bundles: an RSA-4096 key of Go's crypto/rsa (what CABPT "
                f"and talosctl generate) {key * 1000:.0f} ms of CPU ({how}); a bundle here "
                f"{r['bundle_cpu'] / r['bundles'] / key:.2f}x that"
            )
    print(f"  the simulated servers' own process (not counted): {r['sims_cpu'] / n * 1000:.1f} ms")
    print(f"  the plane's start, once for any fleet (not counted): {r['start_cpu']:.2f} s of CPU")
    whose = "API server and plane" if r["layout"] == "embedded" else "API server"
    print(
        f"  {whose} RSS: {r['api_rss']:.0f} MiB at the end, peak {r['api_peak']:.0f} MiB"
        "  goal <= 500 MiB at 2,000"
    )
    for name in sorted(r["latency"]):
        values = r["latency"][name]
        print(
            f"  {name:<14} event -> decision p50 {percentile(values, 50) * 1000:7.1f} ms  "
            f"p99 {percentile(values, 99) * 1000:8.1f} ms  ({len(values)} reconciles)  "
            f"queue peak {r['peaks'].get(name, 0)}"
        )
    requests = r["requests"]
    top = sorted(requests.items(), key=lambda kv: -kv[1])[:10]
    print(
        f"  API requests per server: {sum(requests.values()) / n:.1f}; largest: "
        + ", ".join(f"{what} {count / n:.1f}" for what, count in top)
    )


def growth(
    r: dict[str, Any], base: dict[str, Any], *, in_gets: bool = False, bundles: bool = True
) -> float:
    """CPU per server of run ``r`` over that of ``base``; ``in_gets``: each in its own run's
    reference GETs, which takes the host's drift between the runs out; ``bundles=False``:
    without the clusters' secrets bundles, whose RSA keys cost what OpenSSL's random search
    for primes happens to take, not what the fleet's size makes them."""

    def per_server(x: dict[str, Any]) -> float:
        cpu = x["api_cpu"] + x["plane_cpu"] - (0.0 if bundles else x["bundle_cpu"])
        return float(cpu / x["n"] / (x["baseline"] if in_gets else 1.0))

    return per_server(r) / per_server(base)


async def bench(args: argparse.Namespace) -> None:
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
    work = Path(tempfile.mkdtemp(prefix="arges-fleet-"))
    print(f"load before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; {os.cpu_count()} cores")
    if args.layout == "embedded" and len(args.sizes) > 1:
        print("embedded: one process runs every size, and a size's RSS holds what the earlier")
        print("  left (freed memory is not all given back): run one size for its RSS")
    # On the quiet host, before the fleets.
    go_key = go_key_cpu()
    results = []
    for n in args.sizes:
        result = await run_size(n, args, work)
        report(result, go_key)
        results.append(result)
    if len(results) > 1:
        base = results[0]
        for r in results[1:]:
            print(
                f"CPU per server at {r['n']} / at {base['n']}: {growth(r, base):.2f}x; "
                f"in reference GETs {growth(r, base, in_gets=True):.2f}x, "
                "without the secrets bundles "
                f"{growth(r, base, in_gets=True, bundles=False):.2f}x  goal ~1.0 (flat)"
            )
    print(f"load after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve-api":
        serve_api(*sys.argv[2:5])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[500, 1000, 2000]
    )
    parser.add_argument("--cluster-size", type=int, default=20)
    parser.add_argument("--tick", type=float, default=0.5, help="seconds between BMC looks")
    parser.add_argument("--poll", type=float, default=2.0, help="the agent's idle poll")
    parser.add_argument(
        "--layout",
        choices=["split", "embedded"],
        default="split",
        help="the API server in a process of its own, or on the plane's event loop in its "
        "process, as `arges up` runs it (with its dashboard)",
    )
    parser.add_argument(
        "--transport",
        choices=["unix", "tls"],
        default="unix",
        help="split layout: the controllers' requests over the API server's Unix socket, as "
        "embedded `arges up` sends them, or over HTTPS, as to a cluster's API server",
    )
    parser.add_argument(
        "--profile", default="", help="directory for cProfile dumps of the plane and API server"
    )
    args = parser.parse_args()
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
    asyncio.run(bench(args))


if __name__ == "__main__":
    main()
