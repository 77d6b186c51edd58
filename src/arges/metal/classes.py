"""ServerClass membership: which servers belong to which class.

A server belongs to a class when it is accepted and not cordoned, matches the class's label
selector and Sidero-style ``labelSelectors`` (any one pair), makes every CEL expression true,
and matches at least one partial inventory (when any are given). Expressions see ``hardware``
(the server's ``status.hardware`` in its JSON form, camelCase keys), ``labels`` and ``name``; a
server with no inventory yet matches no class that has hardware qualifiers. Classes are
compiled once and checked up front, so a class that cannot mean what it says is reported when
it is read instead of silently never matching: a typo in an expression's field name
(``hardware.cpu``), a memory module size written in Sidero's MB, a total size that is neither
bytes nor Sidero's ``"<N> GB"``.

The partial-inventory rules are Sidero's ``PartialEqual`` and ``QualifiersFilter``
(``api/v1alpha2/server_types.go``, ``serverclass_filter.go``): fields left out, zero or empty
are not compared, lists compare element by element and a qualifier list longer than the
server's fails; ``"<N> GB"`` totals compare whole GiB, rounded down, as Sidero's inventory
wrote them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import celpy
from celpy import celtypes
from celpy.adapter import json_to_cel
from celpy.celparser import CELParseError
from celpy.evaluation import CELEvalError

from arges.api.qualifiers import GIB, HardwareQualifier, module_size_problem
from arges.api.server import HardwareInformation, Server
from arges.api.serverclass import ServerClass
from arges.errors import ArgesError
from arges.selectors import LabelSelector, SelectorError, selector_from_label_selector

_EMPTY_HARDWARE = HardwareInformation().to_json()
_SIDERO_TOTAL = re.compile(r"^(\d+) GB$")


class QualifierError(ArgesError, ValueError):
    """A class whose selector or qualifiers cannot be used; ``field`` names the culprit."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class WholeGiB:
    """A total size qualifier written Sidero's way, ``"<N> GB"``: N whole GiB, rounded down."""

    gib: int

    def matches(self, actual: Any) -> bool:
        """Whether a total in bytes is this many whole GiB."""
        return isinstance(actual, int) and actual // GIB == self.gib


@dataclass(frozen=True)
class CompiledClass:
    """A ServerClass ready to test servers against. ``label_pairs`` holds the pairs of its
    Sidero-style ``labelSelectors`` (None when it has none)."""

    name: str
    selector: LabelSelector
    expressions: tuple[tuple[str, Any], ...]
    hardware: tuple[dict[str, Any], ...]
    label_pairs: frozenset[tuple[str, str]] | None = None

    @property
    def needs_inventory(self) -> bool:
        """Whether membership depends on the server's inventory."""
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
        _compile_hardware(i, h)
        for i, h in enumerate((qualifiers.hardware or []) if qualifiers else [])
    )
    maps = (qualifiers.label_selectors or []) if qualifiers else []
    pairs = frozenset(pair for m in maps for pair in m.items()) if maps else None
    return CompiledClass(sc.name, selector, tuple(expressions), partial, pairs)


def _compile_hardware(index: int, qualifier: HardwareQualifier) -> dict[str, Any]:
    """One partial inventory with its zero fields dropped and Sidero's ``"<N> GB"`` totals
    made :class:`WholeGiB`.

    Raises:
        QualifierError: a memory module size in MB, or a total that is not a size.
    """
    field = f"spec.qualifiers.hardware[{index}]"
    for j, module in enumerate((qualifier.memory.modules or []) if qualifier.memory else []):
        problem = module_size_problem(module.size or 0)
        if problem is not None:
            raise QualifierError(f"{field}.memory.modules[{j}].size", problem)
    partial: dict[str, Any] = _non_zero(qualifier.to_json())
    for section in ("memory", "storage"):
        found = partial.get(section) or {}
        total = found.get("totalSize")
        if isinstance(total, str):
            whole = _SIDERO_TOTAL.match(total)
            if whole is None:
                raise QualifierError(
                    f"{field}.{section}.totalSize",
                    f"{total!r} is not a size: give bytes (an integer) or Sidero's "
                    '"<N> GB" (whole GiB, rounded down)',
                )
            found["totalSize"] = WholeGiB(int(whole.group(1)))
    return partial


def _non_zero(value: Any) -> Any:
    if isinstance(value, dict):
        kept = {k: _non_zero(v) for k, v in value.items()}
        return {k: v for k, v in kept.items() if v not in ("", 0, None, [], {})}
    if isinstance(value, list):
        return [_non_zero(v) for v in value]
    return value


def partial_match(qualifier: Any, actual: Any) -> bool:
    """Sidero's partial equality: every field the qualifier gives equals the server's (a
    :class:`WholeGiB` total: by whole GiB); lists compare element by element, and a qualifier
    list longer than the server's fails."""
    if isinstance(qualifier, dict):
        if not isinstance(actual, dict):
            return False
        return all(partial_match(v, actual.get(k)) for k, v in qualifier.items())
    if isinstance(qualifier, list):
        if not isinstance(actual, list) or len(qualifier) > len(actual):
            return False
        return all(partial_match(q, a) for q, a in zip(qualifier, actual, strict=False))
    if isinstance(qualifier, WholeGiB):
        return qualifier.matches(actual)
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
    labels = server.labels
    if cls.label_pairs is not None and not any(labels.get(k) == v for k, v in cls.label_pairs):
        return False
    if not cls.needs_inventory:
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
    cls: CompiledClass,
    servers: Iterable[Server],
    bound: set[str],
    memo: dict[str, tuple[str, bool]] | None = None,
) -> tuple[list[str], list[str]]:
    """Names of the class's (available, in use) servers, each sorted; ``bound`` holds the
    names of servers that have a ServerBinding.

    ``memo`` (server name -> (its resourceVersion, whether it matched)) keeps the answers for
    this very ``cls`` between calls: a server whose resourceVersion is unchanged is not
    matched again, and the memo is left holding exactly ``servers``. Matching every server on
    every change would make a fleet's class upkeep grow with the square of its size.
    """
    known = memo if memo is not None else {}
    fresh: dict[str, tuple[str, bool]] = {}
    for server in servers:
        rv = str(server.metadata.get("resourceVersion", ""))
        seen = known.get(server.name)
        found = seen[1] if seen is not None and rv and seen[0] == rv else matches(cls, server)
        fresh[server.name] = (rv, found)
    if memo is not None:
        memo.clear()
        memo.update(fresh)
    names = [name for name, (_, found) in fresh.items() if found]
    names.sort()
    return [n for n in names if n not in bound], [n for n in names if n in bound]


MEMBERSHIP_WRITE_SECONDS = 1.0
"""The least time between two writes of a class's membership lists, up to
:data:`SERVERS_PER_WRITE_SECOND` servers."""
SERVERS_PER_WRITE_SECOND = 250
"""Past this many servers the least time grows with the fleet: each write lists every server,
so at a fixed rate the fleet's whole membership cost grew with the square of its size."""


def write_membership_in(last_write: float | None, now: float, servers: int) -> float:
    """Seconds until a class's membership lists may be written again (0.0: now).

    ``last_write`` and ``now`` are monotonic seconds (``last_write`` None: never written);
    ``servers`` is the fleet's size. The least time between writes is
    :data:`MEMBERSHIP_WRITE_SECONDS`, scaled by ``servers / SERVERS_PER_WRITE_SECOND`` past
    that size: 4 s at 1,000 servers, 8 s at 2,000.
    """
    if last_write is None:
        return 0.0
    least = MEMBERSHIP_WRITE_SECONDS * max(1.0, servers / SERVERS_PER_WRITE_SECOND)
    return max(0.0, last_write + least - now)
