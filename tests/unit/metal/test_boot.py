from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from arges.api.binding import ServerBinding
from arges.api.environment import Environment
from arges.api.serverclass import ServerClass
from arges.metal.boot import BootDecision, decide
from tests.unit.metal.conftest import server

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC).isoformat()


def env(name: str, ready: bool = True) -> Environment:
    return Environment.from_json(
        {
            "metadata": {"name": name},
            "spec": {"kernel": {"url": "file:///k"}, "initrd": {"url": "file:///i"}},
            "status": {
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True" if ready else "False",
                        "lastTransitionTime": NOW,
                    }
                ]
            },
        }
    )


def binding(installed: bool = False, cls: str | None = "workers") -> ServerBinding:
    status = {"conditions": [{"type": "Installed", "status": "True", "lastTransitionTime": NOW}]}
    return ServerBinding.from_json(
        {
            "metadata": {"name": "s"},
            "spec": {
                "serverRef": {"name": "s"},
                "consumerRef": {"apiVersion": "v1", "kind": "X", "name": "x"},
                **({"serverClassRef": {"name": cls}} if cls else {}),
            },
            "status": status if installed else {},
        }
    )


def sclass(**spec: Any) -> ServerClass:
    return ServerClass.from_json({"metadata": {"name": "workers"}, "spec": spec})


ENVS = {
    e.metadata["name"]: e
    for e in (
        env("agent"),
        env("default"),
        env("custom"),
        env("class-env"),
        env("broken", ready=False),
    )
}


@pytest.mark.parametrize(
    ("srv", "bnd", "cls", "expected"),
    [
        (None, None, None, ("environment", "agent", False, None)),
        (server("s", accepted=False), None, None, ("environment", "agent", False, None)),
        (server("s", clean=False), None, None, ("environment", "agent", False, None)),
        (server("s", clean=True), None, None, ("environment", "agent", False, None)),
        (server("s"), binding(), None, ("environment", "default", True, None)),
        (
            server("s", environmentRef={"name": "custom"}),
            binding(),
            sclass(environmentRef={"name": "class-env"}),
            ("environment", "custom", True, None),
        ),
        (
            server("s"),
            binding(),
            sclass(environmentRef={"name": "class-env"}),
            ("environment", "class-env", True, None),
        ),
        (server("s"), binding(installed=True), None, ("disk", None, False, "ipxe-exit")),
        (
            server("s"),
            binding(installed=True),
            sclass(bootFromDiskMethod="http-404"),
            ("disk", None, False, "http-404"),
        ),
        (
            server("s", bootFromDiskMethod="ipxe-sanboot"),
            binding(installed=True),
            sclass(bootFromDiskMethod="http-404"),
            ("disk", None, False, "ipxe-sanboot"),
        ),
        (
            server("s", pxeBootAlways=True),
            binding(installed=True),
            None,
            ("environment", "default", True, None),
        ),
        (
            server("s", environmentRef={"name": "broken"}),
            binding(),
            None,
            ("not-ready", "broken", False, None),
        ),
        (
            server("s", environmentRef={"name": "missing"}),
            binding(),
            None,
            ("not-ready", "missing", False, None),
        ),
    ],
)
def test_every_row_of_the_boot_rules(srv, bnd, cls, expected) -> None:
    got: BootDecision = decide(srv, bnd, cls, ENVS)
    assert (got.kind, got.environment, got.target, got.disk_method) == expected
    assert got.reason


def test_agent_not_ready_is_412_material() -> None:
    envs = {"default": env("default")}
    got = decide(None, None, None, envs)
    assert got.kind == "not-ready" and "agent" in got.reason
