"""ServerClass membership: which servers belong to which class.

A server belongs to a class when it is accepted and not cordoned, matches the class's label
selector, makes every CEL expression true, and matches at least one partial inventory (when
any are given). Expressions see ``hardware`` (the server's ``status.hardware`` in its JSON
form, camelCase keys), ``labels`` and ``name``; a server with no inventory yet matches no
class that has qualifiers. Expressions are compiled once per class and checked against an empty
inventory, so a typo in a field name (``hardware.cpu``) is reported when the class is read,
not silently never matching.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import celpy
from celpy import celtypes
from celpy.adapter import json_to_cel
from celpy.celparser import CELParseError
from celpy.evaluation import CELEvalError

from arges.api.server import HardwareInformation, Server
from arges.api.serverclass import ServerClass
from arges.selectors import LabelSelector, SelectorError, selector_from_label_selector

_EMPTY_HARDWARE = HardwareInformation().to_json()


class QualifierError(ValueError):
    """A class whose selector or qualifiers cannot be used; ``field`` names the culprit."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class CompiledClass:
    """A ServerClass ready to test servers against."""

    name: str
    selector: LabelSelector
    expressions: tuple[tuple[str, Any], ...]
    hardware: tuple[dict[str, Any], ...]

    @property
    def has_qualifiers(self) -> bool:
        return bool(self.expressions or self.hardware)


@lru_cache(maxsize=512)
def _compile_expression(text: str) -> Any:
    env = celpy.Environment()
    return env.program(env.compile(text))


def _evaluate(program: Any, hardware: Any, labels: Mapping[str, str], name: str) -> Any:
    activation = {
        "hardware": json_to_cel(hardware),
        "labels": json_to_cel(dict(labels)),
        "name": celtypes.StringType(name),
    }
    try:
        return program.evaluate(activation)
    except CELEvalError as exc:
        return exc


def compile_class(sc: ServerClass) -> CompiledClass:
    """Compile a class's selector and qualifiers.

    Raises:
        QualifierError: naming the field (``spec.qualifiers.expressions[1]``) and the problem.
    """
    selector = LabelSelector()
    if sc.spec.selector is not None:
        try:
            selector = selector_from_label_selector(sc.spec.selector.to_json())
        except SelectorError as exc:
            raise QualifierError("spec.selector", exc.message) from exc
    expressions: list[tuple[str, Any]] = []
    qualifiers = sc.spec.qualifiers
    for i, text in enumerate((qualifiers.expressions or []) if qualifiers else []):
        field = f"spec.qualifiers.expressions[{i}]"
        try:
            program = _compile_expression(text)
        except CELParseError as exc:
            raise QualifierError(field, f"invalid CEL: {str(exc).strip()}") from exc
        probe = _evaluate(program, _EMPTY_HARDWARE, {}, "")
        if isinstance(probe, CELEvalError):
            raise QualifierError(
                field, f"cannot be evaluated: {probe.args[0] if probe.args else probe}"
            )
        if not isinstance(probe, celtypes.BoolType):
            raise QualifierError(field, f"must evaluate to a boolean, not {type(probe).__name__}")
        expressions.append((text, program))
    partial = tuple(
        _non_zero(h.to_json()) for h in ((qualifiers.hardware or []) if qualifiers else [])
    )
    return CompiledClass(sc.name, selector, tuple(expressions), partial)


def _non_zero(value: Any) -> Any:
    if isinstance(value, dict):
        kept = {k: _non_zero(v) for k, v in value.items()}
        return {k: v for k, v in kept.items() if v not in ("", 0, None, [], {})}
    if isinstance(value, list):
        return [_non_zero(v) for v in value]
    return value


def partial_match(qualifier: Any, actual: Any) -> bool:
    """Sidero's partial equality: every field the qualifier gives equals the server's; lists
    compare element by element, and a qualifier list longer than the server's fails."""
    if isinstance(qualifier, dict):
        if not isinstance(actual, dict):
            return False
        return all(partial_match(v, actual.get(k)) for k, v in qualifier.items())
    if isinstance(qualifier, list):
        if not isinstance(actual, list) or len(qualifier) > len(actual):
            return False
        return all(partial_match(q, a) for q, a in zip(qualifier, actual, strict=False))
    return bool(qualifier == actual)


def eligible(server: Server) -> bool:
    """Accepted, not cordoned and not being deleted: only such servers join classes."""
    return (
        server.spec.accepted
        and not server.spec.cordoned
        and not server.metadata.get("deletionTimestamp")
    )


def matches(cls: CompiledClass, server: Server) -> bool:
    """Whether ``server`` belongs to ``cls`` (see the module docstring)."""
    if not eligible(server) or not cls.selector.matches(server.labels):
        return False
    if not cls.has_qualifiers:
        return True
    if server.status.hardware is None:
        return False
    hardware = server.status.hardware.to_json()
    for _, program in cls.expressions:
        result = _evaluate(program, hardware, server.labels, server.name)
        if not (isinstance(result, celtypes.BoolType) and bool(result)):
            return False
    return not cls.hardware or any(partial_match(q, hardware) for q in cls.hardware)


def members(
    cls: CompiledClass, servers: Iterable[Server], bound: set[str]
) -> tuple[list[str], list[str]]:
    """Names of the class's (available, in use) servers, each sorted; ``bound`` holds the
    names of servers that have a ServerBinding."""
    names = sorted(s.name for s in servers if matches(cls, s))
    return [n for n in names if n not in bound], [n for n in names if n in bound]
