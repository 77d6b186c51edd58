"""``metadata.managedFields``: who owns which fields, kept on every write as kube-apiserver does.

This follows kube-apiserver's field manager (``k8s.io/apimachinery/pkg/util/managedfields/
internal``), the chain of managers every create, update, patch and apply goes through:

- *decodeLiveOrNew*: a write keeps the managedFields the client sent when they decode and are
  not empty (that is how clients rewrite them), else the live object's; ``[]`` or ``[{}]``
  resets them; status writes always start from the live object's.
- *skipNonApplied*: an existing object without managedFields gets none from updates; the
  first apply first records everything already there under ``before-first-apply``.
- *capManagers*: past 10 Update entries, the oldest merge into ``ancient-changes``.
- *buildManagerInfo*: entries are identified by manager, operation, subresource and, for
  Update only, apiVersion; an empty manager is ``unknown``.
- *managedFieldsUpdater*: an update's changes are owned by its manager, merged into its
  entry, whose time is set whenever the update changed something.
- *stripMeta*: apiVersion, kind and the server-owned metadata are never owned.
- *structured merge* (SMD's ``merge.Updater``): fields an update changes are taken from
  their other owners, removed fields leave every owner; an apply owns exactly the fields it
  sets, conflicts with other owners unless forced, and prunes what it stopped applying
  unless someone else owns it. The fields the kind resets (``status`` on the main resource,
  everything else on the status subresource) are owned by no one there.

Entries are written sorted as kube-apiserver sorts them (Apply first, then by time, manager,
apiVersion, subresource), each with its FieldsV1 (see :mod:`arges.apiserver.fieldpath`).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import time as clock
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from arges.apiserver import codec
from arges.apiserver.fieldpath import FieldSet, Path, field_pe
from arges.apiserver.metaschema import OBJECT_META
from arges.apiserver.resources import ResourceType, Version
from arges.apiserver.typed import (
    MISSING,
    Type,
    compare,
    ensure_named_fields_are_members,
    from_schema,
    merge,
    remove_items,
    to_field_set,
)
from arges.errors import ArgesError

APPLY = "Apply"
UPDATE = "Update"
MAX_UPDATE_MANAGERS = 10
FIELD_MANAGER_MAX_LENGTH = 128
BEFORE_FIRST_APPLY = "before-first-apply"
ANCIENT_CHANGES = "ancient-changes"

_STRIP = FieldSet.of(
    ("f:apiVersion",),
    ("f:kind",),
    ("f:metadata",),
    *(
        ("f:metadata", field_pe(name))
        for name in (
            "name",
            "namespace",
            "creationTimestamp",
            "selfLink",
            "uid",
            "clusterName",
            "generation",
            "managedFields",
            "resourceVersion",
        )
    ),
)

# What a new, empty object of a built-in kind looks like once Go has encoded it (struct
# fields without omitempty): containers present there are not "added" by a create.
_EMPTY_OBJECTS: dict[tuple[str, str], dict[str, Any]] = {
    ("", "Namespace"): {"spec": {}, "status": {}},
    ("coordination.k8s.io", "Lease"): {"spec": {}},
    ("", "Event"): {
        "involvedObject": {},
        "source": {},
        "firstTimestamp": None,
        "lastTimestamp": None,
        "eventTime": None,
        "reportingComponent": "",
        "reportingInstance": "",
    },
    ("apiextensions.k8s.io", "CustomResourceDefinition"): {
        "spec": {"group": "", "names": {"plural": "", "kind": ""}, "scope": "", "versions": None},
        "status": {"acceptedNames": {"plural": "", "kind": ""}, "storedVersions": None},
    },
}


class Conflicts(ArgesError):
    """An apply that would change fields other managers own: (manager identifier, path)."""

    def __init__(self, conflicts: list[tuple[str, Path]]) -> None:
        super().__init__(f"{len(conflicts)} conflicts")
        self.conflicts = conflicts


@dataclass
class Entry:
    """One managedFields entry, decoded."""

    manager: str
    operation: str
    api_version: str
    subresource: str
    fields: FieldSet
    time: str | None = None
    stored: tuple[dict[str, Any], FieldSet] | None = field(default=None, compare=False, repr=False)
    """The stored entry this was decoded from, with its fields as decoded: while the entry
    keeps those fields and its time, it is shown as stored (:func:`encode`)."""

    @property
    def key(self) -> str:
        return identifier(self.manager, self.operation, self.api_version, self.subresource)


Managed = dict[str, Entry]
"""Entries by manager identifier (:func:`identifier`)."""


@functools.lru_cache(maxsize=1024)
def identifier(manager: str, operation: str, api_version: str, subresource: str) -> str:
    """The manager identifier kube-apiserver keys entries by (``BuildManagerIdentifier``):
    the entry's JSON without time and fields, and without apiVersion for appliers."""
    out = {"manager": manager, "operation": operation}
    if api_version and operation != APPLY:
        out["apiVersion"] = api_version
    if subresource:
        out["subresource"] = subresource
    return json.dumps(out, separators=(",", ":"))


_TIME = "%Y-%m-%dT%H:%M:%SZ"
_NOW: list[tuple[int, str]] = [(0, "")]


def now() -> str:
    """The current time as ``metav1.Time`` writes it (whole seconds)."""
    second = int(clock.time())
    # Every write stamps its managers' entries: the text is made once per second.
    cached = _NOW[0]
    if cached[0] != second:
        cached = _NOW[0] = (second, dt.datetime.fromtimestamp(second, dt.UTC).strftime(_TIME))
    return cached[1]


# Managers and their names.


def manager_from_user_agent(user_agent: str) -> str:
    """kube-apiserver's default manager: the User-Agent up to its first '/', printable
    characters only, at most 128 bytes (``prefixFromUserAgent``)."""
    out = ""
    size = 0
    for ch in user_agent.split("/", 1)[0]:
        if not _printable(ch):
            continue
        width = len(ch.encode())
        if size + width > FIELD_MANAGER_MAX_LENGTH:
            break
        out += ch
        size += width
    return out


def field_manager_errors(name: str) -> list[str]:
    """What is wrong with a ``fieldManager`` parameter, as ``ValidateFieldManager`` says it."""
    errors = []
    if len(name) > FIELD_MANAGER_MAX_LENGTH:
        errors.append(f"Too long: may not be more than {FIELD_MANAGER_MAX_LENGTH} bytes")
    for i, ch in enumerate(name):
        if not _printable(ch):
            errors.append(
                f"Invalid value: {json.dumps(name)}: invalid character U+{ord(ch):04X} "
                f"(at position {i})"
            )
    return errors


def _printable(ch: str) -> bool:
    # Go's unicode.IsPrint: letters, marks, numbers, punctuation, symbols and ASCII space.
    return ch == " " or unicodedata.category(ch)[0] in "LMNPS"


# Decoding and encoding.


def is_reset(value: Any) -> bool:
    """Whether a client's managedFields ask for a reset: ``[]`` or ``[{}]``."""
    return isinstance(value, list) and (value == [] or value == [{}])


def decode(value: Any, *, stored: bool = False) -> Managed:
    """managedFields as stored or sent; absent means none. ``stored``: they are the stored
    object's (as :func:`encode` made them), kept to be shown again where they do not change.

    Raises:
        ValueError: when an entry is malformed (kube-apiserver's ``DecodeManagedFields``).
    """
    if value is None or value is MISSING:
        return {}
    if not isinstance(value, list):
        raise ValueError("managedFields must be a list")
    out: Managed = {}
    for i, raw in enumerate(value):
        if not isinstance(raw, dict):
            raise ValueError(f"managed fields entry {i} must be an object")
        operation = raw.get("operation")
        if operation not in (APPLY, UPDATE):
            raise ValueError("operation must be `Apply` or `Update`")
        api_version = raw.get("apiVersion")
        if not isinstance(api_version, str) or not api_version:
            raise ValueError("apiVersion must not be empty")
        fields_type = raw.get("fieldsType")
        if not fields_type:
            raise ValueError(f"missing fieldsType in managed fields entry {i}")
        if fields_type != "FieldsV1":
            raise ValueError(f"invalid fieldsType {fields_type!r} in managed fields entry {i}")
        time = raw.get("time")
        if time is not None:
            if not isinstance(time, str):
                raise ValueError(f"invalid time in managed fields entry {i}")
            dt.datetime.fromisoformat(time)
        fields = _fields(raw.get("fieldsV1") or {})
        entry = Entry(
            manager=str(raw.get("manager") or ""),
            operation=operation,
            api_version=api_version,
            subresource=str(raw.get("subresource") or ""),
            fields=fields,
            time=time,
            stored=(raw, fields) if stored else None,
        )
        out[entry.key] = entry
    return out


_FIELDS: dict[bytes, FieldSet] = {}
_FIELDS_CACHE_SIZE = 4096


def _fields(data: Any) -> FieldSet:
    # Objects of a kind mostly share their field sets, and sets are never changed once
    # built, so decoded ones are reused: decoding is most of an update's cost otherwise.
    key = codec.dumps(data)
    found = _FIELDS.get(key)
    if found is None:
        found = FieldSet.from_fields_v1(data)
        if len(_FIELDS) >= _FIELDS_CACHE_SIZE:
            _FIELDS.clear()
        _FIELDS[codec.trim(key)] = found
    return found


def encode(managed: Managed) -> list[dict[str, Any]]:
    """Entries as the API shows them, in kube-apiserver's order."""
    out = []
    for entry in sorted(managed.values(), key=_entry_order):
        stored = entry.stored
        if stored is not None and stored[1] is entry.fields and stored[0].get("time") == entry.time:
            # Most entries of an update are another manager's, unchanged: shown as stored,
            # not made again (their fieldsV1 parsed from its encoding each time).
            out.append(stored[0])
            continue
        raw: dict[str, Any] = {
            "manager": entry.manager,
            "operation": entry.operation,
            "apiVersion": entry.api_version,
        }
        if entry.time is not None:
            raw["time"] = entry.time
        raw["fieldsType"] = "FieldsV1"
        raw["fieldsV1"] = entry.fields.to_fields_v1()
        if entry.subresource:
            raw["subresource"] = entry.subresource
        out.append(raw)
    return out


def _seconds(time: str | None) -> float:
    if not time:
        return 0.0
    return dt.datetime.fromisoformat(time).timestamp()


def _entry_order(e: Entry) -> tuple[str, float, str, str, str]:
    return (e.operation, _seconds(e.time), e.manager, e.api_version, e.subresource)


# Types.

_OBJECT_META_TYPE = from_schema(OBJECT_META)
_TYPES: dict[int, tuple[Any, Type]] = {}
_TYPE_CACHE_SIZE = 256


def object_type(version: Version) -> Type:
    """The :class:`~arges.apiserver.typed.Type` of objects served at ``version``."""
    schema = version.schema
    cached = _TYPES.get(id(schema))
    if cached is not None and cached[0] is schema:
        return cached[1]
    root = from_schema(schema.raw if schema is not None else {}, _OBJECT_META_TYPE)
    root.fields = {**root.fields, "metadata": _OBJECT_META_TYPE}
    for name in ("apiVersion", "kind"):
        root.fields.setdefault(name, from_schema({"type": "string"}))
    if len(_TYPES) >= _TYPE_CACHE_SIZE:
        _TYPES.clear()
    _TYPES[id(schema)] = (schema, root)
    return root


def empty_object(rt: ResourceType, version: Version) -> dict[str, Any]:
    """What kube-apiserver compares a created object with: a new object of the kind."""
    extra = _EMPTY_OBJECTS.get((rt.group, rt.kind), {})
    return {
        "apiVersion": rt.api_version(version.name),
        "kind": rt.kind,
        "metadata": {},
        **codec.clone(extra),
    }


def reset_fields(rt: ResourceType, subresource: str | None, *objs: Any) -> FieldSet:
    """The top-level fields the kind's strategy resets on this endpoint (``GetResetFields``):
    ``status`` on the main resource when it is a subresource, all else on ``/status``."""
    if subresource == "status":
        keys = {k for o in objs if isinstance(o, dict) for k in o} - {"status"}
        return FieldSet({field_pe(k) for k in keys})
    if rt.storage_version().status:
        return FieldSet({"f:status"})
    return FieldSet()


# The operations.


@dataclass
class Target:
    """Where a write goes: the kind, its version and type, the endpoint's reset fields."""

    rt: ResourceType
    version: Version
    subresource: str
    ignored: FieldSet

    @property
    def type(self) -> Type:
        return object_type(self.version)

    @property
    def api_version(self) -> str:
        return self.rt.api_version(self.version.name)


def decode_live_or_new(live: Any, new: Any, subresource: str) -> Managed:
    """The managedFields an update starts from (see the module docstring)."""
    if not subresource:
        if is_reset(new):
            return {}
        # Sent as stored (an update of the object as read) is the stored entries.
        if new != live:
            try:
                managed = decode(new)
            except ValueError:
                managed = {}
            if managed:
                return managed
    try:
        return decode(live, stored=True)
    except ValueError:
        return {}


def _strip(obj: Any) -> Any:
    if isinstance(obj, dict) and isinstance(obj.get("metadata"), dict):
        obj = {
            **obj,
            "metadata": {k: v for k, v in obj["metadata"].items() if k != "managedFields"},
        }
    return obj


def update(
    target: Target,
    live: dict[str, Any],
    new: dict[str, Any],
    managed: Managed,
    manager: str,
    *,
    creating: bool,
    time: str,
) -> Managed:
    """The managed fields after an Update operation by ``manager`` from ``live`` to ``new``.

    ``live`` is :func:`empty_object` for a create; an existing object whose managedFields are
    empty keeps none (kube-apiserver's skipNonApplied).
    """
    if not managed and not creating:
        return managed
    return _update(target, live, new, managed, manager, time)


def _update(
    target: Target,
    live: dict[str, Any],
    new: dict[str, Any],
    managed: Managed,
    manager: str,
    time: str,
) -> Managed:
    key = identifier(manager or "unknown", UPDATE, target.api_version, target.subresource)
    managed = {k: _copy(e) for k, e in managed.items()}
    cmp = compare(_strip(live), _strip(new), target.type)
    changed = cmp.modified.union(cmp.added)
    _take(managed, changed, cmp.removed, target.ignored, skip=None)
    current = changed.difference(cmp.removed).recursive_difference(target.ignored)
    current = current.difference(_STRIP)
    if not current.empty():
        previous = managed.get(key)
        fields = current if previous is None else previous.fields.union(current)
        managed[key] = Entry(
            manager or "unknown", UPDATE, target.api_version, target.subresource, fields, time
        )
    return _cap(managed)


def _copy(e: Entry) -> Entry:
    return Entry(e.manager, e.operation, e.api_version, e.subresource, e.fields, e.time, e.stored)


def _take(
    managed: Managed,
    changed: FieldSet,
    removed: FieldSet,
    ignored: FieldSet,
    *,
    skip: str | None,
) -> dict[str, FieldSet]:
    """Take ``changed`` from every manager but ``skip`` and drop ``removed`` from all;
    returns what was taken, by manager (the conflicts of an apply)."""
    changed = changed.recursive_difference(ignored)
    removed = removed.recursive_difference(ignored)
    taken: dict[str, FieldSet] = {}
    for key in list(managed):
        if key == skip:
            continue
        entry = managed[key]
        conflict = entry.fields.intersection(changed)
        if not conflict.empty():
            taken[key] = conflict
        rest = entry.fields.difference(conflict).difference(removed)
        if rest.empty():
            del managed[key]
        else:
            entry.fields = rest
    return taken


def _cap(managed: Managed) -> Managed:
    updaters = [k for k, e in managed.items() if e.operation == UPDATE]
    if len(updaters) <= MAX_UPDATE_MANAGERS:
        return managed
    updaters.sort(key=lambda k: (int(_seconds(managed[k].time)), k))
    first_of_version: dict[str, str] = {}
    length = len(updaters)
    for key in updaters:
        if length <= MAX_UPDATE_MANAGERS:
            break
        entry = managed[key]
        version = entry.api_version
        bucket = identifier(ANCIENT_CHANGES, UPDATE, version, "")
        first = first_of_version.get(version)
        if first is None:
            first_of_version[version] = key
            continue
        if bucket not in managed:
            moved = managed.pop(first)
            managed[bucket] = Entry(ANCIENT_CHANGES, UPDATE, version, "", moved.fields, moved.time)
        managed[bucket].fields = entry.fields.union(managed[bucket].fields)
        managed[bucket].time = entry.time
        del managed[key]
        length -= 1
    return managed


def apply(
    target: Target,
    live: dict[str, Any],
    config: dict[str, Any],
    managed: Managed,
    manager: str,
    *,
    force: bool,
    time: str,
) -> tuple[dict[str, Any] | None, Managed]:
    """Merge the applied ``config`` onto ``live`` for ``manager``.

    Returns the new object (None when the apply changes nothing in the object itself) and
    the managed fields after it.

    Raises:
        TypedError: when ``config`` does not fit the schema.
        Conflicts: fields other managers own would change (and ``force`` is false).
    """
    live = _strip(live)
    if not managed:
        managed = _update(
            target,
            empty_object(target.rt, target.version),
            live,
            managed,
            BEFORE_FIRST_APPLY,
            time,
        )
    managed = {k: _copy(e) for k, e in managed.items()}
    t = target.type
    key = identifier(manager, APPLY, "", target.subresource)
    applied = to_field_set(config, t).recursive_difference(target.ignored)
    merged = merge(live, config, t)
    last = managed.get(key)
    managed[key] = Entry(manager, APPLY, target.api_version, target.subresource, applied, None)
    if last is not None:
        managed[key].time = last.time
        merged = _prune(merged, managed, last.fields, t)
    cmp = compare(live, merged, t)
    taken = _take(managed, cmp.modified.union(cmp.added), cmp.removed, target.ignored, skip=key)
    if taken and not force:
        raise Conflicts([(k, p) for k in sorted(taken) for p in taken[k].paths()])
    entry = managed[key]
    entry.fields = entry.fields.difference(_STRIP)
    if entry.fields.empty():
        del managed[key]
    changed = merged != live
    if changed and key in managed:
        managed[key].time = time
    return (merged if changed else None), _cap(managed)


def _prune(merged: Any, managed: Managed, last: FieldSet, t: Type) -> Any:
    # Remove what the manager applied last time and not this time, unless some manager
    # (this one's new configuration included) owns it (SMD's Updater.prune).
    if last.empty():
        return merged
    last_all = ensure_named_fields_are_members(last, t)
    pruned = remove_items(merged, last_all, t)
    owned = FieldSet()
    for entry in managed.values():
        owned = owned.union(entry.fields)
    merged_set = ensure_named_fields_are_members(_lenient_set(merged, t), t)
    pruned_set = ensure_named_fields_are_members(_lenient_set(pruned, t), t)
    owned = ensure_named_fields_are_members(owned, t)
    pruned = remove_items(merged, merged_set.difference(pruned_set.union(owned)), t)
    pruned_set = ensure_named_fields_are_members(_lenient_set(pruned, t), t)
    return remove_items(merged, merged_set.difference(pruned_set).intersection(last_all), t)


def _lenient_set(value: Any, t: Type) -> FieldSet:
    try:
        return to_field_set(value, t)
    except ValueError:
        return FieldSet()


def target_of(rt: ResourceType, version: Version, subresource: str | None, *objs: Any) -> Target:
    """The :class:`Target` of a write to ``rt`` at ``version`` (``subresource`` ``status`` or
    None); ``objs`` are the objects involved, whose top-level fields a status write resets."""
    return Target(rt, version, subresource or "", reset_fields(rt, subresource, *objs))


def record(
    rt: ResourceType,
    version: Version,
    live: dict[str, Any] | None,
    new: dict[str, Any],
    manager: str,
    subresource: str | None = None,
) -> list[dict[str, Any]] | None:
    """The managedFields ``new`` gets from a create (``live`` None) or an update of ``live``
    (an Update operation by ``manager``); None means none.
    """
    base = live if live is not None else empty_object(rt, version)
    target = target_of(rt, version, subresource, base, new)
    new_fields = new.get("metadata", {}).get("managedFields", MISSING)
    live_fields = base.get("metadata", {}).get("managedFields")
    managed = decode_live_or_new(live_fields, new_fields, target.subresource)
    managed = update(target, base, new, managed, manager, creating=live is None, time=now())
    return encode(managed) or None
