"""Moving a management plane's objects to another API server (``arges move``): the decisions.

What moves, in what order, how each object is rewritten for the target, and what to do with
what the target already holds, as pure functions on objects as the API returns them. The I/O
(pausing, reading, writing) is :mod:`arges.cli.move`'s. The design follows ``clusterctl move``
(its object graph, ``cmd/clusterctl/client/cluster/objectgraph.go`` and ``mover.go``): owners
are created before what they own, each copy's owner references name the target's new uids,
and everything else is kept (names, labels, annotations, finalizers, spec, status). Sidero's
users pivoting with ``clusterctl move`` lost their ServerBindings' state, BMC Secrets and edited
Environments (siderolabs/sidero#931, #977, #1210): here what moves is chosen by kind, and the
Secrets by what refers to them, so nothing of a server's state is left behind.

- **Uids**: a uid is the one field that cannot be kept (the API server makes it). Every string
  equal to a moved object's source uid (owner references, a binding's ``consumerRef.uid`` and
  ``metal.arges.dev/consumer-uid`` label, a config Secret's ``cluster.arges.dev/binding-uid``
  annotation) is replaced by the uid of its copy; an owner reference to an object that does not
  move is dropped (kept, it would let the target's garbage collector delete the copy). An
  object referring to another's uid is therefore written after it (:func:`order`).
- **The marker**: each copy carries the annotation ``metal.arges.dev/moved-from`` with its
  source object's uid. An object on the target with the same name and that marker is the copy
  (an interrupted move wrote it): it is updated, never duplicated. Any other object of that name
  is a conflict, refused before anything is written, except Arges' built-ins (the Environments
  annotated ``metal.arges.dev/built-in``, the ServerClass ``any``), which an Arges on the target
  made for itself and which the source's replace, and the object the source's was itself
  copied from (a move back): that is updated.
- **Moving back**: a source keeps its objects after a move (paused, a record of what moved).
  When it is the target of a later move, what it holds of the kinds that move and that move
  does not write is left over from before (:func:`leftovers`) and is deleted.
- **Cluster API**: the objects of its CRDs (:func:`moves_kind`) move too; its Clusters are
  paused on the source first and resumed on the target last (:func:`capi_cluster`).
- **Built-in Environments** (``agent``, ``default``: annotated ``metal.arges.dev/built-in``)
  do not move: they are each installation's own, made by its ``arges up`` from its options.
- **Secrets** move when a moved object owns one, names one (any ``...SecretRef`` with a
  ``name``, Cluster API's ``dataSecretName``, a TalosCluster pool's ``patchesFrom``), or it is
  labelled as belonging to a moved cluster (``cluster.arges.dev/cluster-name``,
  ``cluster.x-k8s.io/cluster-name``).
- **The record**: the source's ManagementPlane ``arges`` carries the annotation
  ``metal.arges.dev/move`` (:class:`Record`, JSON) from the first write to the end: where to,
  how far (``pausing``, ``copying``, ``done``), whether the target was paused before.
"""

from __future__ import annotations

import datetime as dt
import heapq
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from arges.api.environment import BUILT_IN
from arges.api.serverclass import ANY_CLASS
from arges.errors import ArgesError

MOVED_FROM = "metal.arges.dev/moved-from"
"""Annotation on each copy: the uid of the object it was copied from."""
RECORD = "metal.arges.dev/move"
"""Annotation on the source's ManagementPlane: the move under way (:class:`Record`)."""
CLUSTER_LABELS = ("cluster.arges.dev/cluster-name", "cluster.x-k8s.io/cluster-name")
"""Labels naming the cluster a Secret belongs to (Arges' TalosCluster, Cluster API's Cluster)."""
DROPPED_METADATA = (
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "managedFields",
    "generation",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generateName",
)
"""What the target's API server makes for itself (``clusterctl move`` drops the same)."""
KEPT_SECRET_FIELDS = ("data", "type", "immutable")
RANK = {
    "Namespace": 0,
    "Environment": 1,
    "ServerClass": 2,
    "Secret": 3,
    "Server": 4,
    "Constellation": 5,
    "TalosCluster": 6,
    "ServerBinding": 9,
}
"""Order among objects the uids leave unordered: the settings first, the bindings last (the
Cluster API kinds come between, rank 7)."""
OTHER_RANK = 7


class MoveError(ArgesError, ValueError):
    """The objects cannot be moved as they are (a cycle of owners, a conflict)."""


class Phase(StrEnum):
    """How far a move has got (see :class:`Record`)."""

    PAUSING = "pausing"
    COPYING = "copying"
    DONE = "done"


@dataclass(frozen=True)
class Record:
    """The move under way, as the source's ManagementPlane records it.

    ``target`` is the target API server's URL; ``target_was_paused`` whether its
    ManagementPlane was paused before the move paused it (None: not known yet), which a
    rollback restores.
    """

    target: str
    phase: Phase
    target_was_paused: bool | None = None

    def encode(self) -> str:
        """The annotation's value (JSON)."""
        return json.dumps(
            {
                "target": self.target,
                "phase": str(self.phase),
                "targetWasPaused": self.target_was_paused,
            },
            sort_keys=True,
        )

    @staticmethod
    def decode(text: str | None) -> Record | None:
        """The record in an annotation's value; None when there is none.

        Raises:
            MoveError: the value is not a record.
        """
        if not text:
            return None
        try:
            doc = json.loads(text)
            paused = doc.get("targetWasPaused")
            return Record(
                target=str(doc["target"]),
                phase=Phase(doc["phase"]),
                target_was_paused=None if paused is None else bool(paused),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise MoveError(f"the move record {RECORD} is not readable: {exc}") from exc


Key = tuple[str, str, str, str]
"""(API group, kind, namespace or "", name): one object, across API servers."""


def key(obj: Mapping[str, Any]) -> Key:
    """The :data:`Key` of an object."""
    meta = obj.get("metadata") or {}
    group = str(obj.get("apiVersion") or "").rpartition("/")[0]
    return (group, str(obj.get("kind")), str(meta.get("namespace") or ""), str(meta["name"]))


def subject(obj: Mapping[str, Any]) -> str:
    """``Kind namespace/name`` (or ``Kind name`` when cluster-scoped), for people."""
    _, kind, namespace, name = key(obj)
    return f"{kind} {namespace}/{name}" if namespace else f"{kind} {name}"


def uid(obj: Mapping[str, Any]) -> str:
    """An object's uid ("" when it has none)."""
    return str((obj.get("metadata") or {}).get("uid") or "")


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, Mapping):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)


def _references(obj: Mapping[str, Any]) -> Iterator[str]:
    """Every string of ``obj`` that may name another object's uid (not its own metadata, its
    status, or a Secret's data)."""
    meta = obj.get("metadata") or {}
    for owner in meta.get("ownerReferences") or []:
        yield str(owner.get("uid") or "")
    yield from _strings(meta.get("labels") or {})
    yield from _strings(meta.get("annotations") or {})
    if obj.get("kind") != "Secret":
        for field, value in obj.items():
            # Not the status: it is written last, and a uid it names must not order anything.
            if field not in ("metadata", "apiVersion", "kind", "status"):
                yield from _strings(value)


def _ref_names(node: Any, namespace: str) -> Iterator[tuple[str, str]]:
    """(namespace, name) of the Secrets a part of an object names."""
    if isinstance(node, list):
        for value in node:
            yield from _ref_names(value, namespace)
    if not isinstance(node, Mapping):
        return
    for field, value in node.items():
        if field.lower().endswith("secretref") and isinstance(value, Mapping) and value.get("name"):
            yield (str(value.get("namespace") or namespace), str(value["name"]))
        elif field == "dataSecretName" and isinstance(value, str) and value:
            yield (namespace, value)
        elif field == "patchesFrom" and isinstance(value, list):
            for ref in value:
                if isinstance(ref, Mapping) and ref.get("name"):
                    yield (namespace, str(ref["name"]))
        else:
            yield from _ref_names(value, namespace)


CAPI_GROUP = "cluster.x-k8s.io"
PROVIDER_LABEL = "cluster.x-k8s.io/provider"
"""The label ``clusterctl init`` puts on a provider's CRDs."""


def moves_kind(crd: Mapping[str, Any]) -> bool:
    """Whether the objects of a CRD (as the API returns it) move: Cluster API's and its
    providers' (labelled :data:`PROVIDER_LABEL`, or in a ``cluster.x-k8s.io`` group, as CRDs
    applied without ``clusterctl`` are)."""
    labels = (crd.get("metadata") or {}).get("labels") or {}
    group = str((crd.get("spec") or {}).get("group") or "")
    return PROVIDER_LABEL in labels or group == CAPI_GROUP or group.endswith("." + CAPI_GROUP)


def capi_cluster(obj: Mapping[str, Any]) -> bool:
    """Whether ``obj`` is a Cluster API Cluster, which a move pauses (``spec.paused``) on the
    source before reading it and resumes on the target once everything is there, as
    ``clusterctl move`` does."""
    return key(obj)[:2] == (CAPI_GROUP, "Cluster")


def moves(obj: Mapping[str, Any]) -> bool:
    """Whether ``obj``, of a kind that moves, moves: all but the built-in Environments, which
    are each installation's own (its Talos and agent images, from ``arges up``'s options); the
    Arges on the target makes its own."""
    notes = (obj.get("metadata") or {}).get("annotations") or {}
    return not (obj.get("kind") == "Environment" and notes.get(BUILT_IN) == "true")


def secrets_to_move(
    moved: Iterable[Mapping[str, Any]], secrets: Iterable[Mapping[str, Any]]
) -> list[Mapping[str, Any]]:
    """The Secrets among ``secrets`` that go with the ``moved`` objects: owned by one, named by
    one, or labelled as belonging to a moved cluster (see the module docstring)."""
    uids: set[str] = set()
    named: set[tuple[str, str]] = set()
    clusters: set[tuple[str, str]] = set()
    for obj in moved:
        uids.add(uid(obj))
        _, kind, namespace, name = key(obj)
        named.update(_ref_names(obj.get("spec") or {}, namespace))
        if kind in ("TalosCluster", "Cluster"):
            clusters.add((namespace, name))
    chosen = []
    for secret in secrets:
        meta = secret.get("metadata") or {}
        namespace = str(meta.get("namespace") or "")
        labels = meta.get("labels") or {}
        if (
            any(o.get("uid") in uids for o in meta.get("ownerReferences") or [])
            or (namespace, meta.get("name")) in named
            or any((namespace, labels.get(label)) in clusters for label in CLUSTER_LABELS)
        ):
            chosen.append(secret)
    return chosen


def order(objects: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """``objects`` in the order to write them: every object after the objects whose uid it
    names (its owners, its consumer), otherwise by kind (:data:`RANK`), namespace and name.

    Raises:
        MoveError: the objects name each other's uids in a cycle (naming them).
    """
    items = list(objects)
    by_uid = {uid(o): i for i, o in enumerate(items) if uid(o)}
    needs: dict[int, set[int]] = {}
    for i, obj in enumerate(items):
        needs[i] = {by_uid[s] for s in _references(obj) if s in by_uid and by_uid[s] != i}
    dependents: dict[int, list[int]] = {i: [] for i in range(len(items))}
    for i, deps in needs.items():
        for d in deps:
            dependents[d].append(i)

    def rank(i: int) -> tuple[int, str, str, str]:
        group, kind, namespace, name = key(items[i])
        return (RANK.get(kind, OTHER_RANK), f"{kind}.{group}", namespace, name)

    waiting = {i: len(deps) for i, deps in needs.items()}
    ready = [(rank(i), i) for i, n in waiting.items() if n == 0]
    heapq.heapify(ready)
    result: list[Mapping[str, Any]] = []
    while ready:
        _, i = heapq.heappop(ready)
        result.append(items[i])
        for d in dependents[i]:
            waiting[d] -= 1
            if waiting[d] == 0:
                heapq.heappush(ready, (rank(d), d))
    if len(result) < len(items):
        stuck = sorted(subject(items[i]) for i, n in waiting.items() if n > 0)
        raise MoveError(f"these objects name each other's uids in a cycle: {', '.join(stuck)}")
    return result


def _remap(node: Any, uids: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return uids.get(node, node)
    if isinstance(node, Mapping):
        return {k: _remap(v, uids) for k, v in node.items()}
    if isinstance(node, list):
        return [_remap(v, uids) for v in node]
    return node


def copy_of(obj: Mapping[str, Any], uids: Mapping[str, str]) -> dict[str, Any]:
    """The object to write on the target for source object ``obj``: what the target's API
    server makes dropped (:data:`DROPPED_METADATA`), every source uid in ``uids`` (source uid
    to target uid) replaced, owner references to objects not in ``uids`` dropped, and the
    :data:`MOVED_FROM` marker added. ``status`` is kept (written through the status
    subresource)."""
    meta = dict(obj.get("metadata") or {})
    for field in DROPPED_METADATA:
        meta.pop(field, None)
    owners = [
        {**o, "uid": uids[str(o.get("uid"))]}
        for o in meta.pop("ownerReferences", None) or []
        if str(o.get("uid")) in uids
    ]
    meta["labels"] = _remap(meta.get("labels") or {}, uids)
    meta["annotations"] = {**_remap(meta.get("annotations") or {}, uids), MOVED_FROM: uid(obj)}
    if owners:
        meta["ownerReferences"] = owners
    if not meta["labels"]:
        del meta["labels"]
    body: dict[str, Any] = {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind")}
    if obj.get("kind") == "Secret":
        body.update({f: obj[f] for f in KEPT_SECRET_FIELDS if f in obj})
    else:
        for field, value in obj.items():
            if field not in ("apiVersion", "kind", "metadata"):
                body[field] = _remap(value, uids)
    body["metadata"] = meta
    return body


class Action(StrEnum):
    """What to do with one object on the target."""

    CREATE = "create"
    UPDATE = "update"
    """The copy (or a built-in to take over) differs: replace it."""
    UNCHANGED = "unchanged"
    CONFLICT = "conflict"
    """Another object of that name: the move is refused."""


COMPARED_METADATA = ("labels", "annotations", "finalizers", "ownerReferences")


def built_in(obj: Mapping[str, Any]) -> bool:
    """Whether ``obj`` is one an Arges makes for itself on its API (a built-in Environment, the
    ServerClass ``any``), which the source's copy may replace."""
    _, kind, _, name = key(obj)
    notes = (obj.get("metadata") or {}).get("annotations") or {}
    return (kind == "Environment" and notes.get(BUILT_IN) == "true") or (
        kind == "ServerClass" and name == ANY_CLASS
    )


def _body(obj: Mapping[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata") or {}
    kept = {f: meta.get(f) or None for f in COMPARED_METADATA}
    rest = {f: v for f, v in obj.items() if f not in ("metadata", "status", "apiVersion", "kind")}
    return {"metadata": kept, **rest}


def decide(
    source: Mapping[str, Any], copy: Mapping[str, Any], existing: Mapping[str, Any] | None
) -> Action:
    """What to do on the target for ``source`` (its :func:`copy_of` is ``copy``), given the
    object of that name the target holds (None: none)."""
    if existing is None:
        return Action.CREATE
    marker = ((existing.get("metadata") or {}).get("annotations") or {}).get(MOVED_FROM)
    original = ((source.get("metadata") or {}).get("annotations") or {}).get(MOVED_FROM)
    if marker != uid(source) and uid(existing) != original and not built_in(existing):
        return Action.CONFLICT
    return Action.UNCHANGED if _body(existing) == _body(copy) else Action.UPDATE


def leftovers(
    held: Iterable[Mapping[str, Any]], moving: Iterable[Mapping[str, Any]]
) -> list[Mapping[str, Any]]:
    """What a target that was itself the source of a finished move still holds of that move
    and this one does not write (a binding released since, its config Secret), dependents
    first: it is deleted, so that the target ends with the source's state and nothing else.
    ``held`` is what the target holds of the kinds that move (its Secrets among them)."""
    writing = {key(o) for o in moving}
    held = list(held)
    stale = [o for o in held if key(o)[1] != "Secret" and key(o) not in writing and moves(o)]
    secrets = secrets_to_move(stale, [o for o in held if key(o)[1] == "Secret"])
    return list(reversed(order([*stale, *(s for s in secrets if key(s) not in writing)])))


def status_differs(copy: Mapping[str, Any], written: Mapping[str, Any]) -> bool:
    """Whether the target's object (as written) still lacks the status of the copy."""
    return (copy.get("status") or None) != (written.get("status") or None)


def with_version(copy: Mapping[str, Any], existing: Mapping[str, Any]) -> dict[str, Any]:
    """``copy`` as a replacement of ``existing`` (its resourceVersion, so a change meanwhile
    is refused rather than lost)."""
    meta = {**copy["metadata"], "resourceVersion": existing["metadata"]["resourceVersion"]}
    return {**copy, "metadata": meta}


LIVE_SECONDS = 90.0
"""An instance whose heartbeat (every 30 s, :mod:`arges.controllers.pause`) is older than this
is taken as gone: it no longer acts, so the move does not wait for it."""


def unacknowledged(plane: Mapping[str, Any], now_seconds: float) -> list[str]:
    """The live instances of a ManagementPlane (as the API returns it) that have not yet
    acknowledged its current spec as paused (empty: every live one has, or there is none).
    ``now_seconds`` is the POSIX time now; heartbeats are RFC 3339."""
    generation = int((plane.get("metadata") or {}).get("generation") or 0)
    waiting = []
    for instance in (plane.get("status") or {}).get("instances") or []:
        try:
            beat = dt.datetime.fromisoformat(str(instance["heartbeat"]).replace("Z", "+00:00"))
        except (KeyError, ValueError):
            continue
        if now_seconds - beat.timestamp() > LIVE_SECONDS:
            continue
        if not (
            instance.get("paused") and int(instance.get("observedGeneration") or 0) >= generation
        ):
            waiting.append(str(instance.get("id")))
    return waiting
