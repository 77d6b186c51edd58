"""The frame of the CEL compiler: errors, the library's function type, rule dispatch.

:class:`NodeCompiler` compiles a parse-tree node by its grammar rule (each rule is a
``_rule_<name>`` method of the rule classes, :mod:`~arges.apiserver.celoperators` and
:mod:`~arges.apiserver.celterms`) into a closure, its static type and its estimated cost, and
words compile errors as cel-go does (``ERROR: <input>:line:col: ...`` with a caret line).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

from lark import Token, Tree

from arges.apiserver.celtypes import DYN, Type, unescape
from arges.apiserver.celvalues import Meter
from arges.errors import ArgesError


class CompileError(ArgesError):
    """An expression that does not parse or type-check; ``str()`` is cel-go's issue text."""


Fn = Callable[[dict[str, Any], Meter], Any]


@dataclass(frozen=True)
class Function:
    """A library function: ``impl(meter, args)`` (the receiver first for member calls).

    ``result`` gives the static result type from the argument types, or None when the
    arguments match no overload; ``cost`` estimates the function's own cost from them.
    ``member``/``glob`` say whether ``x.f()`` and ``f(x)`` are allowed.
    """

    impl: Callable[[Meter, list[Any]], Any]
    result: Callable[[list[Type]], Type | None]
    cost: Callable[[list[Type]], int] = lambda _args: 1
    member: bool = True
    glob: bool = False


def issue_text(source: str, line: int, column: int, message: str) -> str:
    """cel-go's text of a compile error at ``line``, ``column`` (1-based) of ``source``."""
    lines = source.splitlines() or [""]
    text = lines[min(line, len(lines)) - 1]
    caret = "".join("\t" if c == "\t" else "." for c in text[: max(column - 1, 0)])
    return f"ERROR: <input>:{line}:{column}: {message}\n | {text}\n | {caret}^"


class NodeCompiler:
    """Compiles parse-tree nodes by rule (see the module docstring), with what the rules and
    the macros share: errors at a node, field types, dotted names."""

    def __init__(self, source: str, functions: Mapping[str, Function]) -> None:
        self.source = source
        self.functions = functions
        self.references: set[str] = set()

    def error(self, tree: Any, message: str, column: int | None = None) -> NoReturn:
        """Raise a compile error at ``tree`` (or ``column``)."""
        raise self.issue(tree, message, column)

    def issue(self, tree: Any, message: str, column: int | None = None) -> CompileError:
        """A compile error located at ``tree`` (a token or subtree), or at ``column``."""
        line = 1
        if column is None:
            if isinstance(tree, Token):
                line, column = tree.line or 1, tree.column or 1
            elif tree is not None and not tree.meta.empty:
                line, column = tree.meta.line, tree.meta.column
            else:
                column = 1
        return CompileError(issue_text(self.source, line, column, message))

    def op_column(self, left: Any, op: str) -> int | None:
        """The 1-based column of operator ``op`` after the subtree ``left``, for messages."""
        if left.meta.empty:
            return None
        at = self.source.find(op, left.meta.end_pos)
        return at + 1 if at >= 0 else None

    def node(self, tree: Any, env: dict[str, Type]) -> tuple[Fn, Type, int]:
        """Compile one parse-tree node: (closure, static type, estimated cost)."""
        handler = getattr(self, "_rule_" + str(tree.data), None)
        if handler is None:
            raise self.issue(tree, f"unsupported syntax: {tree.data}")
        result: tuple[Fn, Type, int] = handler(tree, env)
        return result

    def no_overload(
        self, tree: Any, op: str, types: list[Type], column: int | None = None
    ) -> NoReturn:
        """Raise cel-go's ``found no matching overload`` for ``op`` over ``types``."""
        names = ", ".join(t.name() for t in types)
        raise self.issue(
            tree, f"found no matching overload for '{op}' applied to '({names})'", column
        )

    def field(self, name_token: Any, t_type: Type) -> tuple[Type, str]:
        """The type of field ``name_token`` of ``t_type`` and the property it names."""
        name = str(name_token)
        column = (name_token.column or 2) - 1
        if t_type.kind == "object":
            fields = t_type.fields or {}
            if name in fields:
                return fields[name], unescape(name)
            self.error(None, f"undefined field '{name}'", column)
        if t_type.kind == "map":
            return t_type.elem or DYN, name
        if t_type.kind == "dyn":
            return DYN, name
        self.error(None, f"type '{t_type.name()}' does not support field selection", column)
        return DYN, name

    def qualified(self, tree: Any) -> str | None:
        """``a.b`` when the tree is a plain dotted name (for namespaced functions)."""
        while isinstance(tree, Tree) and tree.data != "ident" and len(tree.children) == 1:
            tree = tree.children[0]
        if isinstance(tree, Tree) and tree.data == "ident":
            return str(tree.children[0])
        return None
