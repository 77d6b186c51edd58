"""The management plane in one process: API server, controllers, boot services.

``arges up`` runs one :class:`ManagementPlane`; integration tests run it in-process. Start
order follows dependencies: the API server (with Arges' CRDs installed), then the
controllers, which talk to it through a Kubernetes client exactly as they would to a real
cluster, then the boot services (DHCP, TFTP, and the HTTP port that also serves the
metadata service and the discovery endpoint).

Given an external API server (``arges up --in-cluster`` or ``--kubeconfig``: a real
Kubernetes cluster with Arges' CRDs from ``deploy/``), there is no embedded one and the rest
runs unchanged against it. There, several replicas may run with leader election
(:mod:`arges.kube.leaderelection`): every replica serves boot HTTP and TFTP, which only read
state (Environments and ServerClasses from mirrors of their own,
:attr:`ManagementPlane.boot_reads`) or make request-driven writes that the API serialises,
while only the leader runs the controllers and DHCP (two DHCP servers would both answer). A
replica that loses the lease stops its controllers at once and sets
:attr:`ManagementPlane.lost`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import unquote, urlparse

from arges.access.guard import BootGuard
from arges.access.sightings import Sightings
from arges.api.crds import all_crds
from arges.api.environment import AGENT_ENVIRONMENT, DEFAULT_ENVIRONMENT, EnvironmentSpec
from arges.apiserver.server import ApiServer, ApiServerConfig
from arges.assets import AssetCache
from arges.boot.decider import KubeBootDecider
from arges.boot.gate import GatedDecider, gated
from arges.boot.media import AgentMedia
from arges.boot.services import BootConfig, BootServices
from arges.controllers.announcer import Announcer
from arges.controllers.clusters import TalosClusterController
from arges.controllers.constellations import ConstellationController
from arges.controllers.environments import EnvironmentController
from arges.controllers.metalclusters import MetalClusterController
from arges.controllers.metalmachines import MetalMachineController
from arges.controllers.pause import PlaneGate
from arges.controllers.power import PowerController
from arges.controllers.runtime import Cache, Controller, Manager
from arges.controllers.serverclasses import ServerClassController
from arges.controllers.servers import ServerController
from arges.discovery.api import DiscoveryApi, DiscoveryConfig
from arges.errors import ArgesError
from arges.kube.client import KubeClient
from arges.kube.connection import Connection, from_kubeconfig
from arges.kube.errors import NotFound
from arges.kube.informer import Informers
from arges.kube.leaderelection import ElectionConfig, LeaderElector, new_identity
from arges.kube.resources import (
    CONSTELLATIONS,
    ENVIRONMENTS,
    MANAGEMENT_PLANES,
    METAL_CLUSTERS,
    METAL_MACHINES,
    SERVER_BINDINGS,
    SERVER_CLASSES,
    SERVERS,
    TALOS_CLUSTERS,
)
from arges.lab.state import StateError, load_state
from arges.metadata.service import MetadataService, talos_patcher
from arges.metal.agent import seen_interval
from arges.metal.environments import talos_default
from arges.metal.media import MediaUnavailable
from arges.metrics import Metrics
from arges.metrics.http import MetricsPort, exposition
from arges.tasks import cancel_and_wait, finish
from arges.ui.app import PREFIX as UI_PREFIX
from arges.ui.app import Dashboard

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlaneConfig:
    """Everything ``arges up`` can be told."""

    data_dir: Path
    api_address: str = "127.0.0.1"
    api_port: int = 6443
    default_environment: EnvironmentSpec = field(default_factory=talos_default)
    agent_environment: EnvironmentSpec | None = None
    """The built-in ``agent`` Environment; None leaves it out (``arges up`` builds the agent
    image and sets it; tests that need no agent image leave it None)."""
    boot: BootConfig | None = None
    """Network boot services; None runs none (tests, or a plane without a boot network)."""
    discovery: DiscoveryConfig = field(default_factory=DiscoveryConfig)
    power_refresh: float = 60.0
    """Seconds between BMC power-state reads of a server with nothing to do."""
    reboot_timeout: float = 900.0
    """Seconds to wait for the agent after a power cycle before cycling again."""
    reset_timeout: float = 300.0
    """Seconds a released member whose Talos was asked to reset has to reboot into the agent
    before it is power-cycled into it (the network-booted wipe)."""
    talos_port: int = 50000
    """Port of the Talos API (apid) on cluster members."""
    cluster_recheck: float = 10.0
    """Seconds between reconciles of a TalosCluster that is not settled (provisioning, or
    rolling out)."""
    talos_probe_interval: float = 10.0
    """Seconds a member's Talos API observation (version, boot time, services) is reused."""
    external_api: Connection | None = None
    """An existing Kubernetes API server (a real cluster) to use instead of the embedded
    one; Arges' CRDs must be installed there (``kubectl apply -k deploy``)."""
    asset_dirs: tuple[Path, ...] = ()
    """Where Environments' ``file://`` URLs may point (``--asset-dir``); the built-in
    Environments' own ``file://`` files are allowed besides."""
    leader_election: ElectionConfig | None = None
    """Run the controllers and DHCP only while elected leader on this Lease (replicas
    against an external API server); None runs them at once."""
    metrics_port: int | None = None
    """Also serve ``/metrics`` over plain HTTP on this port of ``api_address`` (0: any
    free port); None: only on the API port, with the admin token."""


class NotInstalled(ArgesError):
    """The external API server does not serve Arges' resources (its CRDs are missing)."""


class ManagementPlane:
    """A running management plane (see the module docstring)."""

    def __init__(self, config: PlaneConfig) -> None:
        self.config = config
        self.metrics = Metrics()
        self.api: ApiServer | None = None
        if config.external_api is None:
            self.api = ApiServer(
                ApiServerConfig(
                    data_dir=config.data_dir,
                    address=config.api_address,
                    port=config.api_port,
                    crds=all_crds(),
                ),
                self.metrics,
            )
        self.metrics_port: MetricsPort | None = None
        if config.metrics_port is not None:
            self.metrics_port = MetricsPort(self.metrics, config.api_address, config.metrics_port)
        self.assets = AssetCache(
            config.data_dir / "assets", self._file_roots(), private=[config.data_dir]
        )
        self.kube: KubeClient | None = None
        self.boot: BootServices | None = None
        self.guard: BootGuard | None = None
        self.media: AgentMedia | None = None
        self.dashboard: Dashboard | None = None
        self.boot_reads: Informers | None = None
        """The boot port's mirrors of Environments and ServerClasses (every replica's)."""
        self._stop = asyncio.Event()
        self._controllers: asyncio.Task[None] | None = None
        self._manager: Manager | None = None
        self.elector: LeaderElector | None = None
        self._election: asyncio.Task[None] | None = None
        self.lost = asyncio.Event()
        """Set when this replica lost the leader election (its controllers are stopped)."""
        self.gate: PlaneGate | None = None
        self._gate: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start everything; returns once the controllers are running.

        Raises:
            NotInstalled: an external API server lacks Arges' CRDs.
            KubeError: an external API server cannot be used (unreachable, forbidden).
        """
        self.config.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.config.data_dir.chmod(0o700)
        self.assets.secure()
        if self.api is not None:
            await self.api.start()
            self.api.mounts["/metrics"] = exposition(self.metrics, self.api.token)
            # The controllers' requests and watches skip HTTP (a request's CPU is most of it
            # HTTP, both ends); their lists skip TLS through the server's local socket.
            connection = replace(
                from_kubeconfig(self.api.kubeconfig_path),
                unix_socket=self.api.socket_path,
                local=self.api,
            )
        else:
            assert self.config.external_api is not None
            connection = self.config.external_api
        self.kube = KubeClient(connection, component="arges")
        await self._check_installed(self.kube)
        sightings = None
        if self.config.boot is not None:
            dhcp = self.config.boot.dhcp_mode is not None
            sightings = Sightings() if dhcp else None
            self.guard = BootGuard(self.kube, sightings, vet_dhcp=dhcp, metrics=self.metrics)
        # The plane-wide pause (ManagementPlane): read before anything acts, followed after.
        self.gate = PlaneGate(self.kube)
        await self.gate.load()
        self._gate = asyncio.create_task(self.gate.run(self._stop), name="plane-gate")
        if self.api is not None:
            self.dashboard = Dashboard(
                self.kube,
                self.metrics,
                admin_token=self.api.token,
                pki_dir=self.config.data_dir / "pki",
                console_log=lab_console_log(self.config.data_dir),
            )
            await self.dashboard.start()
            self.api.mounts[UI_PREFIX] = self.dashboard.handle
        if self.guard is not None:
            self.media = AgentMedia(
                self.kube,
                self.assets,
                self.config.data_dir / "media",
                lambda: self.boot.http.base_url if self.boot is not None else "",
                self.guard,
            )
        cache = Cache()
        self.metrics.servers = lambda: cache.objects(SERVERS)
        controllers: list[Controller] = [
            ServerController(self.kube, cache),
            ServerClassController(self.kube, cache),
            EnvironmentController(
                self.kube,
                cache,
                self.assets,
                self._built_ins(),
            ),
            PowerController(
                self.kube,
                cache,
                refresh=self.config.power_refresh,
                reboot_timeout=self.config.reboot_timeout,
                reset_timeout=self.config.reset_timeout,
                media=self._media_url if self.config.boot is not None else None,
                metrics=self.metrics,
            ),
            TalosClusterController(
                self.kube,
                cache,
                talos_port=self.config.talos_port,
                recheck=self.config.cluster_recheck,
                probe_interval=self.config.talos_probe_interval,
            ),
            # The Cluster API provider: its watches of Cluster API's Clusters and Machines
            # start when their CRDs exist; until then MetalClusters and MetalMachines wait.
            MetalClusterController(self.kube, cache),
            MetalMachineController(self.kube, cache),
            ConstellationController(self.kube, cache),
            Announcer(self.kube, cache),
        ]
        for controller in controllers:
            controller.gate = self.gate
        # Embedded, the dashboard mirrors Servers, ServerBindings and more already: the
        # controllers take its informers' changes rather than hold a second copy (there a kind
        # stops being served only when its CRD goes, and its objects with it).
        shared = self.dashboard.informers if self.dashboard is not None else None
        self._manager = Manager(connection, controllers, cache, self.metrics, shared)
        if self.config.leader_election is None:
            await self._run_controllers()
        if self.config.boot is not None:
            assert self.guard is not None and self.media is not None
            self.boot_reads = Informers(
                connection, [ENVIRONMENTS, SERVER_CLASSES], component="arges-boot"
            )
            self.boot_reads.start()
            environments = self.boot_reads.informer(ENVIRONMENTS)
            server_classes = self.boot_reads.informer(SERVER_CLASSES)
            routes = [
                *MetadataService(
                    self.kube, talos_patcher, self.guard, server_classes=server_classes
                ).routes(),
                *DiscoveryApi(self.kube, self._discovery(), self.guard).routes(),
                *self.media.routes(),
            ]
            self.boot = BootServices(
                self.config.boot,
                GatedDecider(
                    KubeBootDecider(
                        self.kube,
                        self.guard,
                        environments=environments,
                        server_classes=server_classes,
                    ),
                    self.gate.refusal,
                ),
                self.assets,
                self.config.data_dir,
                gated(routes, self.gate.refusal),
                sightings,
                self.guard,
                self.metrics,
            )
            await self.boot.start(dhcp=self.config.leader_election is None)
        if self.metrics_port is not None:
            await self.metrics_port.start()
        if self.config.leader_election is not None:
            self.elector = LeaderElector(self.kube, self.config.leader_election, new_identity())
            log.info("leader election: candidate %s", self.elector.identity)
            self._election = asyncio.create_task(self._lead(), name="leader-election")

    def _discovery(self) -> DiscoveryConfig:
        """The discovery endpoint's settings, ``lastSeen`` written often enough for this
        plane's reboot timeout."""
        config = self.config.discovery
        every = seen_interval(config.seen_every, self.config.reboot_timeout)
        return replace(config, seen_every=every)

    async def _run_controllers(self) -> None:
        """Start the controllers; returns once they are running."""
        assert self._manager is not None
        ready = asyncio.Event()
        self._controllers = asyncio.create_task(
            self._manager.run(self._stop, ready), name="controllers"
        )
        done, _ = await asyncio.wait(
            [self._controllers, asyncio.create_task(ready.wait())],
            return_when=asyncio.FIRST_COMPLETED,
        )
        if self._controllers in done:
            self._controllers.result()

    async def _lead(self) -> None:
        """Wait to be elected; then run the controllers and DHCP until the lease is lost."""
        assert self.elector is not None
        await self.elector.acquire()
        try:
            await self._run_controllers()
            if self.boot is not None:
                await self.boot.start_dhcp()
        except Exception:
            log.exception("the elected leader could not start its controllers or DHCP")
        else:
            await self.elector.hold()
        # Stop acting at once: another replica may take over once the lease expires.
        self._stop.set()
        if self.boot is not None and self.boot.dhcp is not None:
            await self.boot.dhcp.stop()
        self.lost.set()

    async def _media_url(self, uuid: str) -> str:
        """The URL of Server ``uuid``'s agent ISO, built (for the power controller).

        Raises:
            MediaUnavailable: the boot HTTP service has not started, or as
                :meth:`AgentMedia.url`.
        """
        if self.boot is None or self.media is None:
            raise MediaUnavailable("the boot HTTP service has not started yet")
        return await self.media.url(uuid)

    @staticmethod
    async def _check_installed(kube: KubeClient) -> None:
        for resource in (
            SERVERS,
            SERVER_CLASSES,
            ENVIRONMENTS,
            SERVER_BINDINGS,
            TALOS_CLUSTERS,
            METAL_CLUSTERS,
            METAL_MACHINES,
            CONSTELLATIONS,
            MANAGEMENT_PLANES,
        ):
            try:
                await kube.list(resource, limit=1)
            except NotFound as exc:
                raise NotInstalled(
                    f"the API server at {kube.connection.server} does not serve "
                    f"{resource.plural}.{resource.group}: install Arges' CRDs first "
                    "(kubectl apply -k deploy)"
                ) from exc

    def _file_roots(self) -> list[Path]:
        roots = list(self.config.asset_dirs)
        for spec in self._built_ins().values():
            for url in (spec.kernel.url, spec.initrd.url):
                parsed = urlparse(url)
                if parsed.scheme == "file":
                    roots.append(Path(unquote(parsed.path)))
        return roots

    def _built_ins(self) -> dict[str, EnvironmentSpec]:
        built_ins = {DEFAULT_ENVIRONMENT: self.config.default_environment}
        if self.config.agent_environment is not None:
            built_ins[AGENT_ENVIRONMENT] = self.config.agent_environment
        return built_ins

    async def stop(self) -> None:
        """Stop the boot services, the controllers (then give up the lease, if held), then
        the API server."""
        if self._election is not None:
            await cancel_and_wait(self._election)
        if self.metrics_port is not None:
            await self.metrics_port.stop()
        if self.boot is not None:
            await self.boot.stop()
        if self.boot_reads is not None:
            await self.boot_reads.stop()
        if self.guard is not None:
            self.guard.refusals.flush()
        self._stop.set()
        if self._controllers is not None:
            await finish(self._controllers, 30)
        if self.elector is not None:
            await self.elector.release()
        if self._gate is not None:
            await finish(self._gate, 30)
        if self.dashboard is not None:
            await self.dashboard.stop()
        if self.kube is not None:
            await self.kube.close()
        if self.api is not None:
            await self.api.stop()


def lab_console_log(data_dir: Path) -> Callable[[str], Path | None]:
    """Where the serial console log of a lab server is (``arges lab`` in ``data_dir``), for
    the dashboard's link; None for servers that are not the lab's."""

    def console_log(uuid: str) -> Path | None:
        try:
            state = load_state(data_dir / "lab")
        except StateError:
            return None
        server = next((s for s in state.servers if s.uuid == uuid), None) if state else None
        return server.console_log if server is not None and server.console_log.exists() else None

    return console_log
