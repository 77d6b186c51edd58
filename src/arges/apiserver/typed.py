"""Objects read through their schema, as structured-merge-diff reads them for server-side apply.

Field ownership depends on how each part of an object merges (``sigs.k8s.io/structured-merge-
diff/v4/typed``): a :class:`Type` says, for one node of a schema, whether it is a scalar, a
map (an object with declared fields, entries of an element type, or both; *granular* unless
``x-kubernetes-map-type: atomic``) or a list (``x-kubernetes-list-type``: ``atomic``, the
default, ``set``, or ``map`` keyed by ``x-kubernetes-list-map-keys``). Undeclared content
under ``x-kubernetes-preserve-unknown-fields`` is *deduced*: maps granular, lists atomic.

On such types this module computes what SMD computes:

- :func:`to_field_set`: the paths an applied configuration sets (leaves, list items, map
  entries that are not declared fields);
- :func:`compare`: the paths added, modified and removed between two objects, containers
  included when they appear or disappear as a whole;
- :func:`merge`: an applied configuration merged onto a live object (maps by key, lists that
  are sets or maps by item, atomic parts replaced), keeping SMD's item order;
- :func:`remove_items`: an object without the paths of a set;
- :func:`ensure_named_fields_are_members`: a set that also holds the declared fields above
  its paths, as SMD's pruning needs.

Malformed applied configurations raise :class:`TypedError` with SMD's wording
(``.spec.x: field not declared in schema``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from arges.apiserver import codec
from arges.apiserver.fieldpath import (
    FieldSet,
    field_pe,
    index_pe,
    key_pe,
    path_string,
    pe_string,
    value_pe,
)
from arges.errors import ArgesError


class TypedError(ArgesError, ValueError):
    """An object that does not fit its schema: ``path`` (SMD's notation) and the reason."""

    def __init__(self, path: list[str], reason: str) -> None:
        self.path = path_string(tuple(path))
        self.reason = reason
        super().__init__(f"{self.path}: {reason}" if self.path else reason)


@dataclass(eq=False)
class Type:
    """One node of a schema as SMD sees it; several forms may be allowed (``deduced``)."""

    scalar: bool = False
    is_map: bool = False
    fields: dict[str, Type] = field(default_factory=dict)
    elem: Type | None = None
    """Type of map entries that are not declared fields; None means none are allowed."""
    map_atomic: bool = False
    is_list: bool = False
    list_type: str = "atomic"
    keys: tuple[str, ...] = ()
    key_defaults: dict[str, Any] = field(default_factory=dict)
    item: Type | None = None


DEDUCED = Type(scalar=True, is_map=True, is_list=True)
DEDUCED.elem = DEDUCED
DEDUCED.item = DEDUCED
SCALAR = Type(scalar=True)

MISSING: Any = object()
"""Marks an absent value (distinct from an explicit null)."""


def from_schema(raw: Any, object_meta: Type | None = None) -> Type:
    """The :class:`Type` of an OpenAPI v3 structural schema node.

    ``object_meta`` types ``metadata`` of embedded resources (``x-kubernetes-embedded-
    resource``). Anything without a type is deduced.
    """
    if not isinstance(raw, dict):
        return DEDUCED
    if raw.get("x-kubernetes-int-or-string"):
        return SCALAR
    kind = raw.get("type")
    preserve = raw.get("x-kubernetes-preserve-unknown-fields") is True
    if kind == "object" or "properties" in raw or "additionalProperties" in raw:
        fields = {k: from_schema(v, object_meta) for k, v in (raw.get("properties") or {}).items()}
        additional = raw.get("additionalProperties")
        elem: Type | None
        if isinstance(additional, dict):
            elem = from_schema(additional, object_meta)
        elif additional is True or preserve or ("properties" not in raw and additional is None):
            elem = DEDUCED
        else:
            elem = None
        if raw.get("x-kubernetes-embedded-resource"):
            fields.setdefault("apiVersion", SCALAR)
            fields.setdefault("kind", SCALAR)
            fields["metadata"] = object_meta or DEDUCED
        return Type(
            is_map=True,
            fields=fields,
            elem=elem,
            map_atomic=raw.get("x-kubernetes-map-type") == "atomic",
        )
    if kind == "array":
        items = raw.get("items")
        item = from_schema(items, object_meta) if isinstance(items, dict) else DEDUCED
        props = (items or {}).get("properties") or {} if isinstance(items, dict) else {}
        keys = tuple(raw.get("x-kubernetes-list-map-keys") or ())
        return Type(
            is_list=True,
            list_type=str(raw.get("x-kubernetes-list-type") or "atomic"),
            keys=keys,
            key_defaults={
                k: props[k]["default"]
                for k in keys
                if isinstance(props.get(k), dict) and "default" in props[k]
            },
            item=item,
        )
    if kind in ("string", "integer", "number", "boolean"):
        return SCALAR
    return DEDUCED


def _form(t: Type, value: Any) -> str:
    """Which of ``t``'s forms applies to ``value`` (SMD's ``deduceAtom`` then ``handleAtom``)."""
    if isinstance(value, dict):
        if t.is_map:
            return "map"
    elif isinstance(value, list):
        if t.is_list:
            return "list"
    elif value is not None and value is not MISSING:
        if t.scalar:
            return "scalar"
    else:
        return "map" if t.is_map else "list" if t.is_list else "scalar"
    return "mismatch"


def _entry_type(t: Type, key: str) -> Type | None:
    declared = t.fields.get(key)
    return declared if declared is not None else t.elem


def item_pe(t: Type, item: Any, index: int) -> str:
    """The path element of a list item under list type ``t``.

    Raises:
        ValueError: when the item cannot be identified (missing key, map in a set).
    """
    if t.list_type == "map" and t.keys:
        if not isinstance(item, dict):
            if item is None:
                raise ValueError("associative list with keys may not have a null element")
            raise ValueError("associative list with keys may not have non-map elements")
        keys = {}
        for name in t.keys:
            if name in item:
                keys[name] = item[name]
            elif name in t.key_defaults:
                keys[name] = t.key_defaults[name]
            else:
                raise ValueError(
                    f'associative list with keys has an element that omits key field "{name}" '
                    "(and doesn't have default value)"
                )
        return key_pe(keys)
    if t.list_type in ("set", "map"):
        if isinstance(item, dict):
            raise ValueError("associative list without keys has an element that's a map type")
        if isinstance(item, list):
            raise ValueError("not supported: associative list with lists as elements")
        if item is None:
            raise ValueError("associative list without keys has an element that's an explicit null")
        return value_pe(item)
    return index_pe(index)


def _index(t: Type, items: list[Any], path: list[str], strict: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for i, item in enumerate(items):
        try:
            pe = item_pe(t, item, i)
        except ValueError as exc:
            if strict:
                raise TypedError(path, f"element {i}: {exc}") from None
            continue
        if pe in out:
            if strict:
                raise TypedError(path, f"duplicate entries for key {pe_string(pe)}")
            continue
        out[pe] = item
    return out


# ToFieldSet.


def to_field_set(value: Any, t: Type) -> FieldSet:
    """The paths ``value`` sets (SMD ``TypedValue.ToFieldSet``), checking it against ``t``.

    Raises:
        TypedError: undeclared fields, a value of the wrong form, list items that cannot be
            identified or are duplicated.
    """
    return _to_set(value, t, []) or FieldSet()


def _to_set(value: Any, t: Type, path: list[str]) -> FieldSet | None:
    form = _form(t, value)
    if form == "mismatch":
        want = "map" if t.is_map else "list" if t.is_list else "scalar"
        raise TypedError(path, f"expected {want}, got {_kind_of(value)}")
    if form == "map":
        if t.map_atomic or not isinstance(value, dict):
            return None
        out = FieldSet()
        for key, item in value.items():
            sub = _entry_type(t, key)
            path.append(field_pe(key))
            if sub is None:
                raise TypedError(path, "field not declared in schema")
            child = _to_set(item, sub, path)
            path.pop()
            pe = field_pe(key)
            if child is not None:
                out.children[pe] = child
            if key not in t.fields or _is_leaf(sub, item):
                out.members.add(pe)
        return out if not out.empty() else None
    if form == "list":
        if t.list_type == "atomic" or not isinstance(value, list):
            return None
        out = FieldSet()
        assert t.item is not None
        for pe, item in _index(t, value, path, True).items():
            path.append(pe)
            child = _to_set(item, t.item, path)
            path.pop()
            out.members.add(pe)
            if child is not None:
                out.children[pe] = child
        return out if not out.empty() else None
    return None


def _is_leaf(t: Type, value: Any) -> bool:
    """Whether ``value`` under ``t`` is owned as a whole (scalar, atomic, or typed as such)."""
    form = _form(t, value)
    if form == "map":
        return t.map_atomic
    if form == "list":
        return t.list_type == "atomic"
    return True


def _kind_of(value: Any) -> str:
    if isinstance(value, dict):
        return "map"
    if isinstance(value, list):
        return "list"
    return "scalar"


# Compare.


@dataclass
class Comparison:
    """Paths ``added``, ``modified`` and ``removed`` going from one object to another."""

    added: FieldSet = field(default_factory=FieldSet)
    modified: FieldSet = field(default_factory=FieldSet)
    removed: FieldSet = field(default_factory=FieldSet)

    def same(self) -> bool:
        """Whether the two objects compared have no field added, changed or removed."""
        return self.added.empty() and self.modified.empty() and self.removed.empty()


def compare(lhs: Any, rhs: Any, t: Type) -> Comparison:
    """What changed from ``lhs`` to ``rhs`` (SMD ``TypedValue.Compare``).

    Scalars and atomic parts are compared as wholes; a map or list item that appears or
    disappears is itself added or removed, and so is every leaf under it.
    """
    _, added, modified, removed = _compare(lhs, rhs, t)
    return Comparison(added or FieldSet(), modified or FieldSet(), removed or FieldSet())


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    return bool(a == b)


_Diff = tuple[str, FieldSet | None, FieldSet | None, FieldSet | None]
_CONTAINERS = (dict, list)
_SAME: _Diff = ("", None, None, None)


def _compare(lhs: Any, rhs: Any, t: Type) -> _Diff:
    """Compare one node: what happened to it (``a``dded, ``m``odified, ``r``emoved or
    ``""``) and the added, modified and removed paths below it (None when none)."""
    # Nothing is below a scalar or an empty container, as most nodes that come and go are.
    if lhs is MISSING:
        return "a", _everything(rhs, t) if rhs and type(rhs) in _CONTAINERS else None, None, None
    if rhs is MISSING:
        return "r", None, None, _everything(lhs, t) if lhs and type(lhs) in _CONTAINERS else None
    if lhs == rhs and (
        (type(lhs) is type(rhs) and not isinstance(lhs, _CONTAINERS))
        or codec.dumps(lhs) == codec.dumps(rhs)
    ):
        # Most of an update is unchanged, and this skips those parts in C. Equal scalars of
        # one type are one value; in containers the encoding tells true from 1 below, which
        # Python's equality does not.
        return _SAME
    form = _form(t, lhs)
    if form == _form(t, rhs):
        if form == "map" and not t.map_atomic:
            lm = lhs if isinstance(lhs, dict) else {}
            rm = rhs if isinstance(rhs, dict) else {}
            if lm or rm:
                keys = lm.keys() | rm.keys() if lm and rm else (lm or rm).keys()
                return _pairs(
                    [
                        (
                            field_pe(k),
                            lm.get(k, MISSING),
                            rm.get(k, MISSING),
                            _entry_type(t, k) or DEDUCED,
                        )
                        for k in keys
                    ]
                )
        elif form == "list" and t.list_type != "atomic":
            litems = _index(t, lhs, [], False) if isinstance(lhs, list) else {}
            ritems = _index(t, rhs, [], False) if isinstance(rhs, list) else {}
            if litems or ritems:
                item = t.item or DEDUCED
                return _pairs(
                    (pe, litems.get(pe, MISSING), ritems.get(pe, MISSING), item)
                    for pe in litems.keys() | ritems.keys()
                )
    return ("" if _equal(lhs, rhs) else "m"), None, None, None


def _pairs(children: Iterable[tuple[str, Any, Any, Type]]) -> _Diff:
    added: FieldSet | None = None
    modified: FieldSet | None = None
    removed: FieldSet | None = None
    for pe, lhs, rhs, t in children:
        what, a, m, r = _compare(lhs, rhs, t)
        if what == "a" or a is not None:
            added = _put(added, pe, what == "a", a)
        if what == "m" or m is not None:
            modified = _put(modified, pe, what == "m", m)
        if what == "r" or r is not None:
            removed = _put(removed, pe, what == "r", r)
    return "", added, modified, removed


def _put(into: FieldSet | None, pe: str, marked: bool, below: FieldSet | None) -> FieldSet | None:
    """``into`` (made when None) with ``pe`` a member if ``marked`` and ``below`` under it."""
    if not marked and below is None:
        return into
    if into is None:
        into = FieldSet()
    if marked:
        into.members.add(pe)
    if below is not None:
        into.children[pe] = below
    return into


def _everything(value: Any, t: Type) -> FieldSet | None:
    """Every path below ``value``: what a container that appears or disappears takes along."""
    form = _form(t, value)
    if form == "map" and not t.map_atomic and isinstance(value, dict) and value:
        out = FieldSet()
        for key, sub in value.items():
            pe = field_pe(key)
            out.members.add(pe)
            if sub and isinstance(sub, (dict, list)):  # nothing is below a leaf
                below = _everything(sub, _entry_type(t, key) or DEDUCED)
                if below is not None:
                    out.children[pe] = below
        return out
    if form == "list" and t.list_type != "atomic" and isinstance(value, list) and value:
        items = _index(t, value, [], False)
        if not items:
            return None
        out = FieldSet(set(items))
        for pe, sub in items.items():
            if sub and isinstance(sub, (dict, list)):
                below = _everything(sub, t.item or DEDUCED)
                if below is not None:
                    out.children[pe] = below
        return out
    return None


# Merge.


def merge(live: Any, config: Any, t: Type) -> Any:
    """``config`` merged onto ``live`` (SMD ``TypedValue.Merge``): the config's leaves win."""
    if live is MISSING:
        return config
    if config is MISSING:
        return live
    lform, cform = _form(t, live), _form(t, config)
    if lform != cform:
        return config
    if cform == "map" and not t.map_atomic and isinstance(live, dict) and isinstance(config, dict):
        out = dict(live)
        for key, value in config.items():
            sub = _entry_type(t, key) or DEDUCED
            out[key] = merge(live.get(key, MISSING), value, sub)
        return out
    if (
        cform == "list"
        and t.list_type != "atomic"
        and isinstance(live, list)
        and isinstance(config, list)
    ):
        assert t.item is not None
        return _merge_list(live, config, t, t.item)
    return config


def _merge_list(live: list[Any], config: list[Any], t: Type, item: Type) -> list[Any]:
    # Items only in live keep their place; items in config come in config's order, each
    # merged with its live counterpart (SMD's mergingWalker.visitListItems).
    lhs = _index(t, live, [], False)
    rhs = _index(t, config, [], False)
    lorder, rorder = list(lhs), list(rhs)
    shared = [pe for pe in rorder if pe in lhs]
    next_shared = shared.pop(0) if shared else None
    out: list[Any] = []
    li = ri = 0
    while li < len(lorder) or ri < len(rorder):
        if li < len(lorder) and ri < len(rorder):
            pe = lorder[li]
            if pe == rorder[ri]:
                out.append(merge(lhs[pe], rhs[pe], item))
                li += 1
                ri += 1
                next_shared = shared.pop(0) if shared else None
                continue
            if pe in rhs and next_shared is not None and next_shared != pe:
                li += 1
                continue
        if li < len(lorder) and lorder[li] not in rhs:
            out.append(lhs[lorder[li]])
            li += 1
            continue
        if ri < len(rorder):
            pe = rorder[ri]
            out.append(merge(lhs.get(pe, MISSING), rhs[pe], item))
            ri += 1
            if next_shared == pe:
                next_shared = shared.pop(0) if shared else None
            continue
        # Only items already placed from config remain on the live side.
        li += 1
    return out


# RemoveItems and the sets pruning needs.


def remove_items(value: Any, items: FieldSet, t: Type) -> Any:
    """``value`` without the paths that are members of ``items`` (SMD ``RemoveItems``)."""
    if items.empty():
        return value
    form = _form(t, value)
    if form == "map" and isinstance(value, dict) and not t.map_atomic:
        out = {}
        for key, sub in value.items():
            pe = field_pe(key)
            if pe in items.members:
                continue
            child = items.children.get(pe)
            out[key] = (
                sub if child is None else remove_items(sub, child, _entry_type(t, key) or DEDUCED)
            )
        return out
    if form == "list" and isinstance(value, list) and t.list_type != "atomic":
        assert t.item is not None
        kept = []
        for i, sub in enumerate(value):
            try:
                pe = item_pe(t, sub, i)
            except ValueError:
                kept.append(sub)
                continue
            if pe in items.members:
                continue
            child = items.children.get(pe)
            kept.append(sub if child is None else remove_items(sub, child, t.item))
        return kept
    return value


def ensure_named_fields_are_members(items: FieldSet, t: Type) -> FieldSet:
    """``items`` plus every declared field that has paths below it in ``items``."""
    members = set(items.members)
    children = {}
    for pe, child in items.children.items():
        sub: Type = DEDUCED
        if pe.startswith("f:") and t.is_map:
            name = pe[2:]
            if name in t.fields:
                members.add(pe)
                sub = t.fields[name]
            elif t.elem is not None:
                sub = t.elem
        elif t.is_list and t.item is not None:
            sub = t.item
        children[pe] = ensure_named_fields_are_members(child, sub)
    return FieldSet(members, children)
