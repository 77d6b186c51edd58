"""Validation ratcheting: an update may keep what was already invalid, not add to it.

kube-apiserver (KEP-4008, on by default since 1.30, GA in 1.33) accepts an update of a custom
resource that fails its schema if every failing part of the object is unchanged by the
update: a CRD author can tighten a schema without making the objects stored under the old one
impossible to update (a controller could no longer write their status). Creates are not
ratcheted, nor is ``metadata``'s own validation, nor duplicate items of ``set`` and ``map``
lists.

A failure at a place in the new object is ratcheted when that place, or one of the places
above it, equals its old value (``apiextensions-apiserver/pkg/apiserver/validation/
ratcheting.go``). Old values are found place by place from the root, as there: by property
name and map key, and by the ``x-kubernetes-list-map-keys`` of a ``list-type: map`` list; the
items of other lists have no old value of their own (their list is compared whole). Below an
``allOf``, ``anyOf``, ``oneOf`` or ``not``, places are not followed: such a failure is
ratcheted only where the place holding the composition (or one above it) is unchanged. Values
are equal as ``reflect.DeepEqual`` finds them: ``1``, ``1.0`` and ``true`` differ.

Reference: https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/
custom-resource-definitions/#validation-ratcheting
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import orjson

ABSENT: Any = object()
"""No old value here (an old object without the property, an item that does not correlate)."""

_COMPOSITIONS = frozenset({"allOf", "anyOf", "oneOf", "not"})


def same(new: Any, old: Any) -> bool:
    """Whether two JSON values are equal as Go's ``reflect.DeepEqual`` compares decoded JSON:
    maps whatever their key order, but a bool, an integer and a float never equal each other
    (Python's ``==`` finds ``1 == 1.0 == True``)."""
    if old is ABSENT or new != old:
        return False
    return orjson.dumps(new, option=orjson.OPT_SORT_KEYS) == orjson.dumps(
        old, option=orjson.OPT_SORT_KEYS
    )


def correlate(items: list[Any], old: Any, keys: Sequence[str]) -> Iterator[tuple[Any, Any]]:
    """Each of ``items`` with its old self (None: none): the old item with the same ``keys``
    (a ``list-type: map`` list's ``x-kubernetes-list-map-keys``); without keys, none."""
    if not keys or not isinstance(old, list):
        for item in items:
            yield item, None
        return
    by_key = {}
    for before in old:
        if isinstance(before, dict):
            by_key[json.dumps([before.get(k) for k in keys], sort_keys=True)] = before
    for item in items:
        key = (
            json.dumps([item.get(k) for k in keys], sort_keys=True)
            if isinstance(item, dict)
            else ""
        )
        yield item, by_key.get(key)


def _map_keys(schema: Any) -> Sequence[str]:
    """The keys items of a list under ``schema`` correlate by (none unless ``list-type: map``)."""
    if not isinstance(schema, dict) or schema.get("x-kubernetes-list-type") != "map":
        return ()
    return schema.get("x-kubernetes-list-map-keys") or ()


def child_schema(schema: Any, key: str | int) -> Any:
    """The structural schema of property or item ``key`` under ``schema`` (``{}``: none)."""
    if not isinstance(schema, dict):
        return {}
    if isinstance(key, int):
        items = schema.get("items")
        return items if isinstance(items, dict) else {}
    props = schema.get("properties") or {}
    if key in props:
        return props[key]
    additional = schema.get("additionalProperties")
    return additional if isinstance(additional, dict) else {}


def unchanged(
    parts: Sequence[str | int], new: Any, old: Any, schema: Any, *, stop: int | None = None
) -> bool:
    """Whether a failure at ``parts`` (property names and list indexes from the root of
    ``new``) is ratcheted: some place on the way there, from the root, equals its old value
    in ``old``. ``schema`` is the structural schema of the root (for list types); ``stop`` is
    how many parts are followed at most (a composition's depth, see :func:`composition_depth`).
    """
    node, before, here = new, old, schema
    for depth in range(len(parts) + 1):
        if same(node, before):
            return True
        if depth == len(parts) or (stop is not None and depth >= stop):
            return False
        key = parts[depth]
        if isinstance(key, int):
            if not isinstance(node, list) or key >= len(node):
                return False
            node, found = next(correlate([node[key]], before, _map_keys(here)))
            before = ABSENT if found is None else found
        else:
            if not isinstance(node, dict) or key not in node:
                return False
            before = before.get(key, ABSENT) if isinstance(before, dict) else ABSENT
            node = node[key]
        if before is ABSENT:
            return False
        here = child_schema(here, key)
    return False


def composition_depth(schema_path: Iterable[Any]) -> int | None:
    """How many places deep the first composition on ``schema_path`` (a JSON Schema error's
    ``absolute_schema_path``) applies, or None when there is none."""
    depth = 0
    tokens = iter(schema_path)
    for token in tokens:
        if token in _COMPOSITIONS:
            return depth
        if token in ("properties", "patternProperties"):
            next(tokens, None)
            depth += 1
        elif token in ("additionalProperties", "items"):
            depth += 1
        elif isinstance(token, int):
            continue  # a tuple form's index after "items"
        else:
            return None
    return None
