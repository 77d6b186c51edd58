"""Common Expression Language as Kubernetes runs it: compile, type-check, cost, evaluate.

Expressions are parsed with cel-python's grammar (``celpy.celparser``) and compiled here into
Python closures, because kube-apiserver's rules need three things cel-python's interpreter does
not give: a static check against the schema (``undefined field 'x'``, ``undeclared reference``,
a result that must be a bool), a static cost estimate, and a runtime cost meter that stops an
expression when it has spent its budget (``operation cancelled: actual cost limit exceeded``).
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

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn

from celpy.celparser import CELParseError, CELParser
from celpy.evaluation import celbytes, celstr
from lark import Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedToken

from arges.apiserver.celmacros import compile_has, compile_macro
from arges.apiserver.celtypes import (
    BOOL,
    DOUBLE,
    DYN,
    INT,
    NULL,
    TYPE,
    UINT,
    UNBOUNDED,
    Type,
    arith_type,
    common_type,
    comparable,
    compare_cost,
    cost_sum,
    list_type,
    map_type,
    orderable,
    string_type,
    unescape,
)
from arges.apiserver.celvalues import (
    COERCED,
    INT64_MAX,
    INT64_MIN,
    CelType,
    CostLimitExceeded,
    EvalError,
    Meter,
    UInt,
    add,
    coerce,
    compare,
    div,
    equal,
    mod,
    mul,
    neg,
    sub,
    truth,
)
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
        raise CompileError(_issue(source, line, column, "Syntax error: " + _syntax(exc))) from exc
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


def _issue(source: str, line: int, column: int, message: str) -> str:
    lines = source.splitlines() or [""]
    text = lines[min(line, len(lines)) - 1]
    caret = "".join("\t" if c == "\t" else "." for c in text[: max(column - 1, 0)])
    return f"ERROR: <input>:{line}:{column}: {message}\n | {text}\n | {caret}^"


# The compiler.


class Compiler:
    """Turns a parse tree into a closure, its static type and its estimated cost."""

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
        return CompileError(_issue(self.source, line, column, message))

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

    # Pass-through levels of the grammar.

    def _rule_member(self, tree: Any, env: dict[str, Type]) -> tuple[Fn, Type, int]:
        return self.node(tree.children[0], env)

    def _rule_primary(self, tree: Any, env: dict[str, Type]) -> tuple[Fn, Type, int]:
        return self.node(tree.children[0], env)

    def _rule_paren_expr(self, tree: Any, env: dict[str, Type]) -> tuple[Fn, Type, int]:
        return self.node(tree.children[0], env)

    def _rule_expr(self, tree: Any, env: dict[str, Type]) -> tuple[Fn, Type, int]:
        kids = [c for c in tree.children if c is not None]
        if len(kids) == 1:
            return self.node(kids[0], env)
        cond, c_type, c_cost = self.node(kids[0], env)
        yes, y_type, y_cost = self.node(kids[1], env)
        no, n_type, n_cost = self.node(kids[2], env)
        if c_type.kind not in ("bool", "dyn"):
            self.no_overload(tree, "_?_:_", [c_type, y_type, n_type])

        def ternary(v: dict[str, Any], m: Meter) -> Any:
            return yes(v, m) if truth(cond(v, m)) else no(v, m)

        typ = y_type if y_type == n_type else DYN
        return ternary, typ, cost_sum(c_cost, max(y_cost, n_cost))

    def _logic(self, tree: Any, env: dict[str, Type], is_and: bool) -> tuple[Fn, Type, int]:
        kids = [c for c in tree.children if c is not None]
        if len(kids) == 1:
            return self.node(kids[0], env)
        left, l_type, l_cost = self.node(kids[0], env)
        right, r_type, r_cost = self.node(kids[1], env)
        op = "_&&_" if is_and else "_||_"
        for t in (l_type, r_type):
            if t.kind not in ("bool", "dyn"):
                self.error(
                    tree,
                    f"found no matching overload for '{op}' applied to "
                    f"'({l_type.name()}, {r_type.name()})'",
                    self.op_column(kids[0], "&&" if is_and else "||"),
                )
        # A decisive operand wins over an error on the other side (cel-go's commutative
        # logic), so errors are held until both sides are known.
        decisive = not is_and

        def logic(v: dict[str, Any], m: Meter) -> Any:
            err: EvalError | None = None
            try:
                a = left(v, m)
                if a is decisive:
                    return decisive
                if not isinstance(a, bool):
                    raise EvalError("no such overload")
            except CostLimitExceeded:
                raise
            except EvalError as exc:
                err = exc
            b = right(v, m)
            if b is decisive:
                return decisive
            if not isinstance(b, bool):
                raise EvalError("no such overload")
            if err is not None:
                raise err
            return not decisive

        return logic, BOOL, cost_sum(l_cost, r_cost, 1)

    def _rule_conditionalor(self, tree: Any, env: dict[str, Type]) -> tuple[Fn, Type, int]:
        return self._logic(tree, env, is_and=False)

    def _rule_conditionaland(self, tree: Any, env: dict[str, Type]) -> tuple[Fn, Type, int]:
        return self._logic(tree, env, is_and=True)

    def _rule_relation(self, tree: Any, env: dict[str, Type]) -> tuple[Fn, Type, int]:
        kids = [c for c in tree.children if c is not None]
        if len(kids) == 1:
            return self.node(kids[0], env)
        op_tree, right_tree = kids
        op = str(op_tree.data)[len("relation_") :]
        left_tree = op_tree.children[0]
        left, l_type, l_cost = self.node(left_tree, env)
        right, r_type, r_cost = self.node(right_tree, env)
        symbol = {"lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "==", "ne": "!=", "in": "in"}[
            op
        ]
        column = self.op_column(left_tree, symbol)
        cost = cost_sum(l_cost, r_cost, 1)
        if op == "in":
            if r_type.kind not in ("list", "map", "dyn"):
                self.no_overload(tree, "@in", [l_type, r_type], column)
            size = r_type.max_size if r_type.kind in ("list", "map") else UNBOUNDED

            def contains(v: dict[str, Any], m: Meter) -> Any:
                item, container = left(v, m), right(v, m)
                if isinstance(container, list):
                    m.charge(len(container))
                    return any(equal(item, x) for x in container)
                if isinstance(container, dict):
                    return any(equal(item, k) for k in container)
                raise EvalError("no such overload")

            return contains, BOOL, cost_sum(cost, size)
        if op in ("eq", "ne"):
            if not comparable(l_type, r_type):
                self.no_overload(tree, f"_{symbol}_", [l_type, r_type], column)
            negate = op == "ne"
            size_cost = compare_cost(l_type, r_type)

            def eq(v: dict[str, Any], m: Meter) -> Any:
                a, b = left(v, m), right(v, m)
                if isinstance(a, str | list | dict | bytes):
                    m.charge(math.ceil(len(a) * 0.1))
                return equal(a, b) != negate

            return eq, BOOL, cost_sum(cost, size_cost)
        if not orderable(l_type, r_type):
            self.no_overload(tree, f"_{symbol}_", [l_type, r_type], column)
        test: Callable[[int], bool] = {
            "lt": lambda c: c < 0,
            "le": lambda c: c <= 0,
            "gt": lambda c: c > 0,
            "ge": lambda c: c >= 0,
        }[op]

        def order(v: dict[str, Any], m: Meter) -> Any:
            return test(compare(left(v, m), right(v, m)))

        return order, BOOL, cost_sum(cost, compare_cost(l_type, r_type))

    def no_overload(
        self, tree: Any, op: str, types: list[Type], column: int | None = None
    ) -> NoReturn:
        """Raise cel-go's ``found no matching overload`` for ``op`` over ``types``."""
        names = ", ".join(t.name() for t in types)
        raise self.issue(
            tree, f"found no matching overload for '{op}' applied to '({names})'", column
        )

    def _arith(self, tree: Any, env: dict[str, Type], prefix: str) -> tuple[Fn, Type, int]:
        kids = [c for c in tree.children if c is not None]
        if len(kids) == 1:
            return self.node(kids[0], env)
        op_tree, right_tree = kids
        op = str(op_tree.data)[len(prefix) + 1 :]
        left_tree = op_tree.children[0]
        left, l_type, l_cost = self.node(left_tree, env)
        right, r_type, r_cost = self.node(right_tree, env)
        symbol = {"add": "+", "sub": "-", "mul": "*", "div": "/", "mod": "%"}[op]
        typ = arith_type(op, l_type, r_type)
        if typ is None:
            column = self.op_column(left_tree, symbol)
            self.no_overload(tree, f"_{symbol}_", [l_type, r_type], column)
            typ = DYN
        cost = cost_sum(l_cost, r_cost, 1)
        if op == "add":
            if typ.kind in ("string", "list", "bytes"):
                cost = cost_sum(cost, math.ceil((l_type.max_size + r_type.max_size) * 0.1))

            def plus(v: dict[str, Any], m: Meter) -> Any:
                return add(left(v, m), right(v, m), m)

            return plus, typ, cost
        impl = {"sub": sub, "mul": mul, "div": div, "mod": mod}[op]

        def arith(v: dict[str, Any], m: Meter) -> Any:
            return impl(left(v, m), right(v, m))

        return arith, typ, cost

    def _rule_addition(self, tree: Any, env: dict[str, Type]) -> tuple[Fn, Type, int]:
        return self._arith(tree, env, "addition")

    def _rule_multiplication(self, tree: Any, env: dict[str, Type]) -> tuple[Fn, Type, int]:
        return self._arith(tree, env, "multiplication")

    def _rule_unary(self, tree: Any, env: dict[str, Type]) -> tuple[Fn, Type, int]:
        kids = [c for c in tree.children if c is not None]
        if len(kids) == 1:
            return self.node(kids[0], env)
        op, operand_tree = kids
        operand, typ, cost = self.node(operand_tree, env)
        if op.data == "unary_not":
            if typ.kind not in ("bool", "dyn"):
                self.no_overload(tree, "!_", [typ])

            def negate(v: dict[str, Any], m: Meter) -> Any:
                return not truth(operand(v, m))

            return negate, BOOL, cost + 1
        if typ.kind not in ("int", "double", "duration", "dyn"):
            self.no_overload(tree, "-_", [typ])

        def minus(v: dict[str, Any], m: Meter) -> Any:
            return neg(operand(v, m))

        return minus, typ, cost + 1

    # Members.

    def _rule_member_dot(self, tree: Any, env: dict[str, Type]) -> tuple[Fn, Type, int]:
        target_tree, name_token = tree.children
        target, t_type, cost = self.node(target_tree, env)
        f_type, key = self.field(name_token, t_type)
        kind = f_type.kind

        def select(v: dict[str, Any], m: Meter) -> Any:
            obj = target(v, m)
            m.charge(1)
            if isinstance(obj, dict):
                if key not in obj:
                    raise EvalError(f"no such key: {key}")
                value = obj[key]
                return coerce(kind, value) if kind in COERCED else value
            selector = getattr(obj, "cel_field", None)
            if selector is not None:
                return selector(key)
            raise EvalError("no such overload")

        return select, f_type, cost + 1

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

    def _rule_member_index(self, tree: Any, env: dict[str, Type]) -> tuple[Fn, Type, int]:
        target, t_type, t_cost = self.node(tree.children[0], env)
        index, i_type, i_cost = self.node(tree.children[1], env)
        if t_type.kind == "list":
            if i_type.kind not in ("int", "uint", "dyn"):
                self.no_overload(tree, "_[_]", [t_type, i_type])
            typ = t_type.elem or DYN
        elif t_type.kind == "map":
            typ = t_type.elem or DYN
        elif t_type.kind == "object" or t_type.kind == "dyn":
            typ = DYN
        else:
            self.no_overload(tree, "_[_]", [t_type, i_type])
            typ = DYN
        kind = typ.kind

        def item(v: dict[str, Any], m: Meter) -> Any:
            container, key = target(v, m), index(v, m)
            m.charge(1)
            if isinstance(container, list):
                if isinstance(key, float) and key.is_integer():
                    key = int(key)
                if not isinstance(key, int) or isinstance(key, bool):
                    raise EvalError("no such overload")
                if key < 0 or key >= len(container):
                    raise EvalError(f"index out of bounds: {key}")
                value = container[key]
            elif isinstance(container, dict):
                found = next((k for k in container if equal(k, key)), _MISSING)
                if found is _MISSING:
                    raise EvalError(f"no such key: {key}")
                value = container[found]
            else:
                raise EvalError("no such overload")
            return coerce(kind, value) if kind in COERCED else value

        return item, typ, cost_sum(t_cost, i_cost, 1)

    def _rule_member_object(self, tree: Any, env: dict[str, Type]) -> tuple[Fn, Type, int]:
        self.error(tree, "message construction is not supported")
        raise AssertionError("unreachable")

    def _rule_member_dot_arg(self, tree: Any, env: dict[str, Type]) -> tuple[Fn, Type, int]:
        target_tree, name_token = tree.children[0], tree.children[1]
        args = (
            list(tree.children[2].children)
            if len(tree.children) > 2 and tree.children[2] is not None
            else []
        )
        name = str(name_token)
        qualified = self.qualified(target_tree)
        if qualified is not None and qualified not in env:
            full = f"{qualified}.{name}"
            if full in self.functions:
                return self._call(name_token, full, None, args, env)
        if name in MACROS:
            return compile_macro(self, tree, name_token, target_tree, args, env)
        return self._call(name_token, name, target_tree, args, env)

    def _call(
        self,
        name_token: Any,
        name: str,
        target_tree: Any | None,
        args: list[Any],
        env: dict[str, Type],
    ) -> tuple[Fn, Type, int]:
        # Operands first, so an unknown variable is named before an unknown function.
        operands = ([target_tree] if target_tree is not None else []) + args
        compiled = [self.node(a, env) for a in operands]
        func = self.functions.get(name)
        if (
            func is None
            or (target_tree is not None and not func.member)
            or (target_tree is None and not func.glob)
        ):
            self.error(name_token, f"undeclared reference to '{name}' (in container '')")
        assert func is not None
        types = [c[1] for c in compiled]
        result = func.result(types)
        if result is None:
            names = ", ".join(t.name() for t in types)
            if target_tree is not None:
                shown = f"{types[0].name()}.({', '.join(t.name() for t in types[1:])})"
                self.error(
                    name_token, f"found no matching overload for '{name}' applied to '{shown}'"
                )
            self.error(
                name_token, f"found no matching overload for '{name}' applied to '({names})'"
            )
        assert result is not None
        fns = [c[0] for c in compiled]
        impl = func.impl
        cost = cost_sum(*(c[2] for c in compiled), func.cost(types))
        kind = result.kind

        def call(v: dict[str, Any], m: Meter) -> Any:
            values = [f(v, m) for f in fns]
            m.charge(1)
            try:
                out = impl(m, values)
            except EvalError:
                raise
            except (TypeError, AttributeError, KeyError):
                raise EvalError("no such overload") from None
            except (ValueError, OverflowError, ArithmeticError) as exc:
                raise EvalError(str(exc) or "invalid argument") from None
            return coerce(kind, out) if kind == "double" else out

        return call, result, cost

    # Primaries.

    def _rule_ident(self, tree: Any, env: dict[str, Type]) -> tuple[Fn, Type, int]:
        token = tree.children[0]
        name = str(token)
        if name in env:
            self.references.add(name)
            typ = env[name]
            kind = typ.kind

            def ident(v: dict[str, Any], m: Meter) -> Any:
                m.charge(1)
                value = v[name]
                return coerce(kind, value) if kind in COERCED else value

            return ident, typ, 1
        if name in _TYPE_NAMES:
            value = CelType(_TYPE_NAMES[name])
            return (lambda v, m: value), TYPE, 0
        self.error(token, f"undeclared reference to '{name}' (in container '')")
        raise AssertionError("unreachable")

    def _rule_dot_ident(self, tree: Any, env: dict[str, Type]) -> tuple[Fn, Type, int]:
        return self._rule_ident(tree, env)

    def _rule_ident_arg(self, tree: Any, env: dict[str, Type]) -> tuple[Fn, Type, int]:
        token = tree.children[0]
        args = (
            list(tree.children[1].children)
            if len(tree.children) > 1 and tree.children[1] is not None
            else []
        )
        name = str(token)
        if name == "has":
            return compile_has(self, token, args, env)
        if name == "dyn" and len(args) == 1:
            fn, _typ, cost = self.node(args[0], env)
            return fn, DYN, cost
        return self._call(token, name, None, args, env)

    def _rule_dot_ident_arg(self, tree: Any, env: dict[str, Type]) -> tuple[Fn, Type, int]:
        return self._rule_ident_arg(tree, env)

    def _rule_literal(self, tree: Any, env: dict[str, Type]) -> tuple[Fn, Type, int]:
        token = tree.children[0]
        text = str(token)
        kind = token.type
        value: Any
        if kind == "INT_LIT":
            value = int(text, 16) if "x" in text.lower() else int(text)
            if value < INT64_MIN or value > INT64_MAX:
                self.error(token, "invalid int literal")
            typ = INT
        elif kind == "UINT_LIT":
            body = text[:-1]
            value = UInt(int(body, 16) if "x" in body.lower() else int(body))
            typ = UINT
        elif kind == "FLOAT_LIT":
            value = float(text)
            typ = DOUBLE
        elif kind in ("STRING_LIT", "MLSTRING_LIT"):
            value = str(celstr(token))
            typ = string_type(len(value))
        elif kind == "BYTES_LIT":
            value = bytes(celbytes(token))
            typ = Type("bytes", max_size=len(value))
        elif kind == "BOOL_LIT":
            value = text == "true"
            typ = BOOL
        else:
            value = None
            typ = NULL
        return (lambda v, m: value), typ, 0

    def _rule_list_lit(self, tree: Any, env: dict[str, Type]) -> tuple[Fn, Type, int]:
        exprs = (
            list(tree.children[0].children)
            if tree.children and tree.children[0] is not None
            else []
        )
        compiled = [self.node(e, env) for e in exprs]
        fns = [c[0] for c in compiled]
        elem = common_type([c[1] for c in compiled])

        def make(v: dict[str, Any], m: Meter) -> Any:
            m.charge(1)
            return [f(v, m) for f in fns]

        return make, list_type(elem, len(fns)), cost_sum(*(c[2] for c in compiled), 1)

    def _rule_map_lit(self, tree: Any, env: dict[str, Type]) -> tuple[Fn, Type, int]:
        exprs = (
            list(tree.children[0].children)
            if tree.children and tree.children[0] is not None
            else []
        )
        compiled = [self.node(e, env) for e in exprs]
        pairs = [(compiled[i][0], compiled[i + 1][0]) for i in range(0, len(compiled), 2)]
        elem = common_type([compiled[i + 1][1] for i in range(0, len(compiled), 2)])

        def make(v: dict[str, Any], m: Meter) -> Any:
            m.charge(1)
            out: dict[Any, Any] = {}
            for kf, vf in pairs:
                key = kf(v, m)
                if not isinstance(key, str | int | bool) or key is None:
                    raise EvalError("unsupported key type")
                if key in out:
                    raise EvalError(f"Failed with repeated key: {key}")
                out[key] = vf(v, m)
            return out

        return make, map_type(elem, len(pairs)), cost_sum(*(c[2] for c in compiled), 1)


_MISSING = object()
MACROS = frozenset({"all", "exists", "exists_one", "map", "filter"})
_TYPE_NAMES = {
    "int": "int",
    "uint": "uint",
    "double": "double",
    "bool": "bool",
    "string": "string",
    "bytes": "bytes",
    "list": "list",
    "map": "map",
    "null_type": "null_type",
    "type": "type",
}
