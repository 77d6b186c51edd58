"""``arges status``: the fleet on one screen (servers by state, clusters by phase, failures)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from arges.cli.cluster import _run, kubeconfig_option
from arges.kube.client import KubeClient
from arges.kube.resources import EVENTS, SERVERS, TALOS_CLUSTERS
from arges.ui import views

STATES = ("discovered", "accepted", "clean", "allocated", "powered", "cordoned", "unaccepted")
LABELS = {"unaccepted": "not accepted"}
SHOWN = 8
"""At most this many servers needing attention, and this many failures, are listed."""


@click.command()
@kubeconfig_option
def status(kubeconfig: Path) -> None:
    """Summarise the fleet: servers by state, clusters by phase, recent failures."""
    click.echo(_run(kubeconfig, summary), nl=False)


async def summary(kube: KubeClient) -> str:
    """The text ``arges status`` prints."""
    servers = await kube.list(SERVERS)
    clusters = await kube.list(TALOS_CLUSTERS)
    events = await kube.list(EVENTS)
    return render(servers, clusters, events)


def render(
    servers: list[dict[str, Any]], clusters: list[dict[str, Any]], events: list[dict[str, Any]]
) -> str:
    """The summary of these objects (see :func:`status`)."""
    counts = views.state_counts(servers)
    lines = [
        f"Servers: {len(servers)}  "
        + "  ".join(f"{LABELS.get(s, s)} {counts[s]}" for s in STATES if s != "discovered")
    ]
    troubled = [(str(s["metadata"]["name"]), views.attention(s)) for s in servers]
    troubled = sorted((name, why) for name, why in troubled if why)
    if troubled:
        lines.append(f"Needing attention: {len(troubled)}")
        lines += [f"  {name}  {'; '.join(why)}" for name, why in troubled[:SHOWN]]
        if len(troubled) > SHOWN:
            lines.append(f"  ... and {len(troubled) - SHOWN} more")
    phases = views.phases(clusters)
    lines.append(
        "Clusters: "
        + (", ".join(f"{n} {phase}" for phase, n in phases.items()) if phases else "none")
    )
    for body in sorted(
        clusters, key=lambda c: (c["metadata"].get("namespace"), c["metadata"]["name"])
    ):
        meta, state = body["metadata"], body.get("status") or {}
        _, ready, desired = views.members(body)
        lines.append(
            f"  {meta.get('namespace')}/{meta['name']}  {state.get('phase') or 'Pending'}  "
            f"{ready}/{desired} servers ready"
        )
    warnings = [e for e in events if e.get("type") == "Warning"]
    failures = views.events(warnings, limit=SHOWN)
    lines.append(f"Recent failures: {'none' if not failures else ''}".rstrip())
    for e in failures:
        times = f" (x{e.count})" if e.count > 1 else ""
        lines.append(f"  {e.last}  {e.kind} {e.name}  {e.reason}{times}: {e.message}")
    return "\n".join(lines) + "\n"
