"""Common Expression Language as Kubernetes runs it: compile, type-check, cost, evaluate.

Expressions are parsed with cel-python's grammar (``celpy.celparser``) and compiled
(:class:`Compiler`) into Python closures, because kube-apiserver's rules need three things
cel-python's interpreter does not give: a static check against the schema (``undefined field
'x'``, ``undeclared reference``, a result that must be a bool), a static cost estimate, and a
runtime cost meter that stops an expression when it has spent its budget (``operation
cancelled: actual cost limit exceeded``).
Evaluating closures is also some hundred times faster than celpy's tree interpreter, which
matters when a rule runs for every element of a list.

Semantics follow cel-go (github.com/google/cel-go) as configured by kube-apiserver: values
and operators are those of :mod:`arges.apiserver.celvalues`; ``&&`` and ``||`` are
commutative over errors (``false && error`` is false); the macros are ``has``, ``all``,
``exists``, ``exists_one``, ``map`` (two and three arguments) and ``filter``; functions come
from :mod:`arges.apiserver.celext`; static types from :mod:`arges.apiserver.celtypes`.

Costs are counted as cel-go counts them to the first order: one unit per evaluated node, and
string and list functions in proportion to the sizes they walk (the library says how much).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from celpy.celparser import CELParseError, CELParser
from lark.exceptions import UnexpectedCharacters, UnexpectedToken

from arges.apiserver.celnodes import CompileError, Fn, Function, issue_text
from arges.apiserver.celoperators import OperatorRules
from arges.apiserver.celterms import TermRules
from arges.apiserver.celtypes import Type
from arges.apiserver.celvalues import Meter


@dataclass
class Program:
    """A compiled expression: evaluate it with the variables it was declared with."""

    source: str
    fn: Fn
    result: Type
    max_cost: int
    references: frozenset[str] = field(default_factory=frozenset)

    def evaluate(self, variables: dict[str, Any], meter: Meter) -> Any:
        """The expression's value.

        Raises:
            EvalError: a runtime error, or :class:`CostLimitExceeded`.
        """
        return self.fn(variables, meter)


_PARSER: CELParser | None = None


def _parser() -> CELParser:
    global _PARSER
    if _PARSER is None:
        _PARSER = CELParser()
    return _PARSER


def compile_expr(
    source: str, declarations: Mapping[str, Type], functions: Mapping[str, Function]
) -> Program:
    """Parse and check ``source`` against the declared variables and library functions.

    Raises:
        CompileError: with cel-go's ``ERROR: <input>:line:col: ...`` text.
    """
    try:
        tree = _parser().parse(source)
    except CELParseError as exc:
        line, column = getattr(exc, "line", 1) or 1, getattr(exc, "column", 1) or 1
        raise CompileError(
            issue_text(source, line, column, "Syntax error: " + _syntax(exc))
        ) from exc
    compiler = Compiler(source, functions)
    fn, typ, cost = compiler.node(tree, dict(declarations))
    return Program(source, fn, typ, cost, frozenset(compiler.references))


def identifiers(source: str) -> frozenset[str]:
    """The variables ``source`` names (not fields or functions); empty when it does not parse."""
    try:
        tree = _parser().parse(source)
    except CELParseError:
        return frozenset()
    return frozenset(
        str(sub.children[0]) for sub in tree.iter_subtrees() if sub.data == "ident" and sub.children
    )


def _syntax(exc: CELParseError) -> str:
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, UnexpectedCharacters):
        return f"token recognition error at: '{cause.char}'"
    if isinstance(cause, UnexpectedToken):
        token = "<EOF>" if cause.token.type == "$END" else str(cause.token)
        return f"mismatched input '{token}'"
    return "mismatched input '<EOF>'"


class Compiler(OperatorRules, TermRules):
    """Turns a parse tree into a closure, its static type and its estimated cost: the rules
    of operators (:mod:`~arges.apiserver.celoperators`) and terms
    (:mod:`~arges.apiserver.celterms`) on :class:`~arges.apiserver.celnodes.NodeCompiler`."""
