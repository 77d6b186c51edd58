"""CEL's operators, compiled: the conditional, ``&&`` and ``||``, relations, arithmetic,
negation.

Semantics are cel-go's: ``&&`` and ``||`` are commutative over errors (``false && error`` is
false), ``in`` walks a list or a map's keys, comparisons and arithmetic follow
:mod:`~arges.apiserver.celvalues` (overflow is an error), and each operator checks its operand
types statically (``found no matching overload``) and adds its cost.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from arges.apiserver.celnodes import Fn, NodeCompiler
from arges.apiserver.celtypes import (
    BOOL,
    DYN,
    UNBOUNDED,
    Type,
    arith_type,
    comparable,
    compare_cost,
    cost_sum,
    orderable,
)
from arges.apiserver.celvalues import (
    CostLimitExceeded,
    EvalError,
    Meter,
    add,
    compare,
    div,
    equal,
    mod,
    mul,
    neg,
    sub,
    truth,
)


class OperatorRules(NodeCompiler):
    """The grammar rules of operators (see the module docstring)."""

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
