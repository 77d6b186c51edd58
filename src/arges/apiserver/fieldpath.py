"""Sets of field paths, as structured-merge-diff keeps them, and their FieldsV1 encoding.

Server-side apply records who owns which fields of an object as sets of paths
(``sigs.k8s.io/structured-merge-diff/v4/fieldpath``). A path is a sequence of elements, each
kept here as its FieldsV1 key, so decoding and encoding need no translation:

- ``f:<name>``: a field of an object or an entry of a map (``f:spec``, ``f:app``);
- ``k:<json>``: an item of a list that is a map, by its keys, fields sorted by name
  (``k:{"name":"a","port":80}``);
- ``v:<json>``: an item of a list that is a set, by its value (``v:"finalizer"``);
- ``i:<n>``: an item by index (lists that are neither atomic nor associative).

A :class:`FieldSet` holds *members* (paths in the set) and *children* (the sets below a path
element). FieldsV1 writes a member as ``{}``, a child as its own object, and a path that is
both as the child's object with ``".": {}`` in it; keys are sorted as SMD sorts path elements
(field names, then keys, then values, then indexes; JSON values ordered numbers, strings,
booleans, lists, maps, null). Values inside keys are written as Go's ``encoding/json`` writes
them (``<``, ``>`` and ``&`` escaped), so the bytes match what kube-apiserver stores and what
kubectl and controller-runtime parse.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import orjson

Path = tuple[str, ...]

_HTML_ESCAPES = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


def encode_value(value: Any) -> str:
    """``value`` as compact JSON the way Go's ``encoding/json`` writes it (map keys sorted)."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return text.translate(_HTML_ESCAPES)


def field_pe(name: str) -> str:
    """The path element of an object field or a map entry."""
    return "f:" + name


def key_pe(keys: dict[str, Any]) -> str:
    """The path element of a list item identified by ``keys`` (field name to value)."""
    return (
        "k:{" + ",".join(encode_value(k) + ":" + encode_value(keys[k]) for k in sorted(keys)) + "}"
    )


def value_pe(value: Any) -> str:
    """The path element of a set item."""
    return "v:" + encode_value(value)


def index_pe(index: int) -> str:
    """The path element of a list item by position."""
    return f"i:{index}"


def normalize_pe(text: str) -> str:
    """A path element read from a client, re-encoded canonically.

    Raises:
        ValueError: when ``text`` is not a path element.
    """
    kind, sep, rest = text.partition(":")
    if not sep:
        raise ValueError(f"invalid path element {text!r}: no type prefix")
    if kind == "f":
        return text
    if kind == "i":
        try:
            return index_pe(int(rest))
        except ValueError:
            raise ValueError(f"invalid path element {text!r}: bad index") from None
    try:
        decoded = json.loads(rest)
    except ValueError:
        raise ValueError(f"invalid path element {text!r}: bad JSON") from None
    if kind == "k":
        if not isinstance(decoded, dict) or not decoded:
            raise ValueError(f"invalid path element {text!r}: keys must be a JSON object")
        return key_pe(decoded)
    if kind == "v":
        return value_pe(decoded)
    raise ValueError(f"invalid path element {text!r}: unknown type {kind!r}")


def _value_order(value: Any) -> tuple[Any, ...]:
    # value.Compare in SMD: numbers, strings, booleans, lists, maps, null.
    if isinstance(value, bool):
        return (2, value)
    if isinstance(value, int | float):
        return (0, value)
    if isinstance(value, str):
        return (1, value)
    if isinstance(value, list):
        return (3, tuple(_value_order(v) for v in value))
    if isinstance(value, dict):
        return (4, tuple((k, _value_order(value[k])) for k in sorted(value)))
    return (5,)


def pe_order(pe: str) -> tuple[Any, ...]:
    """Sort key putting path elements in structured-merge-diff's order."""
    kind, rest = pe[0], pe[2:]
    if kind == "f":
        return (0, rest)
    if kind == "k":
        keys = json.loads(rest)
        return (1, tuple((k, _value_order(keys[k])) for k in sorted(keys)))
    if kind == "v":
        return (2, _value_order(json.loads(rest)))
    return (3, int(rest))


def pe_string(pe: str) -> str:
    """A path element as SMD prints it in conflicts: ``.name``, ``[k="v"]``, ``[=v]``, ``[0]``."""
    kind, rest = pe[0], pe[2:]
    if kind == "f":
        return "." + rest
    if kind == "k":
        keys = json.loads(rest)
        return "[" + ",".join(f"{k}={_show(keys[k])}" for k in sorted(keys)) + "]"
    if kind == "v":
        return f"[={_show(json.loads(rest))}]"
    return f"[{rest}]"


def path_string(path: Path) -> str:
    """A whole path as SMD prints it (``.spec.containers[name="a"].image``)."""
    return "".join(pe_string(pe) for pe in path)


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ",".join(_show(v) for v in value) + "]"
    if isinstance(value, dict):
        return "".join(f"{k}={_show(v)}" for k, v in value.items())
    return str(value)


class FieldSet:
    """A set of paths: ``members`` here and ``children`` sets below path elements.

    Children are never empty, so an empty set is one with neither. Operations return new
    sets that may share parts with their operands: a set is not changed once built, so its
    FieldsV1 encoding is made once (:meth:`to_fields_v1`).
    """

    __slots__ = ("_v1", "children", "members")

    def __init__(
        self, members: set[str] | None = None, children: dict[str, FieldSet] | None = None
    ) -> None:
        self.members: set[str] = members if members is not None else set()
        self.children: dict[str, FieldSet] = children if children is not None else {}
        self._v1: bytes | None = None

    @classmethod
    def of(cls, *paths: Path) -> FieldSet:
        """A set holding ``paths``."""
        out = cls()
        for path in paths:
            out.insert(path)
        return out

    def __repr__(self) -> str:
        return f"FieldSet({self.to_fields_v1()!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FieldSet):
            return NotImplemented
        return self.members == other.members and self.children == other.children

    def empty(self) -> bool:
        """Whether the set holds no path."""
        return not self.members and not self.children

    def insert(self, path: Path) -> None:
        """Add ``path`` (in place, while the set is built)."""
        node = self
        for pe in path[:-1]:
            node._v1 = None
            child = node.children.get(pe)
            if child is None:
                child = node.children[pe] = FieldSet()
            node = child
        node._v1 = None
        if path:
            node.members.add(path[-1])

    def child(self, pe: str) -> FieldSet:
        """The set below ``pe`` (an empty set when there is none)."""
        return self.children.get(pe) or FieldSet()

    def has(self, path: Path) -> bool:
        """Whether ``path`` itself is in the set (a path only below it does not count)."""
        node: FieldSet | None = self
        for pe in path[:-1]:
            node = node.children.get(pe) if node is not None else None
        return node is not None and bool(path) and path[-1] in node.members

    def union(self, other: FieldSet) -> FieldSet:
        """The paths in either set (an operand itself when the other is empty)."""
        if other.empty():
            return self
        if self.empty():
            return other
        children = dict(self.children)
        for pe, c in other.children.items():
            mine = children.get(pe)
            children[pe] = c if mine is None else mine.union(c)
        return FieldSet(self.members | other.members, children)

    def intersection(self, other: FieldSet) -> FieldSet:
        """The paths in both sets."""
        children = {}
        for pe, c in self.children.items():
            theirs = other.children.get(pe)
            if theirs is not None:
                both = c.intersection(theirs)
                if not both.empty():
                    children[pe] = both
        return FieldSet(self.members & other.members, children)

    def difference(self, other: FieldSet) -> FieldSet:
        """Paths of ``self`` not in ``other`` (children of removed members stay)."""
        if other.empty():
            return self
        children = {}
        for pe, c in self.children.items():
            theirs = other.children.get(pe)
            rest = c if theirs is None else c.difference(theirs)
            if not rest.empty():
                children[pe] = rest
        return FieldSet(self.members - other.members, children)

    def recursive_difference(self, other: FieldSet) -> FieldSet:
        """Paths of ``self`` neither in ``other`` nor below one of its members."""
        if other.empty():
            return self
        children = {}
        for pe, c in self.children.items():
            if pe in other.members:
                continue
            theirs = other.children.get(pe)
            rest = c if theirs is None else c.recursive_difference(theirs)
            if not rest.empty():
                children[pe] = rest
        return FieldSet(self.members - other.members, children)

    def paths(self, prefix: Path = ()) -> Iterator[Path]:
        """Every member path, in SMD's iteration order (members, then children, sorted)."""
        for pe in sorted(self.members, key=pe_order):
            yield (*prefix, pe)
        for pe in sorted(self.children, key=pe_order):
            yield from self.children[pe].paths((*prefix, pe))

    def to_fields_v1(self) -> dict[str, Any]:
        """The FieldsV1 object of this set: a new object at each call."""
        data: dict[str, Any] = orjson.loads(self._encoded())
        return data

    def _encoded(self) -> bytes:
        # Every write re-encodes the managedFields of every manager, and most of their sets
        # (and the parts a union shares) are the ones the last write decoded or built: each
        # set's JSON is made once and spliced into its parents'.
        if self._v1 is not None:
            return self._v1
        keys = self.members | self.children.keys()
        # Field names alone sort as plain strings; keys and values need SMD's value order.
        fields_only = all(pe[0] == "f" for pe in keys)
        parts = []
        for pe in sorted(keys) if fields_only else sorted(keys, key=pe_order):
            child = self.children.get(pe)
            if child is None:
                value = b"{}"
            elif pe in self.members:
                inner = child._encoded()
                value = b'{".":{}}' if inner == b"{}" else b'{".":{},' + inner[1:]
            else:
                value = child._encoded()
            parts.append(orjson.dumps(pe) + b":" + value)
        self._v1 = b"{" + b",".join(parts) + b"}"
        return self._v1

    @classmethod
    def from_fields_v1(cls, data: Any) -> FieldSet:
        """Parse a FieldsV1 object.

        Raises:
            ValueError: when ``data`` is not one (not an object, a bad path element).
        """
        if not isinstance(data, dict):
            raise ValueError("FieldsV1 must be a JSON object")
        out = cls()
        for key, value in data.items():
            if key == ".":
                continue
            pe = normalize_pe(key)
            if not isinstance(value, dict):
                raise ValueError(f"the value of {key!r} must be a JSON object")
            if not value or "." in value:
                out.members.add(pe)
            child = cls.from_fields_v1(value)
            if not child.empty():
                out.children[pe] = child
        return out
