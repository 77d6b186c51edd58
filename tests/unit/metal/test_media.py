"""The kernel command line written into each Server's agent ISO."""

from __future__ import annotations

import pytest

from arges.api.server import AgentNetwork
from arges.metal.media import MediaUnavailable, agent_media_args

ENV = ["console=ttyS0,115200n8", "console=tty0", "arges.url=http://stale"]


def test_dhcp_servers_get_where_to_register() -> None:
    assert agent_media_args(ENV, "http://10.88.0.1:8081", None) == [
        "console=ttyS0,115200n8",
        "console=tty0",
        "arges.url=http://10.88.0.1:8081",
    ]


def test_static_servers_get_the_kernels_ip_argument() -> None:
    network = AgentNetwork(
        address="10.0.5.20/23",
        gateway="10.0.4.1",
        nameservers=["10.0.0.53", "10.0.1.53", "10.0.2.53"],
        mac="52:54:00:AA:BB:01",
    )
    assert agent_media_args(ENV, "http://arges:8081", network)[2:] == [
        "arges.url=http://arges:8081",
        "arges.mac=52:54:00:aa:bb:01",
        "ip=10.0.5.20::10.0.4.1:255.255.254.0:::off:10.0.0.53:10.0.1.53",
    ]
    bare = agent_media_args([], "http://a", AgentNetwork(address="192.168.1.9/24"))
    assert bare[-1] == "ip=192.168.1.9:::255.255.255.0:::off"


@pytest.mark.parametrize(
    "network",
    [
        AgentNetwork(address="not-an-address"),
        AgentNetwork(address="10.0.0.1/24", gateway="gw.example"),
        AgentNetwork(address="10.0.0.1/24", nameservers=["::1"]),
    ],
)
def test_unusable_networks_say_so(network: AgentNetwork) -> None:
    with pytest.raises(MediaUnavailable, match=r"spec\.agentNetwork"):
        agent_media_args([], "http://a", network)
