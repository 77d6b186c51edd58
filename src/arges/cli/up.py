"""``arges up``: run the management plane in the foreground until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import gc
import signal
import sys
from pathlib import Path
from urllib.parse import urlparse

import click

from arges.agent.image import BuildError
from arges.api.environment import EnvironmentSpec
from arges.apiserver.storage import StorageError
from arges.boot.services import BootConfig, default_address
from arges.cli import options, running
from arges.cli.agent import agent_environment
from arges.cli.logs import use_format
from arges.discovery.api import DiscoveryConfig
from arges.kube import connection
from arges.kube.connection import Connection
from arges.kube.errors import KubeError
from arges.kube.leaderelection import ElectionConfig
from arges.lab.standin import image as standin
from arges.metal import environments
from arges.netguard import raise_open_files_limit
from arges.plane import ManagementPlane, NotInstalled, PlaneConfig


@click.command()
@options.data_dir("Where state, credentials and the kubeconfig are kept.")
@click.option(
    "--api-address",
    default="127.0.0.1",
    show_default=True,
    help="Address the Kubernetes API listens on.",
)
@click.option(
    "--api-port",
    type=click.IntRange(0, 65535),
    default=6443,
    show_default=True,
    help="Port the Kubernetes API listens on (0: any free port).",
)
@click.option(
    "--kubeconfig",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="Use the Kubernetes API server of this kubeconfig (a real cluster with Arges' CRDs "
    "installed) instead of the embedded one.",
)
@click.option(
    "--in-cluster",
    is_flag=True,
    help="Use the API server of the cluster this runs in, with the pod's service account "
    "(deploy/ runs Arges so).",
)
@click.option(
    "--boot-address",
    default=None,
    help="Address servers reach Arges at (default: the first non-loopback address).",
)
@click.option(
    "--http-port",
    type=click.IntRange(0, 65535),
    default=8081,
    show_default=True,
    help="Boot HTTP port (iPXE scripts, kernels, /configdata, the agent endpoint).",
)
@click.option("--tftp-port", type=click.IntRange(0, 65535), default=69, show_default=True)
@click.option(
    "--dhcp-mode",
    type=click.Choice(["proxy", "full", "off"]),
    default="proxy",
    show_default=True,
    help="ProxyDHCP beside the site's DHCP server, a full DHCP "
    "server for a network Arges owns, or none.",
)
@click.option("--dhcp-interface", default=None, help="Interface DHCP listens on.")
@click.option("--proxydhcp-port", type=click.IntRange(1, 65535), default=4011, show_default=True)
@click.option(
    "--dhcp-network", default=None, help="Full DHCP mode: the network, e.g. 10.88.0.0/24."
)
@click.option("--dhcp-pool", default=None, help="Full DHCP mode: START-END (default: upper half).")
@click.option(
    "--auto-accept-servers",
    is_flag=True,
    help="Accept newly discovered servers at once (off: a person accepts them).",
)
@click.option(
    "--wipe-mode",
    type=click.Choice(["fast", "full"]),
    default="fast",
    show_default=True,
    help="fast: first and last MiB plus signatures of each disk; full: every byte.",
)
@click.option(
    "--talos-kernel-url",
    default=None,
    help="Kernel of the built-in 'default' Environment (default: the Talos release).",
)
@click.option(
    "--talos-initrd-url", default=None, help="Initramfs of the built-in 'default' Environment."
)
@click.option(
    "--agent-image",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=None,
    help="Directory with a prebuilt agent vmlinuz and initramfs.img (default: build the "
    "image from Debian packages, or reuse the one cached in DATA_DIR/agent).",
)
@click.option(
    "--talos-stand-in",
    is_flag=True,
    help="Make the agent image, in its target mode, the 'default' Environment, for a lab "
    "that cannot download Talos (in production 'default' is Talos itself).",
)
@click.option(
    "--asset-dir",
    "asset_dirs",
    multiple=True,
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="A directory whose files Environments may name with file:// URLs (repeatable); "
    "no other local file is read for an Environment.",
)
@click.option("--no-boot", is_flag=True, help="Run no network boot services at all.")
@click.option(
    "--leader-elect",
    is_flag=True,
    help="With --in-cluster or --kubeconfig: run the controllers and DHCP only while elected "
    "leader (Lease 'arges'), so several replicas can run; boot HTTP and TFTP serve on all.",
)
@click.option(
    "--leader-election-namespace",
    default=None,
    help="Namespace of the leader election Lease (default: the pod's, or the kubeconfig "
    "context's).",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Log lines as text, or as one JSON object per line (time, level, logger, message).",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Also serve Prometheus metrics at /metrics on this plain-HTTP port of --api-address "
    "(they are always on the API port, at /metrics, with the admin token).",
)
def up(
    data_dir: Path,
    api_address: str,
    api_port: int,
    kubeconfig: Path | None,
    in_cluster: bool,
    boot_address: str | None,
    http_port: int,
    tftp_port: int,
    dhcp_mode: str,
    dhcp_interface: str | None,
    proxydhcp_port: int,
    dhcp_network: str | None,
    dhcp_pool: str | None,
    auto_accept_servers: bool,
    wipe_mode: str,
    talos_kernel_url: str | None,
    talos_initrd_url: str | None,
    agent_image: Path | None,
    talos_stand_in: bool,
    asset_dirs: tuple[Path, ...],
    no_boot: bool,
    leader_elect: bool,
    leader_election_namespace: str | None,
    metrics_port: int | None,
    log_format: str,
) -> None:
    """Start Arges: the Kubernetes API, the controllers and the network boot services.

    Runs in the foreground; Ctrl-C (SIGINT) or SIGTERM shuts it down cleanly.
    kubectl works at once with --kubeconfig DATA_DIR/kubeconfig.
    """
    use_format(log_format)
    external: Connection | None = None
    try:
        if in_cluster:
            external = connection.in_cluster()
        elif kubeconfig is not None:
            external = connection.from_kubeconfig(kubeconfig)
    except connection.ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    election = None
    if leader_elect:
        if external is None:
            raise click.ClickException(
                "--leader-elect needs --in-cluster or --kubeconfig: the embedded API server "
                "serves one process"
            )
        election = ElectionConfig(namespace=leader_election_namespace or external.namespace)
    boot = None
    if not no_boot:
        pool: tuple[str, str] | None = None
        if dhcp_pool:
            start, sep, end = dhcp_pool.partition("-")
            if not sep:
                raise click.BadParameter("use START-END", param_hint="--dhcp-pool")
            pool = (start, end)
        boot = BootConfig(
            address=boot_address or default_address(),
            http_port=http_port,
            tftp_port=tftp_port,
            dhcp_mode=None if dhcp_mode == "off" else dhcp_mode,  # type: ignore[arg-type]
            dhcp_interface=dhcp_interface,
            proxydhcp_port=proxydhcp_port,
            dhcp_network=dhcp_network,
            dhcp_pool=pool,
        )
    agent = None if no_boot else agent_environment(data_dir, agent_image)
    default = environments.talos_default(kernel_url=talos_kernel_url, initrd_url=talos_initrd_url)
    if talos_stand_in:
        if agent is None:
            raise click.ClickException("--talos-stand-in needs the agent image (see above)")
        default = stand_in_environment(data_dir, agent)
    config = PlaneConfig(
        data_dir=data_dir,
        api_address=api_address,
        api_port=api_port,
        default_environment=default,
        agent_environment=agent,
        boot=boot,
        discovery=DiscoveryConfig(auto_accept=auto_accept_servers, wipe_mode=wipe_mode),  # type: ignore[arg-type]
        external_api=external,
        asset_dirs=asset_dirs,
        leader_election=election,
        metrics_port=metrics_port,
    )
    plane = ManagementPlane(config)
    try:
        asyncio.run(_run(plane))
    except StorageError as exc:
        raise click.ClickException(f"cannot open the state database: {exc}") from exc
    except (NotInstalled, KubeError) as exc:
        raise click.ClickException(f"cannot use the Kubernetes API: {exc}") from exc
    except PermissionError as exc:
        raise click.ClickException(
            f"{exc}; ports below 1024 (DHCP 67, TFTP 69) need root: run as root, or use "
            "--dhcp-mode off and --tftp-port above 1023"
        ) from exc
    except OSError as exc:
        raise click.ClickException(f"cannot start: {exc}") from exc
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    if plane.lost.is_set():
        raise click.ClickException(
            "lost the leader election: exiting, so that a restart rejoins as a candidate"
        )


def stand_in_environment(data_dir: Path, agent: EnvironmentSpec) -> EnvironmentSpec:
    """The lab's ``default`` Environment: the agent's kernel with the stand-in initramfs
    (built, or reused from ``DATA_DIR/standin``).

    Raises:
        click.ClickException: the stand-in image cannot be built.
    """
    click.echo("Talos stand-in image: building or reusing the cached one ...", err=True)
    try:
        image = standin.ensure(data_dir, Path(urlparse(agent.initrd.url).path))
    except BuildError as exc:
        raise click.ClickException(f"cannot build the Talos stand-in image: {exc}") from exc
    click.echo(f"Talos stand-in image: {image.initrd}", err=True)
    return environments.talos_stand_in(agent, image.initrd, image.sha512)


SWITCH_INTERVAL = 0.0005
"""Seconds a thread may hold the GIL while another waits for it (the default is 0.005)."""

FULL_COLLECTION_EVERY = 100
"""Collections of the garbage collector's middle generation per collection of the oldest,
a full one (the default is 10)."""

YOUNG_COLLECTION_AFTER = 50_000
"""Container objects allocated (net of those freed) between two collections of the
garbage collector's youngest generation (the default is 700)."""


def settle_process() -> None:
    """Tune the interpreter for a long-running ``arges up`` once everything has started
    (``benchmarks/fleet.py`` calls it at the same point, so it measures the process as it
    runs): the objects built so far are frozen out of the garbage collector's sight, the
    youngest generation is collected after :data:`YOUNG_COLLECTION_AFTER` allocations, full
    collections are made once per :data:`FULL_COLLECTION_EVERY` middle-generation ones, and
    the GIL switch interval is shortened to :data:`SWITCH_INTERVAL`. Process-wide; not for a
    process that starts and stops planes repeatedly (tests)."""
    # What starting built (modules, schemas, the loaded store) lives as long as the process.
    # Frozen out of the collector's sight, it is no longer walked by every full collection,
    # which otherwise stalls the event loop, and every open watch, for 50-200 ms at a time.
    gc.collect()
    gc.freeze()
    # Every watch event replaces an object in a cache; the copy it replaces was promoted to
    # the oldest generation while it lived, and is freed by its reference count, not by the
    # collector. That churn made a full collection, which walks every live object (more
    # with every server), run every 10 middle-generation ones: in benchmarks/fleet.py at
    # 1,000 servers the plane's process made 52 of them, 11.3 s of CPU. One in 100: 5, 1.2 s;
    # its peak RSS 307 -> 313 MiB (reference cycles wait longer to be found).
    # Nearly all of what a request or a watch event allocates (decoded JSON, models) is
    # freed by its reference count within the request; a collection of the youngest
    # generation every 700 allocations still walked what was alive at that moment, 2,000
    # times per 300 servers in benchmarks/fleet.py: 1.4 s of the plane's CPU and 0.45 s of
    # the API server's went to young collections (after 50,000: 0.17 and 0.1 s, with no
    # longer pauses: 0.4 ms a collection either way; RSS +5 MiB).
    _, gen1, _ = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_AFTER, gen1, FULL_COLLECTION_EVERY)
    # The store's writer thread takes the GIL back after each SQLite call of a commit; with
    # the default 5 ms switch interval a busy event loop keeps it that long each time, which
    # delays every commit and so every watch event (commit p90 5-9 ms under load, 2-4 at 0.5).
    sys.setswitchinterval(SWITCH_INTERVAL)


async def _run(plane: ManagementPlane) -> None:
    raise_open_files_limit()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await plane.start()
    except BaseException:
        await plane.stop()
        raise
    settle_process()
    if plane.config.boot is not None:
        # For other commands on this machine (arges lab up checks its servers can boot).
        running.record(plane.config.data_dir, plane.config.boot)
    try:
        assert plane.kube is not None
        click.echo(f"Arges is up. API server: {plane.kube.connection.server}")
        if plane.boot is not None:
            click.echo(f"  network boot: {plane.boot.http.base_url}")
        if plane.metrics_port is not None:
            click.echo(
                f"  metrics: http://{plane.config.api_address}:{plane.metrics_port.port}/metrics"
            )
        if plane.api is not None:
            click.echo(f"  dashboard: {plane.api.url}/ui (sign in with `arges ui token`)")
            click.echo(f"  export KUBECONFIG={plane.api.kubeconfig_path.resolve()}")
        click.echo("  kubectl get servers,serverclasses,environments")
        click.echo("Press Ctrl-C to stop.")
        waits = [asyncio.ensure_future(e.wait()) for e in (stop, plane.lost)]
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for wait in waits:
            wait.cancel()
    finally:
        if plane.config.boot is not None:
            running.forget(plane.config.data_dir)
        await plane.stop()
