"""``arges constellation status NAME``: a Constellation's members, mesh and anycast address.

A reader of the Constellation's status (``kubectl apply -f`` is how one is created); one row
per member cluster, then the ClusterMesh wiring, then the conditions that are not true.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from arges.cli.cluster import _run, kubeconfig_option, namespace_option
from arges.kube.resources import CONSTELLATIONS


@click.group()
def constellation() -> None:
    """Constellations: a management cluster and workload clusters in one object."""


def table(rows: list[tuple[str, ...]]) -> list[str]:
    """Rows as left-aligned columns, three spaces apart."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def lines(body: dict[str, Any]) -> list[str]:
    """What ``status`` prints for a Constellation (as the API returns it)."""
    status = body.get("status") or {}
    name = body["metadata"]["name"]
    out = [f"Constellation {name}: {status.get('phase') or 'not reconciled yet'}"]
    rows: list[tuple[str, ...]] = [
        ("MEMBER", "ROLE", "PHASE", "ENDPOINT", "INGRESS", "CONTROL PLANES", "WORKERS", "ADD-ONS")
    ]
    for member in status.get("members") or []:
        rows.append(
            (
                member["name"],
                member["role"],
                member.get("phase") or "-",
                member["endpoint"],
                member.get("ingressAddress") or "-",
                member.get("controlPlanes") or "-",
                member.get("workers") or "-",
                ",".join(member.get("addons") or []) or "-",
            )
        )
    if len(rows) > 1:
        out += table(rows)
    mesh = status.get("clusterMesh")
    if mesh:
        out.append(
            f"ClusterMesh: {mesh['state']}; shared CA {mesh['caFingerprint']} "
            f"(Secret {mesh['caSecret']})"
        )
        out += table(
            [("  CLUSTER", "ID", "MESH ENDPOINT")]
            + [(f"  {c['name']}", str(c["id"]), c["endpoint"]) for c in mesh["clusters"]]
        )
    if status.get("anycastAddress"):
        out.append(f"Anycast ingress: {status['anycastAddress']} (every satellite)")
    for condition in status.get("conditions") or []:
        if condition.get("status") != "True":
            out.append(f"{condition['type']}: {condition.get('message', '')}")
    return out


@constellation.command("status")
@click.argument("name")
@namespace_option
@kubeconfig_option
def status_(name: str, namespace: str, kubeconfig: Path) -> None:
    """Print the Constellation NAME: each member cluster's phase, endpoints and add-ons, the
    ClusterMesh wiring, and what is not right."""
    body = _run(kubeconfig, lambda kube: kube.get(CONSTELLATIONS, name, namespace))
    for line in lines(body):
        click.echo(line)
