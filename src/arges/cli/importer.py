"""``arges import sidero``: a Sidero Metal management cluster's servers, classes and
environments brought into Arges, bound servers still bound and booting from their disks.

The I/O around two pure steps: read Sidero (GET and LIST only, through
:class:`SideroReader`: nothing here can write to it), read what Arges holds, translate
(:func:`arges.metal.sidero.translate`), plan (:func:`arges.metal.sidero.plan.plan`), then write
the plan's steps in order, or nothing with ``--dry-run``. One line per object, one per thing
that could not be carried, and a summary. Credentials go from Sidero's Secrets into Arges'
Secrets and are never printed or logged.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
from collections import Counter
from pathlib import Path
from typing import Any

import click

from arges.cli import options
from arges.kube.client import KubeClient
from arges.kube.errors import AlreadyExists, KubeError, NotFound
from arges.kube.resources import (
    ENVIRONMENTS,
    INFRASTRUCTURE,
    METAL_MACHINES,
    SECRETS,
    SERVER_BINDINGS,
    SERVER_CLASSES,
    SERVERS,
    Resource,
)
from arges.metal.sidero import translate
from arges.metal.sidero.base import BMC_SECRET_NAMESPACE, SideroState, secret_refs
from arges.metal.sidero.plan import Plan, Step, Target, plan

SIDERO_GROUP = "metal.sidero.dev"
CAPS_VERSION = "v1alpha3"
"""CAPS' kinds were never served at another version (``reference/sidero.md`` §1.1)."""
RESOURCES = {
    "Server": SERVERS,
    "ServerClass": SERVER_CLASSES,
    "Environment": ENVIRONMENTS,
    "ServerBinding": SERVER_BINDINGS,
    "Secret": SECRETS,
}
VERBS: dict[str, tuple[str, str]] = {
    "create": ("created", "would create"),
    "complete": ("completed an interrupted import", "would complete an interrupted import"),
    "take over": ("taken over", "would take over"),
    "unchanged": ("unchanged", "unchanged"),
    "leave": ("left as is", "left as is"),
}


class SideroReader:
    """Read-only access to the Sidero management cluster."""

    def __init__(self, kube: KubeClient) -> None:
        self._kube = kube

    async def version(self) -> str | None:
        """The version of ``metal.sidero.dev`` it prefers (v1alpha2 since Sidero 0.6,
        v1alpha1 before), None when it serves none."""
        return await self._kube.preferred_version(SIDERO_GROUP)

    async def list(self, res: Resource) -> list[dict[str, Any]]:
        """Every object of ``res``; none when the kind is not served."""
        try:
            return await self._kube.list(res)
        except NotFound:
            return []

    async def secret(self, namespace: str, name: str) -> dict[str, str] | None:
        """A Secret's decoded data, None when it is missing or not text."""
        try:
            body = await self._kube.get(SECRETS, name, namespace)
        except NotFound:
            return None
        try:
            return {
                str(k): base64.b64decode(str(v), validate=True).decode()
                for k, v in (body.get("data") or {}).items()
            }
        except (binascii.Error, UnicodeDecodeError):
            return None


async def read_sidero(reader: SideroReader) -> tuple[SideroState, str]:
    """Everything the import needs from Sidero, and the ``metal.sidero.dev`` version read.

    Raises:
        click.ClickException: the cluster serves no ``metal.sidero.dev``.
    """
    version = await reader.version()
    if version is None:
        raise click.ClickException(
            "that cluster serves no metal.sidero.dev API: it is not a Sidero Metal "
            "management cluster (check --kubeconfig and --context)"
        )

    def sidero(plural: str, kind: str) -> Resource:
        return Resource(SIDERO_GROUP, version, plural, kind, namespaced=False)

    servers = await reader.list(sidero("servers", "Server"))
    refs = sorted(secret_refs(servers))
    found = [await reader.secret(namespace, name) for namespace, name in refs]
    state = SideroState(
        servers=servers,
        server_classes=await reader.list(sidero("serverclasses", "ServerClass")),
        environments=await reader.list(sidero("environments", "Environment")),
        bindings=await reader.list(
            Resource(INFRASTRUCTURE, CAPS_VERSION, "serverbindings", "ServerBinding", False)
        ),
        metal_machines=await reader.list(
            Resource(INFRASTRUCTURE, CAPS_VERSION, "metalmachines", "MetalMachine", True)
        ),
        secrets={ref: data for ref, data in zip(refs, found, strict=True) if data is not None},
    )
    return state, version


async def read_target(kube: KubeClient) -> Target:
    """What Arges holds of the kinds an import writes.

    Raises:
        click.ClickException: the API serves no ``metal.arges.dev`` (it is not Arges').
    """
    if await kube.preferred_version(SERVERS.group) is None:
        raise click.ClickException(
            "the target API serves no metal.arges.dev: it is not one Arges runs on (start "
            "`arges up`, or give --target-kubeconfig)"
        )
    objects: dict[tuple[str, str, str], dict[str, Any]] = {}
    for kind, res in RESOURCES.items():
        namespace = BMC_SECRET_NAMESPACE if kind == "Secret" else None
        for item in await kube.list(res, namespace):
            meta = item["metadata"]
            objects[(kind, meta.get("namespace") or "", meta["name"])] = item
    try:
        machines = await kube.list(METAL_MACHINES)
    except NotFound:
        machines = []
    uids = {
        (m["metadata"]["namespace"], m["metadata"]["name"]): m["metadata"]["uid"] for m in machines
    }
    return Target(objects, uids)


async def write(kube: KubeClient, steps: list[Step]) -> None:
    """Each step in order.

    Raises:
        click.ClickException: naming the step that failed; what came before it stands, and
        running the import again completes it.
    """
    for step in steps:
        res = RESOURCES[step.kind]
        try:
            if step.verb == "create":
                await kube.create(res, step.body, step.namespace)
            elif step.verb == "status":
                await kube.patch(res, step.name, step.body, step.namespace, subresource="status")
            elif step.verb == "patch":
                await kube.patch(res, step.name, step.body, step.namespace)
            else:
                await kube.replace(res, step.body)
        except KubeError as exc:
            why = (
                "it appeared in Arges while the import ran"
                if isinstance(exc, AlreadyExists)
                else exc.message
            )
            raise click.ClickException(
                f"stopped writing {step.kind} {step.name}: {why}. What was written before it "
                "stands; run the same command again to complete the import."
            ) from exc


def report(result: Plan, version: str, *, dry_run: bool) -> list[str]:
    """The lines to print: one per object, one per thing not carried, and a summary."""
    lines = [
        f"{o.subject}: {VERBS[o.action][1 if dry_run else 0]} ({o.summary})"
        for o in result.outcomes
    ]
    lines += [f"note: {note}" for note in result.notes]
    counts: Counter[str] = Counter(o.action for o in result.outcomes)
    tally = ", ".join(
        f"{counts[action]} {VERBS[action][1 if dry_run else 0]}"
        for action in VERBS
        if counts[action]
    )
    written = "dry run: nothing was written to Arges" if dry_run else f"{len(result.steps)} writes"
    lines.append(
        f"Sidero (metal.sidero.dev/{version}): {tally or 'nothing to import'}; "
        f"{len(result.notes)} notes; {written}; nothing was written to Sidero"
    )
    return lines


@click.group("import")
def import_() -> None:
    """Bring servers and their settings in from another bare-metal manager."""


@import_.command("sidero")
@click.option(
    "--kubeconfig",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Kubeconfig of the Sidero Metal management cluster (only read, never written).",
)
@click.option("--context", default=None, help="Context in --kubeconfig (default: its current).")
@click.option(
    "--target-kubeconfig",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Kubeconfig of the API Arges runs on (default: the data directory's, the embedded "
    "API of `arges up`).",
)
@options.data_dir("Data directory of the running `arges up` to import into.")
@click.option("--dry-run", is_flag=True, help="Print what would be imported; write nothing.")
def sidero(
    kubeconfig: Path,
    context: str | None,
    target_kubeconfig: Path | None,
    data_dir: Path,
    dry_run: bool,
) -> None:
    """Import a running Sidero Metal: its Servers (UUIDs, labels, acceptance, cordon, BMC with
    its credentials, patches, inventory), ServerClasses and Environments, and its bound
    servers still bound to their MetalMachines, booting from their disks. Nothing in Sidero
    changes, running it again changes nothing, and an interrupted run is completed by the
    next."""
    source = options.connect(kubeconfig, context, "Sidero's kubeconfig", "arges-import")
    target_path = target_kubeconfig or data_dir / "kubeconfig"
    target = options.connect(
        target_path, None, "Arges' kubeconfig (is `arges up` running?)", "arges-import"
    )

    async def run() -> list[str]:
        async with source, target:
            try:
                state, version = await read_sidero(SideroReader(source))
            except KubeError as exc:
                raise click.ClickException(f"cannot read Sidero: {exc.message}") from exc
            try:
                held = await read_target(target)
            except KubeError as exc:
                raise click.ClickException(f"cannot read Arges: {exc.message}") from exc
            translation = translate(state, now=dt.datetime.now(dt.UTC))
            result = plan(translation, held)
            if not dry_run:
                await write(target, result.steps)
            return report(result, version, dry_run=dry_run)

    for line in asyncio.run(run()):
        click.echo(line)
