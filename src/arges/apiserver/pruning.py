"""Pruning: what kube-apiserver does first with an object written to a structural schema.

Every field the schema does not declare is dropped, unless ``additionalProperties`` is
``true`` or ``x-kubernetes-preserve-unknown-fields: true`` keeps it; at the root and in
``x-kubernetes-embedded-resource`` objects ``apiVersion``, ``kind`` and ``metadata`` are always
kept, ``metadata`` reduced to the ``ObjectMeta`` fields. The dropped fields' paths are returned
in the order found (``spec.a.b``, ``spec.list[0].c``; a map's key is dotted like a field), so
the caller can warn (``fieldValidation=Warn``) or refuse (``Strict``).

The schema is compiled once into :class:`Pruner` nodes, and a field's path is spelled out only
when it is dropped: every write prunes its object, and reading the schema's keys and joining a
path at each of its fields cost more than the walk itself. An update may give the object as it
was stored, pruned by the same schema: a declared field whose value the update left equal to
the stored one has nothing left to drop, and is not walked again (a Server's status update
does not walk its inventory).

Reference: https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/
custom-resource-definitions/#field-pruning
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

OBJECT_META_FIELDS = frozenset(
    {
        "name",
        "generateName",
        "namespace",
        "selfLink",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "labels",
        "annotations",
        "ownerReferences",
        "finalizers",
        "managedFields",
    }
)

_KEPT_AT_ROOT = frozenset({"apiVersion", "kind", "metadata"})

# Where a field is, built only as far as the walk has gone: (parent, key), None at the
# object's root; a str key is a field's name, an int a list index.
_Where = tuple[Any, str | int] | None


@dataclass(frozen=True, slots=True, eq=False)
class Pruner:
    """A schema node as pruning reads it.

    ``props``: the declared fields (None: the node declares no ``properties``); ``additional``:
    the node every undeclared field is pruned by (a schema ``additionalProperties``);
    ``keep``: undeclared fields stay (``additionalProperties: true`` or
    ``x-kubernetes-preserve-unknown-fields``); ``root``: the object is pruned as a root
    (``x-kubernetes-embedded-resource``, or the schema's top); ``items``: a list's items.
    """

    props: dict[str, Pruner] | None
    additional: Pruner | None
    keep: bool
    root: bool
    items: Pruner | None

    @classmethod
    def compile(cls, schema: dict[str, Any], *, root: bool = True) -> Pruner:
        """``schema`` (an ``openAPIV3Schema`` node) compiled; ``root``: it is the top of an
        object (the schema's own top is)."""
        props = schema.get("properties")
        additional = schema.get("additionalProperties")
        items = schema.get("items")
        root = root or bool(schema.get("x-kubernetes-embedded-resource"))
        return cls(
            props=(
                {k: cls.compile(_node(v), root=False) for k, v in props.items()}
                if isinstance(props, dict)
                else None
            ),
            # A root's additionalProperties are not read (its fields are declared ones).
            additional=(
                cls.compile(additional, root=False)
                if isinstance(additional, dict) and not root
                else None
            ),
            keep=schema.get("x-kubernetes-preserve-unknown-fields") is True
            or (additional is True and not root),
            root=root,
            items=cls.compile(items, root=False) if isinstance(items, dict) else None,
        )

    def prune(self, obj: dict[str, Any], pruned: dict[str, Any] | None = None) -> list[str]:
        """Drop the undeclared fields of ``obj`` in place; returns their dotted paths.

        ``pruned``: an earlier state of the object that this schema pruned already (the
        stored object of an update); the values ``obj`` holds equal to it are not walked.
        """
        dropped: list[_Where] = []
        _prune(obj, self, None, dropped, pruned)
        return [_spell(where) for where in dropped]


def _prune(value: Any, node: Pruner, where: _Where, dropped: list[_Where], pruned: Any) -> None:
    # ``pruned``: the value at the same place in an object pruned by the same schema, when
    # it is of the same type (else None). Equal values have the same fields all the way
    # down (Python's equality of dicts and lists is structural), so nothing is left to drop.
    if isinstance(value, dict):
        before = pruned if type(pruned) is dict else None
        root = node.root
        if root:
            meta = value.get("metadata")
            if isinstance(meta, dict):
                extra = [key for key in meta if key not in OBJECT_META_FIELDS]
                for key in extra:
                    del meta[key]
                    dropped.append(((where, "metadata"), key))
        # A root's additional is None (see Pruner.compile): its fields are the declared ones.
        props, additional = node.props, node.additional
        gone = []
        for key, sub_value in value.items():
            if root and key in _KEPT_AT_ROOT:
                continue
            sub = props.get(key) if props is not None else None
            if sub is None:
                sub = additional
            if sub is not None:
                if isinstance(sub_value, dict | list):
                    was = before.get(key) if before is not None else None
                    _prune_changed(sub_value, sub, (where, key), dropped, was)
            elif not node.keep:
                gone.append(key)
                dropped.append((where, key))
        for key in gone:
            del value[key]
    elif isinstance(value, list):
        items = node.items
        if items is not None:
            before_items = pruned if type(pruned) is list else ()
            for i, item in enumerate(value):
                if isinstance(item, dict | list):
                    was = before_items[i] if i < len(before_items) else None
                    _prune_changed(item, items, (where, i), dropped, was)


def _prune_changed(
    value: Any, node: Pruner, where: _Where, dropped: list[_Where], was: Any
) -> None:
    """:func:`_prune` of ``value`` unless it equals ``was``, its pruned former self."""
    if was is None or was != value:
        _prune(value, node, where, dropped, was)


def _spell(where: _Where) -> str:
    """``where`` as kube-apiserver words a field's path: ``a.b``, ``a[0].b``."""
    keys: list[str | int] = []
    while where is not None:
        where, key = where
        keys.append(key)
    out = ""
    for key in reversed(keys):
        out = f"{out}[{key}]" if isinstance(key, int) else f"{out}.{key}" if out else key
    return out


def _node(schema: Any) -> dict[str, Any]:
    # A structural schema's properties are schemas; anything else declares the field only.
    return schema if isinstance(schema, dict) else {}
