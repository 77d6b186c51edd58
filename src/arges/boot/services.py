"""All boot services, started and stopped together from one configuration."""

from __future__ import annotations

import ipaddress
import json
import logging
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from arges.access.sightings import Sightings
from arges.assets import AssetCache
from arges.boot.dhcp import BootFiles
from arges.boot.dhcpserver import DhcpConfig, DhcpService, Mode
from arges.boot.http import Admission, BootHttp, Decider, HttpConfig
from arges.boot.leases import PoolConfig
from arges.boot.tftpserver import TftpServer
from arges.metrics import Metrics

log = logging.getLogger(__name__)

IPXE_DIR = Path("/usr/lib/ipxe")


@dataclass(frozen=True)
class BootConfig:
    """The flags of ``arges up`` that concern network boot."""

    address: str
    http_port: int = 8081
    tftp_port: int = 69
    dhcp_mode: Mode | None = "proxy"
    dhcp_interface: str | None = None
    dhcp_port: int = 67
    proxydhcp_port: int = 4011
    dhcp_network: str | None = None
    dhcp_pool: tuple[str, str] | None = None
    dhcp_router: str | None = None
    tftp_root: Path = IPXE_DIR
    uefi_binary: str = "ipxe.efi"
    arm64_binary: str | None = None
    reservations: tuple[tuple[str, str], ...] = field(default=())


def default_address() -> str:
    """The first non-loopback IPv4 address of this host (``--boot-address`` default)."""
    try:
        out = subprocess.run(
            ["ip", "-j", "-4", "addr", "show", "scope", "global"],
            capture_output=True,
            text=True,
            check=True,
        )
        for link in json.loads(out.stdout):
            for addr in link.get("addr_info", []):
                if addr.get("local"):
                    return str(addr["local"])
    except (OSError, subprocess.CalledProcessError, ValueError):
        pass
    return "127.0.0.1"


class BootServices:
    """DHCP (unless off), TFTP and the boot HTTP service; DHCP notes what it hears in
    ``sightings``."""

    def __init__(
        self,
        config: BootConfig,
        decider: Decider,
        assets: AssetCache,
        state_dir: Path,
        extra_routes: Sequence[web.RouteDef] = (),
        sightings: Sightings | None = None,
        admission: Admission | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.config = config
        self.metrics = metrics if metrics is not None else Metrics()
        self.http = BootHttp(
            HttpConfig(config.address, config.http_port, tftp_root=config.tftp_root),
            decider,
            assets,
            extra_routes,
            admission,
            self.metrics,
        )
        # HTTP and TFTP on the boot address only; DHCP must hear broadcasts (see dhcpserver).
        self.tftp = TftpServer(
            config.tftp_root, config.address, config.tftp_port, metrics=self.metrics
        )
        self.dhcp: DhcpService | None = None
        if config.dhcp_mode is not None:
            pool = None
            if config.dhcp_mode == "full":
                if config.dhcp_network is None:
                    raise ValueError("full DHCP mode needs --dhcp-network (e.g. 10.88.0.0/24)")
                net = ipaddress.IPv4Network(config.dhcp_network)
                start, end = config.dhcp_pool or (
                    str(net[net.num_addresses // 2]),
                    str(net[net.num_addresses - 2]),
                )
                pool = PoolConfig(
                    config.dhcp_network,
                    start,
                    end,
                    config.dhcp_router,
                    reservations=config.reservations,
                )
            files = BootFiles(
                config.address,
                config.http_port,
                config.uefi_binary,
                arm64_binary=config.arm64_binary,
            )
            self.dhcp = DhcpService(
                DhcpConfig(
                    mode=config.dhcp_mode,
                    files=files,
                    interface=config.dhcp_interface,
                    port=config.dhcp_port,
                    proxy_port=config.proxydhcp_port,
                    pool=pool,
                    lease_file=state_dir / "dhcp-leases.json",
                    sightings=sightings,
                ),
                self.metrics,
            )

    async def start(self, *, dhcp: bool = True) -> None:
        """Start HTTP, TFTP, then DHCP (without ``dhcp``, later by :meth:`start_dhcp`: on the
        elected leader only); a service that cannot start stops the others."""
        started: list[HttpOrUdp] = []
        try:
            for service in (self.http, self.tftp, self.dhcp if dhcp else None):
                if service is not None:
                    await service.start()
                    started.append(service)
        except BaseException:
            for service in reversed(started):
                await service.stop()
            raise

    async def start_dhcp(self) -> None:
        """Start DHCP, if configured (when :meth:`start` was told not to)."""
        if self.dhcp is not None:
            await self.dhcp.start()

    async def stop(self) -> None:
        """Stop DHCP, TFTP and boot HTTP, whichever run."""
        for service in (self.dhcp, self.tftp, self.http):
            if service is not None:
                await service.stop()


HttpOrUdp = BootHttp | TftpServer | DhcpService
