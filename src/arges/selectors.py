"""Label selectors: parsed from their text form or a ``LabelSelector`` object, matched on dicts.

Grammar and semantics follow ``k8s.io/apimachinery/pkg/labels``: comma-separated requirements
``k=v``, ``k==v``, ``k!=v``, ``k in (a,b)``, ``k notin (a,b)``, ``k`` (exists) and ``!k``
(does not exist), all of which must hold; ``!=`` and ``notin`` also match objects that lack
the key. Errors are :class:`SelectorError` with the offending text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from arges.errors import ArgesError
from arges.names import label_key_errors, label_value_errors


class SelectorError(ArgesError, ValueError):
    """A selector that does not parse, or names an invalid key, value or operator."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


Operator = Literal["=", "!=", "in", "notin", "exists", "!exists"]

_TOKEN = re.compile(r"\s*(!=|==|=|\(|\)|,|!|[^\s!=(),]+)")


@dataclass(frozen=True)
class Requirement:
    """One label requirement: ``key``, an operator and the values it compares against."""

    key: str
    op: Operator
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether ``labels`` meets this requirement (``!=`` and ``notin`` match an absent
        key, as Kubernetes' label selectors do)."""
        present = self.key in labels
        if self.op == "exists":
            return present
        if self.op == "!exists":
            return not present
        if self.op in ("=", "in"):
            return present and labels[self.key] in self.values
        return not present or labels[self.key] not in self.values


@dataclass(frozen=True)
class LabelSelector:
    """A parsed label selector; the empty selector matches everything."""

    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether ``labels`` meets every requirement (an empty selector matches all)."""
        return all(r.matches(labels) for r in self.requirements)

    @property
    def empty(self) -> bool:
        return not self.requirements


def parse_label_selector(text: str | None) -> LabelSelector:
    """Parse the ``labelSelector`` query parameter.

    Raises:
        SelectorError: on a syntax error or an invalid label key or value.
    """
    if not text or not text.strip():
        return LabelSelector()
    tokens = _tokenize(text)
    reqs: list[Requirement] = []
    i = 0

    def fail(why: str) -> SelectorError:
        return SelectorError(f'unable to parse requirement: found "{text}", {why}')

    while i < len(tokens):
        negated = tokens[i] == "!"
        if negated:
            i += 1
        if i >= len(tokens) or tokens[i] in ("!=", "==", "=", "(", ")", ","):
            raise fail("expected a label key")
        key = tokens[i]
        _check_key(key, text)
        i += 1
        nxt = tokens[i] if i < len(tokens) else ","
        if negated:
            if nxt != ",":
                raise fail("a '!' requirement takes no operator")
            reqs.append(Requirement(key, "!exists"))
        elif nxt == ",":
            reqs.append(Requirement(key, "exists"))
        elif nxt in ("=", "==", "!="):
            if i + 1 >= len(tokens) or tokens[i + 1] in ("(", ")", ",", "=", "==", "!=", "!"):
                value = ""
                i += 1
            else:
                value = tokens[i + 1]
                i += 2
            _check_value(value, text)
            reqs.append(Requirement(key, "!=" if nxt == "!=" else "=", frozenset([value])))
        elif nxt in ("in", "notin"):
            if i + 1 >= len(tokens) or tokens[i + 1] != "(":
                raise fail(f"expected '(' after '{nxt}'")
            i += 2
            values: list[str] = []
            while i < len(tokens) and tokens[i] != ")":
                if tokens[i] != ",":
                    _check_value(tokens[i], text)
                    values.append(tokens[i])
                i += 1
            if i >= len(tokens):
                raise fail("expected ')'")
            if not values:
                raise fail(f"'{nxt}' needs at least one value")
            i += 1
            reqs.append(Requirement(key, "in" if nxt == "in" else "notin", frozenset(values)))
        else:
            raise fail(f"unexpected '{nxt}' after key '{key}'")
        if i < len(tokens):
            if tokens[i] != ",":
                raise fail(f"expected ',' but found '{tokens[i]}'")
            i += 1
            if i == len(tokens):
                raise fail("expected a requirement after ','")
    return LabelSelector(tuple(reqs))


def selector_from_label_selector(spec: Mapping[str, object]) -> LabelSelector:
    """Build a selector from a ``meta/v1 LabelSelector`` object (matchLabels, matchExpressions).

    Raises:
        SelectorError: when an expression uses an unknown operator or lacks values.
    """
    reqs: list[Requirement] = []
    match_labels = spec.get("matchLabels") or {}
    if isinstance(match_labels, Mapping):
        for key, value in sorted(match_labels.items()):
            reqs.append(Requirement(str(key), "=", frozenset([str(value)])))
    ops: dict[str, Operator] = {
        "In": "in",
        "NotIn": "notin",
        "Exists": "exists",
        "DoesNotExist": "!exists",
    }
    expressions = spec.get("matchExpressions") or []
    if isinstance(expressions, list):
        for expr in expressions:
            op = ops.get(str(expr.get("operator")))
            if op is None:
                raise SelectorError(
                    f"{expr.get('operator')!r} is not a valid label selector operator"
                )
            values = frozenset(str(v) for v in expr.get("values") or [])
            if op in ("in", "notin") and not values:
                raise SelectorError(f"operator {expr.get('operator')} needs at least one value")
            reqs.append(Requirement(str(expr.get("key")), op, values))
    return LabelSelector(tuple(reqs))


def _tokenize(text: str) -> list[str]:
    tokens: list[str] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise SelectorError(f'unable to parse requirement: found "{text}"')
        tokens.append(m.group(1))
        pos = m.end()
    return tokens


def _check_key(key: str, text: str) -> None:
    errs = label_key_errors(key)
    if errs:
        raise SelectorError(f'unable to parse requirement: invalid label key "{key}": {errs[0]}')


def _check_value(value: str, text: str) -> None:
    errs = label_value_errors(value)
    if errs:
        raise SelectorError(
            f'unable to parse requirement: invalid label value: "{value}": {errs[0]}'
        )
