"""Selectors in list and watch query strings: labels (see :mod:`arges.selectors`) and fields.

A field selector is comma-separated ``f=v``, ``f==v`` or ``f!=v``, where ``\\``, ``,`` and
``=`` in values are escaped with a backslash (``k8s.io/apimachinery/pkg/fields``); which fields
exist is up to each resource. Both parsers raise
:class:`~arges.apiserver.errors.BadRequest` with the offending text.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from arges import selectors
from arges.apiserver.errors import BadRequest
from arges.selectors import LabelSelector


def parse_label_selector(text: str | None) -> LabelSelector:
    """Parse the ``labelSelector`` query parameter.

    Raises:
        BadRequest: on a syntax error or an invalid label key or value.
    """
    try:
        return selectors.parse_label_selector(text)
    except selectors.SelectorError as exc:
        raise BadRequest(exc.message) from exc


@dataclass(frozen=True)
class FieldRequirement:
    """One field requirement: the field path, ``=`` or ``!=``, and the value."""

    field: str
    op: Literal["=", "!="]
    value: str

    def matches(self, fields: Mapping[str, str]) -> bool:
        """Whether ``fields`` (field path to value; an absent field is "") meets this
        requirement."""
        equal = fields.get(self.field, "") == self.value
        return equal if self.op == "=" else not equal


@dataclass(frozen=True)
class FieldSelector:
    """A parsed field selector; the empty selector matches everything."""

    requirements: tuple[FieldRequirement, ...] = ()

    def matches(self, fields: Mapping[str, str]) -> bool:
        """Whether ``fields`` meets every requirement (an empty selector matches all)."""
        return all(r.matches(fields) for r in self.requirements)

    def exact(self, field: str) -> str | None:
        """The value ``field`` must equal, if the selector pins it (used to narrow scans)."""
        for r in self.requirements:
            if r.field == field and r.op == "=":
                return r.value
        return None


def parse_field_selector(text: str | None, supported: frozenset[str]) -> FieldSelector:
    """Parse the ``fieldSelector`` query parameter against the fields a resource supports.

    Raises:
        BadRequest: on a syntax error or a field the resource does not index, worded as
            kube-apiserver words it (``field label not supported: spec.foo``).
    """
    if not text:
        return FieldSelector()
    reqs: list[FieldRequirement] = []
    for term in _split_unescaped(text, ","):
        if not term:
            continue
        for op in ("!=", "==", "="):
            idx = _find_unescaped(term, op)
            if idx >= 0:
                field, value = term[:idx].strip(), _unescape(term[idx + len(op) :])
                break
        else:
            raise BadRequest(f"invalid selector: '{text}'; can't understand '{term}'")
        if field not in supported:
            raise BadRequest(f"field label not supported: {field}")
        reqs.append(FieldRequirement(field, "!=" if op == "!=" else "=", value))
    return FieldSelector(tuple(reqs))


def _find_unescaped(text: str, needle: str) -> int:
    i = 0
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text.startswith(needle, i):
            return i
        i += 1
    return -1


def _split_unescaped(text: str, sep: str) -> list[str]:
    parts: list[str] = []
    cur: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            cur.append(text[i : i + 2])
            i += 2
            continue
        if ch == sep:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    parts.append("".join(cur))
    return parts


def _unescape(value: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(value):
        if value[i] == "\\" and i + 1 < len(value):
            out.append(value[i + 1])
            i += 2
        else:
            out.append(value[i])
            i += 1
    return "".join(out)
