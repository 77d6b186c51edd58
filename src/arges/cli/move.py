"""``arges move``: everything Arges manages, from the API it runs on to another one.

The I/O around :mod:`arges.metal.move` (what moves, in what order, rewritten how). A move:

1. reads what moves from the source: Arges' kinds (all but the ManagementPlane, which each
   API has its own of), the kinds of any CRD labelled ``cluster.x-k8s.io/provider`` (Cluster
   API's, its providers'), and the Secrets that go with them; and what the target holds of
   them. A conflict, or a Cluster API kind with objects that the target does not serve, stops
   it here, before anything is written;
2. pauses the source (its ManagementPlane ``arges``: no controller acts, the boot port answers
   503), recording the move there (:class:`arges.metal.move.Record`), and waits until every
   live Arges instance on it acknowledges; then reads the objects again, as they are now;
3. installs Arges' CRDs on the target where they are absent, pauses the target the same way
   (creating its ManagementPlane paused, so an Arges started there meanwhile waits), waits
   for its instances;
4. writes every object in order: created (or, when an earlier run wrote it, replaced), then
   its status through the status subresource; a source object being deleted is deleted on
   the target once copied, so its finalizers run there;
5. records the move done, then unpauses the target: an Arges there (``arges up --kubeconfig``
   or the in-cluster Deployment) takes over. The source stays paused, its objects kept as they
   were (a record of what moved; nothing acts on them).

Killed at any point, the same command resumes from the record and what the target holds
(copies carry ``metal.arges.dev/moved-from``): nothing is written twice or lost.
``--rollback`` (before the move is done) deletes the copies from the target, restores the
target's pause and unpauses the source. Secrets' values are never printed or logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from arges.api.crds import DEFINITIONS, all_crds
from arges.api.plane import PLANE_NAME
from arges.cli import options
from arges.cli.cluster import kubeconfig_option
from arges.kube.client import KubeClient
from arges.kube.errors import AlreadyExists, KubeError, NotFound
from arges.kube.resources import MANAGEMENT_PLANES, NAMESPACES, SECRETS, Resource
from arges.metal.move import (
    MOVED_FROM,
    RECORD,
    Action,
    Key,
    MoveError,
    Phase,
    Record,
    capi_cluster,
    copy_of,
    decide,
    key,
    leftovers,
    moves,
    moves_kind,
    order,
    secrets_to_move,
    status_differs,
    subject,
    uid,
    unacknowledged,
    with_version,
)

CRDS = Resource(
    "apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", False
)
REASON = "arges move"
"""The start of the reason a move gives its pauses (how a rerun knows the pause is its own)."""
Echo = Callable[[str], None]


@dataclass(frozen=True)
class Kind:
    """A kind that moves: where it is served, whether it has a status subresource, and the
    name of its CRD (None for Secrets)."""

    res: Resource
    status: bool
    crd: str | None

    @property
    def arges(self) -> bool:
        """Whether it is one of Arges' own (the move installs its CRD on the target)."""
        return self.crd in ARGES_CRDS


ARGES_CRDS = {d.name for d in DEFINITIONS}
ARGES_KINDS = [
    Kind(Resource(d.group, d.version, d.plural, d.kind, d.namespaced), True, d.name)
    for d in DEFINITIONS
    if d.kind != "ManagementPlane"
]
SECRETS_KIND = Kind(SECRETS, False, None)


def _served(crd: Mapping[str, Any]) -> Kind:
    """The kind of a CRD, at its storage version."""
    spec = crd["spec"]
    version = next((v for v in spec["versions"] if v.get("storage")), spec["versions"][0])
    res = Resource(
        spec["group"],
        version["name"],
        spec["names"]["plural"],
        spec["names"]["kind"],
        spec["scope"] == "Namespaced",
    )
    return Kind(res, "status" in (version.get("subresources") or {}), crd["metadata"]["name"])


async def discover(source: KubeClient) -> list[Kind]:
    """Arges' kinds, then those of the source's other Cluster API provider CRDs."""
    found = list(ARGES_KINDS)
    for crd in await source.list(CRDS):
        if crd["metadata"]["name"] not in ARGES_CRDS and moves_kind(crd):
            found.append(_served(crd))
    return found


async def _list(kube: KubeClient, kind: Kind) -> list[dict[str, Any]]:
    """Every object of ``kind``, with its apiVersion and kind (list items may lack them);
    none when the kind is not served."""
    try:
        items = await kube.list(kind.res)
    except NotFound:
        return []
    return [{**i, "apiVersion": kind.res.api_version, "kind": kind.res.kind} for i in items]


async def read_source(
    source: KubeClient, kinds: list[Kind]
) -> tuple[list[Mapping[str, Any]], dict[Key, Kind]]:
    """What moves, in write order, and the kind of each object."""
    objects: list[Mapping[str, Any]] = []
    kind_of: dict[Key, Kind] = {}
    for kind in kinds:
        for obj in await _list(source, kind):
            if moves(obj):
                objects.append(obj)
                kind_of[key(obj)] = kind
    for secret in secrets_to_move(objects, await _list(source, SECRETS_KIND)):
        objects.append(secret)
        kind_of[key(secret)] = SECRETS_KIND
    return order(objects), kind_of


async def read_target(target: KubeClient, kinds: list[Kind]) -> dict[Key, dict[str, Any]]:
    """What the target holds of the kinds that move (by :data:`Key`)."""
    held: dict[Key, dict[str, Any]] = {}
    for kind in [*kinds, SECRETS_KIND]:
        for obj in await _list(target, kind):
            held[key(obj)] = obj
    return held


def preflight(
    objects: list[Mapping[str, Any]],
    kind_of: Mapping[Key, Kind],
    held: Mapping[Key, Any],
    served: set[str],
) -> list[str]:
    """Why the move cannot start (empty: it can): conflicts on the target, and kinds the
    target does not serve that Arges cannot install (``served``: the CRD names it has)."""
    problems = []
    kinds = {kind_of[key(o)] for o in objects}
    missing = sorted(
        k.crd for k in kinds if k.crd is not None and not k.arges and k.crd not in served
    )
    if missing:
        problems.append(
            "the target serves no " + ", ".join(missing) + ": install those providers there "
            "first (clusterctl init), as clusterctl move requires"
        )
    for obj in objects:
        if decide(obj, copy_of(obj, {}), held.get(key(obj))) == Action.CONFLICT:
            problems.append(f"{subject(obj)} already exists on the target and is not a copy of it")
    return problems


async def plane_of(kube: KubeClient) -> dict[str, Any] | None:
    """The API's ManagementPlane ``arges``; None when there is none (or no such kind)."""
    try:
        return await kube.get(MANAGEMENT_PLANES, PLANE_NAME)
    except NotFound:
        return None


def _annotations(plane: Mapping[str, Any] | None) -> dict[str, str]:
    return dict(((plane or {}).get("metadata") or {}).get("annotations") or {})


async def set_plane(
    kube: KubeClient, paused: bool, reason: str | None, record: Record | bool | None = False
) -> None:
    """Set the ManagementPlane's pause (creating it) and, unless ``record`` is False, the move
    record (None removes it), in one write."""
    patch: dict[str, Any] = {"spec": {"paused": paused, "reason": reason}}
    if record is not False:
        value = record.encode() if isinstance(record, Record) else None
        patch["metadata"] = {"annotations": {RECORD: value}}
    try:
        await kube.patch(MANAGEMENT_PLANES, PLANE_NAME, patch)
    except NotFound:
        body = {
            "metadata": {"name": PLANE_NAME, **patch.get("metadata", {})},
            "spec": patch["spec"],
        }
        try:
            await kube.create(MANAGEMENT_PLANES, body)
        except AlreadyExists:
            await kube.patch(MANAGEMENT_PLANES, PLANE_NAME, patch)


async def wait_paused(kube: KubeClient, what: str, within: float, echo: Echo) -> None:
    """Wait until every live Arges instance on ``kube`` acknowledges the pause.

    Raises:
        click.ClickException: some have not within ``within`` seconds (naming them).
    """
    deadline = time.monotonic() + within
    while True:
        plane = await plane_of(kube)
        waiting = unacknowledged(plane or {}, time.time())
        if not waiting:
            echo(f"{what}: paused")
            return
        if time.monotonic() > deadline:
            raise click.ClickException(
                f"{what}: these Arges instances have not acknowledged the pause within "
                f"{within:.0f} s: {', '.join(waiting)}. Run the same command again to go on, or "
                "--rollback."
            )
        await asyncio.sleep(0.5)


async def install_crds(target: KubeClient, echo: Echo) -> None:
    """Create Arges' CRDs the target lacks, then wait until it serves every Arges kind."""
    have = {c["metadata"]["name"] for c in await target.list(CRDS)}
    for crd in all_crds():
        if crd["metadata"]["name"] not in have:
            with contextlib.suppress(AlreadyExists):
                await target.create(CRDS, crd)
            echo(f"CustomResourceDefinition {crd['metadata']['name']}: created")
    deadline = time.monotonic() + 60
    for res in [k.res for k in ARGES_KINDS] + [MANAGEMENT_PLANES]:
        while True:
            try:
                await target.list(res, limit=1)
                break
            except NotFound:
                if time.monotonic() > deadline:
                    raise click.ClickException(
                        f"the target does not serve {res.plural}.{res.group} a minute after "
                        "its CRD was created"
                    ) from None
                await asyncio.sleep(0.2)


async def ensure_namespaces(target: KubeClient, objects: list[Mapping[str, Any]]) -> None:
    """Create the namespaces of ``objects`` the target lacks."""
    for namespace in sorted({key(o)[2] for o in objects} - {""}):
        with contextlib.suppress(AlreadyExists):
            await target.create(NAMESPACES, {"metadata": {"name": namespace}})


async def pause_clusters(
    kube: KubeClient,
    objects: Sequence[Mapping[str, Any]],
    kind_of: Mapping[Key, Kind],
    paused: bool,
    echo: Echo,
) -> None:
    """Set ``spec.paused`` of the Cluster API Clusters among ``objects`` on ``kube`` (where it
    differs), so that Cluster API's controllers leave them alone meanwhile."""
    for obj in objects:
        if capi_cluster(obj) and bool((obj.get("spec") or {}).get("paused")) != paused:
            _, _, namespace, name = key(obj)
            await kube.patch(kind_of[key(obj)].res, name, {"spec": {"paused": paused}}, namespace)
            echo(f"{subject(obj)}: {'paused' if paused else 'resumed'}")


def copied(held: Mapping[Key, Mapping[str, Any]]) -> dict[str, str]:
    """Source uid to target uid, of the copies the target holds (an earlier run's)."""
    return {
        str(o["metadata"]["annotations"][MOVED_FROM]): uid(o)
        for o in held.values()
        if MOVED_FROM in (o["metadata"].get("annotations") or {})
    }


async def copy(
    target: KubeClient,
    objects: list[Mapping[str, Any]],
    kind_of: Mapping[Key, Kind],
    kinds: list[Kind],
    echo: Echo,
) -> int:
    """Write every object to the target, in order; returns how many writes it took."""
    held = await read_target(target, kinds)
    uids = copied(held)
    await ensure_namespaces(target, objects)
    writes = 0
    for obj in objects:
        kind = kind_of[key(obj)]
        namespace = key(obj)[2] or None
        body = copy_of(obj, uids)
        existing = held.get(key(obj))
        action = decide(obj, body, existing)
        if action == Action.CONFLICT:
            raise click.ClickException(
                f"{subject(obj)} appeared on the target while the move ran and is not a copy "
                "of it; remove it, or --rollback"
            )
        written: dict[str, Any]
        if action == Action.CREATE:
            written = await target.create(
                kind.res, {k: v for k, v in body.items() if k != "status"}, namespace
            )
            writes += 1
        elif action == Action.UPDATE:
            assert existing is not None
            written = await target.replace(kind.res, with_version(body, existing))
            writes += 1
        else:
            assert existing is not None
            written = existing
        uids[uid(obj)] = uid(written)
        status = kind.status and status_differs(body, written)
        if status:
            full = {**written, "status": body["status"]}
            await target.replace(kind.res, full, subresource="status")
            writes += 1
        if obj["metadata"].get("deletionTimestamp") and not written["metadata"].get(
            "deletionTimestamp"
        ):
            await target.delete(kind.res, key(obj)[3], namespace, uid=uid(written))
            writes += 1
        what = {Action.CREATE: "created", Action.UPDATE: "updated"}.get(action, "present")
        echo(f"{subject(obj)}: {what}{' (status written)' if status else ''}")
    return writes


def _former(plane: Mapping[str, Any] | None) -> Record | None:
    """The finished move out of an API (its ManagementPlane's record), if it had one."""
    record = Record.decode(_annotations(plane).get(RECORD))
    return record if record is not None and record.phase == Phase.DONE else None


async def remove(
    kube: KubeClient, objects: Sequence[Mapping[str, Any]], kinds: list[Kind], why: str, echo: Echo
) -> None:
    """Delete ``objects`` (in the order given), their finalizers first: nothing runs on a
    paused API to finish them."""
    by_kind = {(k.res.group, k.res.kind): k for k in [*kinds, SECRETS_KIND]}
    for obj in objects:
        group, kind_name, namespace, name = key(obj)
        res = by_kind[(group, kind_name)].res
        try:
            if obj["metadata"].get("finalizers"):
                await kube.patch(res, name, {"metadata": {"finalizers": None}}, namespace or None)
            await kube.delete(res, name, namespace or None)
        except NotFound:
            pass
        echo(f"{subject(obj)}: {why}")


async def rollback(
    source: KubeClient,
    target: KubeClient,
    record: Record | None,
    objects: list[Mapping[str, Any]],
    kind_of: Mapping[Key, Kind],
    kinds: list[Kind],
    echo: Echo,
) -> None:
    """Delete what the move copied to the target, restore the target's pause, unpause the
    source and remove the record.

    Raises:
        click.ClickException: the move is done (the target has taken over).
    """
    if record is not None and record.phase == Phase.DONE:
        raise click.ClickException(
            f"the move to {record.target} is done and Arges there has taken over; move back "
            "instead (arges move from there)"
        )
    held = await read_target(target, kinds)
    sources = {uid(o) for o in objects}
    copies = [
        held[key(o)]
        for o in reversed(objects)
        if key(o) in held
        and (held[key(o)]["metadata"].get("annotations") or {}).get(MOVED_FROM) in sources
    ]
    await remove(target, copies, kinds, "removed from the target", echo)
    plane = await plane_of(target)
    if _former(plane) is not None:
        # The target was itself moved from, and is paused since: it stays so.
        echo("target: stays paused (its own objects were moved away before)")
    elif plane is not None and str((plane.get("spec") or {}).get("reason") or "").startswith(
        REASON
    ):
        was = bool(record is not None and record.target_was_paused)
        await set_plane(target, was, None if not was else "paused before the move")
        echo("target: pause restored" if was else "target: unpaused")
    await set_plane(source, False, None, None)
    echo("source: unpaused; the move is rolled back")


async def move(
    source: KubeClient,
    target: KubeClient,
    *,
    dry_run: bool,
    undo: bool,
    within: float,
    echo: Echo,
) -> None:
    """``arges move`` (see the module docstring)."""
    started = time.monotonic()
    to = target.connection.server
    if await source.preferred_version(MANAGEMENT_PLANES.group) is None:
        raise click.ClickException(
            f"the source API at {source.connection.server} serves no {MANAGEMENT_PLANES.group}: "
            "Arges does not run on it (check --kubeconfig)"
        )
    record = Record.decode(_annotations(await plane_of(source)).get(RECORD))
    if record is not None and record.target != to:
        raise click.ClickException(
            f"a move to {record.target} is under way on this source: run it again with that "
            "target to finish it, or --rollback it"
        )
    kinds = await discover(source)
    objects, kind_of = await read_source(source, kinds)
    if undo:
        await rollback(source, target, record, objects, kind_of, kinds, echo)
        return
    if record is not None and record.phase == Phase.DONE:
        if not dry_run:
            await finish(target, record, echo)
        echo(f"the move to {to} is done; the source stays paused")
        return
    held = await read_target(target, kinds)
    served = {c["metadata"]["name"] for c in await target.list(CRDS)}
    problems = preflight(objects, kind_of, held, served)
    former = _former(await plane_of(target))
    stale = leftovers(held.values(), objects) if former is not None else []
    if dry_run:
        whence = former.target if former is not None else ""
        for obj in stale:
            echo(f"{subject(obj)}: would delete (left over from the move to {whence})")
        uids = copied(held)
        for obj in objects:
            action = decide(obj, copy_of(obj, uids), held.get(key(obj)))
            verb = {Action.CREATE: "would create", Action.UPDATE: "would update"}.get(
                action, str(action)
            )
            echo(f"{subject(obj)}: {verb}")
        echo(f"dry run: {len(objects)} objects would move to {to}; nothing was written")
        if problems:
            raise click.ClickException("the move would stop: " + "; ".join(problems))
        return
    if problems:
        raise click.ClickException("nothing was written: " + "; ".join(problems))

    if record is None:
        record = Record(to, Phase.PAUSING)
    await set_plane(source, True, f"{REASON} to {to}", record)
    await wait_paused(source, "source", within, echo)
    await pause_clusters(source, objects, kind_of, True, echo)
    objects, kind_of = await read_source(source, kinds)

    await install_crds(target, echo)
    if record.target_was_paused is None:
        plane = await plane_of(target)
        spec = (plane or {}).get("spec") or {}
        ours = str(spec.get("reason") or "").startswith(REASON)
        record = Record(to, Phase.COPYING, bool(spec.get("paused")) and not ours)
    else:
        record = Record(to, Phase.COPYING, record.target_was_paused)
    await set_plane(target, True, f"{REASON} from {source.connection.server}")
    await set_plane(source, True, f"{REASON} to {to}", record)
    await wait_paused(target, "target", within, echo)
    if former is not None:
        held = await read_target(target, kinds)
        why = f"deleted (left over from the move to {former.target})"
        await remove(target, leftovers(held.values(), objects), kinds, why, echo)

    writes = await copy(target, objects, kind_of, kinds, echo)
    await pause_clusters(target, objects, kind_of, False, echo)
    record = Record(to, Phase.DONE, record.target_was_paused)
    await set_plane(source, True, f"{REASON} to {to}", record)
    await finish(target, record, echo)
    echo(
        f"moved {len(objects)} objects to {to} ({writes} writes, "
        f"{time.monotonic() - started:.1f} s); the source stays paused"
    )


async def finish(target: KubeClient, record: Record, echo: Echo) -> None:
    """Unpause the target (unless it was paused before the move), and drop the record of a
    move out of it, if it has one (it holds the objects now), once."""
    plane = await plane_of(target)
    spec = (plane or {}).get("spec") or {}
    if str(spec.get("reason") or "").startswith(REASON) and not record.target_was_paused:
        await set_plane(target, False, None, None)
        echo("target: unpaused")
    elif RECORD in _annotations(plane):
        await target.patch(
            MANAGEMENT_PLANES, PLANE_NAME, {"metadata": {"annotations": {RECORD: None}}}
        )


@click.command("move")
@kubeconfig_option
@click.option("--context", default=None, help="Context in --kubeconfig (default: its current).")
@click.option(
    "--to-kubeconfig",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Kubeconfig of the API server to move to.",
)
@click.option("--to-context", default=None, help="Context in --to-kubeconfig.")
@click.option("--dry-run", is_flag=True, help="Print what would move; change nothing.")
@click.option(
    "--rollback",
    is_flag=True,
    help="Undo an unfinished move: delete the copies from the target, unpause the source.",
)
@click.option(
    "--wait",
    "within",
    type=float,
    default=120.0,
    show_default=True,
    help="Seconds to wait for each side's Arges instances to acknowledge the pause.",
)
def move_command(
    kubeconfig: Path,
    context: str | None,
    to_kubeconfig: Path,
    to_context: str | None,
    dry_run: bool,
    rollback: bool,
    within: float,
) -> None:
    """Move everything Arges manages (Servers, ServerClasses, Environments, ServerBindings,
    TalosClusters, Constellations, Cluster API objects, the Secrets that go with them) from
    the API at --kubeconfig to the one at --to-kubeconfig, every server's state kept. The
    source is paused first and stays paused; the target is unpaused once everything is
    there. Interrupted, the same command resumes; --rollback undoes it."""
    if dry_run and rollback:
        raise click.UsageError("--dry-run and --rollback do not go together")
    source = options.connect(kubeconfig, context, "the source's kubeconfig", "arges-move")
    target = options.connect(to_kubeconfig, to_context, "the target's kubeconfig", "arges-move")

    async def run() -> None:
        async with source, target:
            await move(
                source, target, dry_run=dry_run, undo=rollback, within=within, echo=click.echo
            )

    try:
        asyncio.run(run())
    except (KubeError, MoveError) as exc:
        raise click.ClickException(
            f"{exc}. What was written stands; run the same command again to go on, or --rollback."
        ) from exc
