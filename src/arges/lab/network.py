"""The lab's provisioning network: a network namespace with a bridge, and Arges attached to it.

::

    root namespace                     namespace arges-lab
    arges0 10.88.0.1/24  <== veth ==>  arges0-lab --+
    (Arges' boot services)                           br0 10.88.0.2/24 (site dnsmasq)
                                       labNtM -------+ (one tap per lab server NIC)

Everything is created with iproute2's ``ip`` and removed by :meth:`LabNetwork.destroy`,
which is safe to call on a half-built or already removed network (so a failed ``lab up``
leaves nothing behind). Each step is a plain argv list, so plans are testable without root.
"""

from __future__ import annotations

import ipaddress
import logging
import subprocess
from dataclasses import dataclass

from arges.errors import ArgesError

log = logging.getLogger(__name__)


class NetworkError(ArgesError):
    """A command that builds or removes the lab network failed (stderr included)."""


@dataclass(frozen=True)
class LabNetwork:
    """Names and addresses of one lab network."""

    namespace: str = "arges-lab"
    bridge: str = "br0"
    host_link: str = "arges0"
    subnet: str = "10.88.0.0/24"

    @property
    def peer_link(self) -> str:
        return f"{self.host_link}-lab"

    def _net(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.subnet)

    @property
    def host_address(self) -> str:
        """Arges' address on the provisioning network (where servers reach it)."""
        return str(self._net()[1])

    @property
    def bridge_address(self) -> str:
        """The site DHCP server's address."""
        return str(self._net()[2])

    @property
    def prefix(self) -> int:
        return self._net().prefixlen

    def dhcp_range(self) -> tuple[str, str]:
        """The site DHCP pool: the upper half of the subnet, skipping the last address."""
        net = self._net()
        return str(net[net.num_addresses // 2]), str(net[net.num_addresses - 2])

    def in_namespace(self, *argv: str) -> list[str]:
        """``argv`` run inside the lab's network namespace (``ip netns exec``)."""
        return ["ip", "netns", "exec", self.namespace, *argv]

    def create_plan(self) -> list[list[str]]:
        """The commands that build the network, in order."""
        ns = self.in_namespace
        return [
            ["ip", "netns", "add", self.namespace],
            ns("ip", "link", "set", "lo", "up"),
            ns("ip", "link", "add", self.bridge, "type", "bridge"),
            ns("ip", "addr", "add", f"{self.bridge_address}/{self.prefix}", "dev", self.bridge),
            ns("ip", "link", "set", self.bridge, "up"),
            ["ip", "link", "add", self.host_link, "type", "veth", "peer", "name", self.peer_link],
            ["ip", "link", "set", self.peer_link, "netns", self.namespace],
            ns("ip", "link", "set", self.peer_link, "master", self.bridge, "up"),
            ["ip", "addr", "add", f"{self.host_address}/{self.prefix}", "dev", self.host_link],
            ["ip", "link", "set", self.host_link, "up"],
        ]

    def tap_plan(self, tap: str) -> list[list[str]]:
        """The commands that add tap device ``tap`` to the bridge."""
        ns = self.in_namespace
        return [
            ns("ip", "tuntap", "add", "dev", tap, "mode", "tap"),
            ns("ip", "link", "set", tap, "master", self.bridge, "up"),
        ]

    def destroy_plan(self) -> list[list[str]]:
        """The commands that remove everything (deleting the namespace takes its devices)."""
        return [
            ["ip", "link", "del", self.host_link],
            ["ip", "netns", "del", self.namespace],
        ]

    def exists(self) -> bool:
        """Whether the lab's network namespace exists."""
        out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
        return any(line.split()[0] == self.namespace for line in out.stdout.splitlines() if line)

    def create(self, taps: list[str]) -> None:
        """Build the network and its taps.

        Raises:
            NetworkError: a step failed; the partial network has been removed again.
        """
        try:
            for argv in self.create_plan() + [c for tap in taps for c in self.tap_plan(tap)]:
                _run(argv)
        except NetworkError:
            self.destroy()
            raise

    def destroy(self) -> None:
        """Remove the network; missing pieces are fine."""
        for argv in self.destroy_plan():
            subprocess.run(argv, capture_output=True, check=False)


def _run(argv: list[str]) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise NetworkError(f"{' '.join(argv)}: {result.stderr.strip() or result.returncode}")
    log.debug("ran %s", " ".join(argv))
