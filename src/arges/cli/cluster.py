"""``arges cluster``: create, list and delete TalosClusters, and get their credentials.

A thin client of the Kubernetes API (the embedded one or a real one): ``create`` writes one
TalosCluster object, which the cluster controller provisions; nothing here talks to servers.
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from arges.api.cluster import CLUSTER_GROUP
from arges.cli import options
from arges.kube.client import KubeClient
from arges.kube.connection import ConfigError, from_kubeconfig
from arges.kube.errors import KubeError
from arges.kube.resources import SECRETS, TALOS_CLUSTERS
from arges.talos.errors import TalosError
from arges.talos.patches import JSONPatch, load

T = TypeVar("T")


def _kubeconfig_default() -> Path:
    env = os.environ.get("KUBECONFIG")
    return Path(env.split(os.pathsep)[0]) if env else options.DEFAULT_DATA_DIR / "kubeconfig"


def _run(kubeconfig: Path, work: Callable[[KubeClient], Awaitable[T]]) -> T:
    try:
        connection = from_kubeconfig(kubeconfig)
    except ConfigError as exc:
        raise click.ClickException(f"{exc} (is Arges running? see `arges up`)") from exc

    async def main() -> T:
        async with KubeClient(connection, component="arges-cli") as kube:
            return await work(kube)

    try:
        return asyncio.run(main())
    except KubeError as exc:
        raise click.ClickException(exc.message) from exc


kubeconfig_option = click.option(
    "--kubeconfig",
    type=click.Path(dir_okay=False, path_type=Path),
    default=_kubeconfig_default,
    show_default="$KUBECONFIG, else .arges/kubeconfig",
    help="Kubeconfig of the Arges API.",
)
namespace_option = click.option(
    "--namespace", "-n", default="default", show_default=True, help="Namespace of the cluster."
)


@click.group()
def cluster() -> None:
    """Talos clusters: create, list, delete, and their talosconfig and kubeconfig."""


def _patch_fields(values: tuple[str, ...]) -> dict[str, list[Any]]:
    json_ops: list[Any] = []
    strategic: list[str] = []
    for value in values:
        text = Path(value[1:]).read_text() if value.startswith("@") else value
        try:
            patch = load(text)
        except TalosError as exc:
            raise click.BadParameter(f"{value}: {exc}", param_hint="--config-patch") from exc
        if isinstance(patch, JSONPatch):
            json_ops += patch.operations
        else:
            strategic.append(text)
    out: dict[str, list[Any]] = {}
    if json_ops:
        out["configPatches"] = json_ops
    if strategic:
        out["strategicPatches"] = strategic
    return out


@cluster.command()
@click.argument("name")
@click.option("--endpoint", required=True, help="Control-plane URL, e.g. https://10.5.0.10:6443.")
@click.option("--control-planes", type=click.IntRange(0, 1000), default=1, show_default=True)
@click.option("--workers", type=click.IntRange(0, 1000), default=0, show_default=True)
@click.option("--class", "server_class", default="any", show_default=True, help="ServerClass.")
@click.option("--talos-version", default="v1.11", show_default=True)
@click.option("--kubernetes-version", default=None, help="Default: the Talos line's default.")
@click.option("--install-disk", default=None, help="Disk Talos installs to (default /dev/sda).")
@click.option(
    "--config-patch", multiple=True, help="Patch for every member (YAML/JSON text or @file)."
)
@namespace_option
@kubeconfig_option
def create(
    name: str,
    endpoint: str,
    control_planes: int,
    workers: int,
    server_class: str,
    talos_version: str,
    kubernetes_version: str | None,
    install_disk: str | None,
    config_patch: tuple[str, ...],
    namespace: str,
    kubeconfig: Path,
) -> None:
    """Create the TalosCluster NAME; Arges allocates, boots and configures its servers."""
    spec: dict[str, Any] = {
        "endpoint": endpoint,
        "talosVersion": talos_version,
        "controlPlane": {"replicas": control_planes, "serverClassRef": {"name": server_class}},
        **_patch_fields(config_patch),
    }
    if workers:
        spec["workers"] = [
            {"name": "workers", "replicas": workers, "serverClassRef": {"name": server_class}}
        ]
    if kubernetes_version:
        spec["kubernetesVersion"] = kubernetes_version
    if install_disk:
        spec["installDisk"] = install_disk
    body = {"metadata": {"name": name, "namespace": namespace}, "spec": spec}
    _run(kubeconfig, lambda kube: kube.create(TALOS_CLUSTERS, body, namespace))
    click.echo(f"taloscluster.{CLUSTER_GROUP}/{name} created")


@cluster.command("list")
@click.option("--all-namespaces", "-A", is_flag=True, help="Every namespace.")
@namespace_option
@kubeconfig_option
def list_(all_namespaces: bool, namespace: str, kubeconfig: Path) -> None:
    """List TalosClusters with their endpoint, members and phase."""
    items = _run(
        kubeconfig, lambda kube: kube.list(TALOS_CLUSTERS, None if all_namespaces else namespace)
    )
    rows = [("NAMESPACE", "NAME", "ENDPOINT", "CONTROL PLANES", "WORKERS", "PHASE")]
    for item in items:
        status = item.get("status") or {}
        rows.append(
            (
                item["metadata"].get("namespace", ""),
                item["metadata"]["name"],
                (item.get("spec") or {}).get("endpoint", ""),
                status.get("controlPlanes") or "-",
                status.get("workerCount") or "-",
                status.get("phase") or "-",
            )
        )
    if len(rows) == 1:
        click.echo("No TalosClusters found.")
        return
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("   ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


@cluster.command()
@click.argument("name")
@click.option("--wait/--no-wait", default=False, help="Wait until every member is released.")
@click.option("--timeout", type=float, default=600.0, show_default=True, help="Seconds to wait.")
@namespace_option
@kubeconfig_option
def delete(name: str, wait: bool, timeout: float, namespace: str, kubeconfig: Path) -> None:
    """Delete the TalosCluster NAME: its servers are released (wiped) and its Secrets removed."""

    async def work(kube: KubeClient) -> bool:
        await kube.delete(TALOS_CLUSTERS, name, namespace)
        return not wait or await kube.wait_deleted(TALOS_CLUSTERS, name, namespace, within=timeout)

    if not _run(kubeconfig, work):
        raise click.ClickException(f"{name} still exists after {timeout:.0f} s")
    click.echo(f"taloscluster.{CLUSTER_GROUP}/{name} deleted")


async def _credential(kube: KubeClient, name: str, namespace: str, field: str, key: str) -> str:
    item = await kube.get(TALOS_CLUSTERS, name, namespace)
    secret_name = (item.get("status") or {}).get(field)
    if not secret_name:
        conditions = (item.get("status") or {}).get("conditions") or []
        why = "; ".join(
            c.get("message", "")
            for c in conditions
            if c.get("status") != "True" and c.get("message")
        )
        raise click.ClickException(f"{name} has no {key} yet" + (f" ({why})" if why else ""))
    secret = await kube.get(SECRETS, secret_name, namespace)
    encoded = (secret.get("data") or {}).get(key)
    if not encoded:
        raise click.ClickException(f"Secret {namespace}/{secret_name} has no key {key!r}")
    return base64.b64decode(encoded).decode()


@cluster.command("talosconfig")
@click.argument("name")
@namespace_option
@kubeconfig_option
def talosconfig_(name: str, namespace: str, kubeconfig: Path) -> None:
    """Print the admin talosconfig of NAME (for talosctl --talosconfig)."""
    click.echo(
        _run(
            kubeconfig,
            lambda kube: _credential(kube, name, namespace, "talosconfigSecret", "talosconfig"),
        ),
        nl=False,
    )


@cluster.command("kubeconfig")
@click.argument("name")
@namespace_option
@kubeconfig_option
def kubeconfig_(name: str, namespace: str, kubeconfig: Path) -> None:
    """Print the admin kubeconfig of NAME, once etcd is bootstrapped and Talos handed it out."""
    click.echo(
        _run(
            kubeconfig,
            lambda kube: _credential(kube, name, namespace, "kubeconfigSecret", "kubeconfig"),
        ),
        nl=False,
    )
