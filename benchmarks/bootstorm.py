"""Boot storm: N simulated firmware clients against Arges' boot services and a reference.

The reference is what a rack is usually booted from: dnsmasq's TFTP server and nginx (sendfile)
serving the same files, both from Debian, measured in the same run with the same clients
(skipped, saying so, when absent or when dnsmasq cannot bind port 69, its only TFTP port).
Arges runs as ``arges up`` in a child process (its own CPU and RSS), DHCP off.

Two phases, each run against the reference and against Arges, alternating ``--rounds`` times
(the machine is shared; the spread between rounds says how noisy it was):

1. TFTP alone: ``--tftp-clients`` clients (default 1,000) ask for ``undionly.kpxe`` at once,
   as PXE firmware does: RRQ with ``blksize 1428`` and ``tsize``, lock-step, the last packet
   sent again after 1 s of silence (up to 10 times, then the client fails);
2. the whole storm: ``--storm-clients`` clients (default 500) each fetch ``undionly.kpxe`` over
   TFTP, then the agent's kernel and initrd over HTTP, as a server discovering itself does.

Each client uses a loopback address of its own (127.1.x.y), as each machine of a real storm
has its own, so the per-client limits of both servers apply as they would in a rack.

Printed per phase and server: wall time, per-client p50/p99 (seconds from the first request
to the last byte), failures, the server's CPU seconds, and the ratios Arges/reference. While
Arges' phases run, a separate process polls the API server's ``/readyz`` every 50 ms; its
latency is printed beside the same poll against the idle server before the storm. Figures,
not assertions.

    .venv/bin/python benchmarks/bootstorm.py [--tftp-clients 1000] [--storm-clients 500]

A phase given 0 clients is skipped (``--storm-clients 0``: TFTP alone).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import os
import resource
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

IPXE_DIR = Path("/usr/lib/ipxe")
BOOT_FILE = "undionly.kpxe"
BLKSIZE = 1428
RETRANSMIT = 1.0
MAX_RETRANSMITS = 10
GIVE_UP = 60.0
RRQ, DATA, ACK, ERROR, OACK = 1, 3, 4, 5, 6


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of ``pids`` and their reaped children (clock ticks to seconds)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += sum(int(x) for x in fields[11:15])
    return total / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    """``pid`` and its descendants (nginx's workers)."""
    out = [pid]
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            text = (task / "children").read_text().split()
            for child in text:
                out += children(int(child))
    return out


class _TftpClient(asyncio.DatagramProtocol):
    """One firmware's TFTP read: lock-step, retransmitting the last packet after 1 s."""

    def __init__(self, server: tuple[str, int], filename: str, done: asyncio.Future[int]) -> None:
        self.server = server
        self.filename = filename
        self.done = done
        self.peer: tuple[str, int] | None = None
        self.transport: asyncio.DatagramTransport | None = None
        self.last = b""
        self.expected = 1
        self.crc = 0
        self.size = 0
        self.sends = 0
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        request = struct.pack("!H", RRQ) + b"\0".join(
            [self.filename.encode(), b"octet", b"blksize", str(BLKSIZE).encode(), b"tsize", b"0"]
        )
        self._send(request + b"\0", self.server)

    def _send(self, packet: bytes, to: tuple[str, int]) -> None:
        assert self.transport is not None
        self.last = packet
        self.sends = 0
        self.transport.sendto(packet, to)
        self._arm()

    def _arm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer = asyncio.get_running_loop().call_later(RETRANSMIT, self._timeout)

    def _timeout(self) -> None:
        if self.done.done():
            return
        self.sends += 1
        if self.sends > MAX_RETRANSMITS:
            self._finish(RuntimeError(f"no answer after {MAX_RETRANSMITS} retransmissions"))
            return
        assert self.transport is not None
        self.transport.sendto(self.last, self.peer or self.server)
        self._arm()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.done.done() or len(data) < 4:
            return
        if self.peer is None:
            self.peer = addr
        elif addr != self.peer:
            return
        opcode, number = struct.unpack("!HH", data[:4])
        if opcode == ERROR:
            self._finish(RuntimeError(data[4:].rstrip(b"\0").decode("ascii", "replace")))
        elif opcode == OACK and self.expected == 1:
            self._send(struct.pack("!HH", ACK, 0), addr)
        elif opcode == DATA and number == self.expected & 0xFFFF:
            chunk = data[4:]
            self.crc = zlib.crc32(chunk, self.crc)
            self.size += len(chunk)
            self.expected += 1
            ack = struct.pack("!HH", ACK, number)
            if len(chunk) < BLKSIZE:
                assert self.transport is not None
                self.transport.sendto(ack, addr)
                self._finish(None)
            else:
                self._send(ack, addr)
        elif opcode == DATA and number == (self.expected - 1) & 0xFFFF:
            assert self.transport is not None
            self.transport.sendto(struct.pack("!HH", ACK, number), addr)

    def _finish(self, error: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if not self.done.done():
            if error is None:
                self.done.set_result(self.crc)
            else:
                self.done.set_exception(error)

    def error_received(self, exc: Exception) -> None:
        """ICMP port unreachable and the like: the retransmission timer deals with it."""


def client_host(i: int) -> str:
    """The loopback address client ``i`` uses (all of 127/8 is loopback): one per simulated
    machine, as in a real storm, where per-client limits apply to each machine."""
    return f"127.1.{i // 250 % 250}.{i % 250 + 1}"


async def tftp_get(server: tuple[str, int], filename: str, host: str = "127.0.0.1") -> int:
    """The CRC-32 of ``filename`` as read over TFTP from ``host`` (raises on failure)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[int] = loop.create_future()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _TftpClient(server, filename, done), local_addr=(host, 0)
    )
    try:
        return await asyncio.wait_for(done, GIVE_UP)
    finally:
        transport.close()


class _HttpBody(asyncio.BufferedProtocol):
    """Reads a whole HTTP/1.1 response (Connection: close) into one reused buffer."""

    def __init__(self, done: asyncio.Future[tuple[int, int]]) -> None:
        self.done = done
        self.buffer = bytearray(1 << 18)
        self.head = b""
        self.total = 0

    def get_buffer(self, sizehint: int) -> memoryview:
        return memoryview(self.buffer)

    def buffer_updated(self, nbytes: int) -> None:
        if len(self.head) < 64:
            self.head += bytes(self.buffer[:nbytes])
        self.total += nbytes

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.done.done():
            return
        if exc is not None:
            self.done.set_exception(exc)
            return
        status = int(self.head.split(b" ", 2)[1]) if self.head.startswith(b"HTTP/") else 0
        self.done.set_result((status, self.total))


async def http_get(port: int, path: str, host: str = "127.0.0.1") -> int:
    """Bytes received for ``GET path`` from ``host`` (headers included); raises unless the
    answer is 200."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[tuple[int, int]] = loop.create_future()
    transport, _ = await loop.create_connection(
        lambda: _HttpBody(done), "127.0.0.1", port, local_addr=(host, 0)
    )
    transport.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
    try:
        status, total = await asyncio.wait_for(done, GIVE_UP)
    finally:
        transport.close()
    if status != 200:
        raise RuntimeError(f"GET {path}: {status}")
    return total


@dataclass
class Target:
    """Where one server under test answers, and the processes whose CPU is counted."""

    name: str
    tftp: tuple[str, int]
    http_port: int
    pids: Callable[[], list[int]]


@dataclass
class PhaseResult:
    wall: float
    latencies: list[float]
    failures: list[str]
    cpu: float
    readyz: list[float] = field(default_factory=list)


async def run_clients(
    target: Target, clients: int, whole: bool, kernel: int, initrd: int, crc: int
) -> PhaseResult:
    latencies: list[float] = []
    failures: list[str] = []

    async def one(host: str) -> None:
        start = time.perf_counter()
        try:
            got = await tftp_get(target.tftp, BOOT_FILE, host)
            if got != crc:
                raise RuntimeError(f"{BOOT_FILE}: wrong bytes")
            if whole:
                for path, size in (("/env/agent/kernel", kernel), ("/env/agent/initrd", initrd)):
                    if await http_get(target.http_port, path, host) < size:
                        raise RuntimeError(f"{path}: short")
        except Exception as exc:
            failures.append(f"{type(exc).__name__}: {exc}")
            return
        latencies.append(time.perf_counter() - start)

    cpu0 = cpu_seconds(target.pids())
    start = time.perf_counter()
    await asyncio.gather(*(one(client_host(i)) for i in range(clients)))
    wall = time.perf_counter() - start
    return PhaseResult(wall, latencies, failures, cpu_seconds(target.pids()) - cpu0)


def start_dnsmasq(root: Path, clients: int, log: Path) -> subprocess.Popen[bytes] | str:
    binary = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
    if not Path(binary).exists():
        return "dnsmasq is not installed (Debian package dnsmasq-base)"
    proc = subprocess.Popen(
        [
            binary,
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--port=0",
            "--enable-tftp",
            f"--tftp-root={root}",
            f"--tftp-max={clients + 16}",
            "--listen-address=127.0.0.1",
            "--bind-interfaces",
            "--quiet-tftp",
            "--pid-file=",
            "--user=root",
        ],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    time.sleep(0.5)
    if proc.poll() is not None:
        return f"dnsmasq did not start (TFTP needs port 69): {log.read_text().strip()}"
    return proc


def start_nginx(docroot: Path, work: Path, port: int) -> subprocess.Popen[bytes] | str:
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(binary).exists():
        return "nginx is not installed (Debian package nginx)"
    conf = work / "nginx.conf"
    conf.write_text(
        f"""
user root;
worker_processes auto;
daemon off;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    default_type application/octet-stream;
    client_body_temp_path {work}/body;
    proxy_temp_path {work}/proxy;
    fastcgi_temp_path {work}/fastcgi;
    uwsgi_temp_path {work}/uwsgi;
    scgi_temp_path {work}/scgi;
    server {{ listen 127.0.0.1:{port} backlog=4096; root {docroot}; }}
}}
"""
    )
    proc = subprocess.Popen(
        [binary, "-c", str(conf), "-p", str(work)],
        stdout=(work / "nginx.out").open("wb"),
        stderr=subprocess.STDOUT,
    )
    time.sleep(0.5)
    if proc.poll() is not None:
        return f"nginx did not start: {(work / 'nginx.out').read_text().strip()}"
    return proc


def start_arges(work: Path, image: Path) -> tuple[subprocess.Popen[bytes], Target, int]:
    api_port, http_port = free_port(), free_port()
    tftp_port = free_port(socket.SOCK_DGRAM)
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "arges", "--log-level", "warning", "up"),
            *("--data-dir", str(work / "arges")),
            *("--api-port", str(api_port)),
            *("--boot-address", "127.0.0.1"),
            *("--http-port", str(http_port)),
            *("--tftp-port", str(tftp_port)),
            *("--dhcp-mode", "off"),
            *("--agent-image", str(image)),
        ],
        stdout=(work / "arges.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    target = Target("arges", ("127.0.0.1", tftp_port), http_port, lambda: [proc.pid])
    return proc, target, api_port


def give_up(why: str, log: Path) -> SystemExit:
    return SystemExit(f"{why}:\n{log.read_text()}")


async def wait_served(proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise give_up("arges up exited", log)
        with contextlib.suppress(Exception):
            await http_get(port, "/env/agent/initrd")
            return
        await asyncio.sleep(0.3)
    raise give_up("arges up did not serve the agent image in time", log)


def poll_readyz(url: str, cafile: str, out: str, stop: str) -> None:
    """Child-process mode: GET ``url`` every 50 ms until ``stop`` exists; latencies to ``out``."""
    host, port = url.split("//")[1].split(":")
    context = ssl.create_default_context(cafile=cafile)
    conn = http.client.HTTPSConnection(host, int(port), context=context, timeout=30)
    latencies: list[float] = []
    while not Path(stop).exists():
        start = time.perf_counter()
        try:
            conn.request("GET", "/readyz")
            conn.getresponse().read()
            latencies.append(time.perf_counter() - start)
        except (OSError, http.client.HTTPException):
            latencies.append(float("inf"))
            conn.close()
        if len(latencies) == 1:
            Path(out).write_text("[]")
        time.sleep(max(0.0, 0.05 - (time.perf_counter() - start)))
    Path(out).write_text(json.dumps(latencies))


@contextlib.contextmanager
def readyz_poller(work: Path, api_port: int, results: list[float]) -> Any:
    stop, out = work / "readyz.stop", work / "readyz.json"
    stop.unlink(missing_ok=True)
    out.unlink(missing_ok=True)
    proc = subprocess.Popen(
        [
            *(sys.executable, __file__, "--poll-readyz", f"https://127.0.0.1:{api_port}"),
            *(str(work / "arges" / "pki" / "ca.crt"), str(out), str(stop)),
        ]
    )
    deadline = time.monotonic() + 30
    while not out.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield
    finally:
        stop.touch()
        proc.wait(30)
        results += json.loads(out.read_text())


def line(name: str, r: PhaseResult, clients: int) -> str:
    return (
        f"  {name:<9} wall {r.wall:6.2f} s  p50 {percentile(r.latencies, 50):6.2f} s  "
        f"p99 {percentile(r.latencies, 99):6.2f} s  failures {len(r.failures)}/{clients}  "
        f"server CPU {r.cpu:5.1f} s"
    )


def ratio(a: PhaseResult, b: PhaseResult | None, what: str) -> str:
    if b is None:
        return ""
    if what == "wall":
        return f"{a.wall / b.wall:.2f}x"
    return f"{percentile(a.latencies, 99) / percentile(b.latencies, 99):.2f}x"


async def bench(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="arges-bootstorm-"))
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
    image = work / "image"
    image.mkdir()
    kernel, initrd = args.kernel_mib << 20, args.initrd_mib << 20
    (image / "vmlinuz").write_bytes(os.urandom(kernel))
    (image / "initramfs.img").write_bytes(os.urandom(initrd))
    docroot = work / "docroot"
    (docroot / "env" / "agent").mkdir(parents=True)
    shutil.copy(image / "vmlinuz", docroot / "env/agent/kernel")
    shutil.copy(image / "initramfs.img", docroot / "env/agent/initrd")
    crc = zlib.crc32((IPXE_DIR / BOOT_FILE).read_bytes())
    print(
        f"load before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
        f"{os.cpu_count()} cores; TFTP {BOOT_FILE} ({(IPXE_DIR / BOOT_FILE).stat().st_size} B), "
        f"blksize {BLKSIZE}; HTTP kernel {args.kernel_mib} MiB + initrd {args.initrd_mib} MiB"
    )

    refs: list[subprocess.Popen[bytes]] = []
    reference: Target | None = None
    dnsmasq = start_dnsmasq(IPXE_DIR, max(args.tftp_clients, args.storm_clients), work / "dm.log")
    nginx_port = free_port()
    nginx = start_nginx(docroot, work, nginx_port)
    for proc in (dnsmasq, nginx):
        if isinstance(proc, str):
            print(f"reference skipped: {proc}")
        else:
            refs.append(proc)
    if len(refs) == 2:
        assert not isinstance(nginx, str) and not isinstance(dnsmasq, str)
        nginx_pid, dnsmasq_pid = nginx.pid, dnsmasq.pid
        reference = Target(
            "reference",
            ("127.0.0.1", 69),
            nginx_port,
            lambda: [dnsmasq_pid, *children(nginx_pid)],
        )
    proc, arges, api_port = start_arges(work, image)
    try:
        await wait_served(proc, arges.http_port, work / "arges.log")
        idle: list[float] = []
        with readyz_poller(work, api_port, idle):
            await asyncio.sleep(3)
        phases = [
            ("TFTP alone", args.tftp_clients, False),
            ("whole storm", args.storm_clients, True),
        ]
        for title, clients, whole in phases:
            if clients == 0:
                continue
            for round_ in range(1, args.rounds + 1):
                print(f"{title}, {clients} clients, round {round_}:")
                ref = None
                if reference is not None:
                    ref = await run_clients(reference, clients, whole, kernel, initrd, crc)
                    print(line("reference", ref, clients))
                    await asyncio.sleep(1)
                polled: list[float] = []
                with readyz_poller(work, api_port, polled):
                    got = await run_clients(arges, clients, whole, kernel, initrd, crc)
                got.readyz = polled
                print(line("arges", got, clients))
                for failure in sorted(set(got.failures))[:3]:
                    print(f"    arges failure: {failure}")
                if ref is not None:
                    print(
                        f"  ratio     wall {ratio(got, ref, 'wall')}  p99 {ratio(got, ref, 'p99')}"
                    )
                ms = [x * 1000 for x in polled]
                print(
                    f"  /readyz during the storm: p50 {percentile(ms, 50):.1f} ms, p99 "
                    f"{percentile(ms, 99):.1f} ms, max {max(ms, default=0):.1f} ms "
                    f"({len(ms)} polls; idle before: p50 "
                    f"{percentile([x * 1000 for x in idle], 50):.1f} ms, p99 "
                    f"{percentile([x * 1000 for x in idle], 99):.1f} ms)"
                )
                await asyncio.sleep(1)
        print(f"load after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        proc.terminate()
        proc.wait(30)
        for ref_proc in refs:
            ref_proc.terminate()
            ref_proc.wait(30)
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--poll-readyz":
        poll_readyz(*sys.argv[2:6])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tftp-clients", type=int, default=1000)
    parser.add_argument("--storm-clients", type=int, default=500)
    parser.add_argument("--kernel-mib", type=int, default=8)
    parser.add_argument("--initrd-mib", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    asyncio.run(bench(parser.parse_args()))


if __name__ == "__main__":
    main()
