"""What the object store holds and hands out: entries, committed changes, write operations.

An :class:`Entry` is one stored object as the store keeps it in memory: its JSON bytes and
the few metadata fields that selectors, the garbage collector and the owner index read, never
a parsed object (see :mod:`arges.apiserver.store`). A :class:`Change` is a committed write
as watchers receive it; :class:`Put` and :class:`Remove` are the operations a transaction
is made of.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from arges.apiserver import codec

ObjKey = tuple[str, str]
"""(namespace, name) of an object inside one resource; namespace is "" when cluster-scoped."""


@dataclass(slots=True)
class Entry:
    """One stored object: its JSON bytes and the metadata that indexes need.

    ``resource`` is the qualified resource name (``servers.metal.arges.dev``, ``secrets``).
    """

    resource: str
    namespace: str
    name: str
    rv: int
    raw: bytes
    uid: str
    labels: dict[str, str]
    owners: tuple[str, ...]
    finalizers: tuple[str, ...]
    deleting: bool
    created: str
    api_version: str

    @property
    def key(self) -> ObjKey:
        return (self.namespace, self.name)

    def object(self) -> dict[str, Any]:
        """A freshly parsed copy of the object (callers may mutate it)."""
        obj: dict[str, Any] = codec.loads(self.raw)
        return obj


def make_entry(resource: str, rv: int, raw: bytes, obj: dict[str, Any]) -> Entry:
    """Build the index entry of ``obj`` (already serialized as ``raw`` at revision ``rv``)."""
    meta = obj.get("metadata") or {}
    return Entry(
        resource=resource,
        namespace=meta.get("namespace") or "",
        name=meta.get("name") or "",
        rv=rv,
        raw=raw,
        uid=meta.get("uid") or "",
        labels=dict(meta.get("labels") or {}),
        owners=tuple(ref.get("uid", "") for ref in meta.get("ownerReferences") or []),
        finalizers=tuple(meta.get("finalizers") or []),
        deleting=bool(meta.get("deletionTimestamp")),
        created=meta.get("creationTimestamp") or "",
        api_version=obj.get("apiVersion") or "",
    )


def entry_from_raw(resource: str, rv: int, raw: bytes) -> Entry:
    """The index entry of the stored JSON bytes ``raw`` (trusted: parse errors propagate)."""
    return make_entry(resource, rv, raw, codec.loads(raw))


@dataclass(frozen=True, slots=True)
class Change:
    """A committed change, as watchers receive it.

    ``type`` is ADDED, MODIFIED or DELETED; ``entry`` is the new state (for DELETED, the final
    state, carrying the deletion's revision); ``prev`` is the state before (None for ADDED).
    """

    type: str
    entry: Entry
    prev: Entry | None

    @property
    def rv(self) -> int:
        return self.entry.rv


@dataclass(frozen=True, slots=True)
class Put:
    """Create (``expect_rv`` None: must not exist) or replace (must exist at ``expect_rv``)."""

    resource: str
    obj: dict[str, Any]
    expect_rv: int | None = None


@dataclass(frozen=True, slots=True)
class Remove:
    """Delete an object that is still at ``expect_rv``; ``obj`` is its final recorded state."""

    resource: str
    namespace: str
    name: str
    expect_rv: int
    obj: dict[str, Any] | None = None


Op = Put | Remove


def sort_entries(entries: Iterable[Entry]) -> list[Entry]:
    """Entries in kube's list order: by namespace, then name."""
    return sorted(entries, key=lambda e: (e.namespace, e.name))
