"""CEL's macros: ``has()``, and ``all``, ``exists``, ``exists_one``, ``map``, ``filter``.

Macros are not functions: their arguments are expressions evaluated per element with the
iteration variable bound (cel-go's comprehensions), and ``has(e.f)`` tests presence instead of
reading. ``all`` and ``exists`` are commutative over errors as ``&&`` and ``||`` are: a false
(true) element decides ``all`` (``exists``) even when another element's predicate errs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lark import Tree

from arges.apiserver.celtypes import (
    BOOL,
    DYN,
    UNBOUNDED,
    Type,
    cost_sum,
    list_type,
    string_type,
)
from arges.apiserver.celvalues import COERCED, CostLimitExceeded, EvalError, Meter, coerce, truth

if TYPE_CHECKING:
    from arges.apiserver.celnodes import Fn, NodeCompiler


def compile_macro(
    c: NodeCompiler,
    tree: Any,
    name_token: Any,
    target_tree: Any,
    args: list[Any],
    env: dict[str, Type],
) -> tuple[Fn, Type, int]:
    """``target.all(x, p)`` and the other comprehensions, over a list's items or a map's keys."""
    name = str(name_token)
    arity = (2, 3) if name == "map" else (2,)
    if len(args) not in arity:
        c.error(name_token, f"undeclared reference to '{name}' (in container '')")
    var = c.qualified(args[0])
    if var is None:
        c.error(args[0], "argument is not an identifier")
    assert var is not None
    target, t_type, t_cost = c.node(target_tree, env)
    if t_type.kind == "list":
        elem = t_type.elem or DYN
    elif t_type.kind == "map":
        elem = string_type()
    elif t_type.kind == "dyn":
        elem = DYN
    else:
        c.error(
            name_token,
            f"found no matching overload for '{name}' applied to '({t_type.name()})'",
        )
        elem = DYN
    size = t_type.max_size if t_type.kind in ("list", "map") else UNBOUNDED
    inner = {**env, var: elem}
    bodies = [c.node(a, inner) for a in args[1:]]
    body_cost = sum(b[2] for b in bodies) + 1
    cost = cost_sum(t_cost, size * body_cost)

    def items(v: dict[str, Any], m: Meter) -> list[Any]:
        value = target(v, m)
        if isinstance(value, list):
            return value
        if isinstance(value, dict):
            return list(value)
        raise EvalError("no such overload")

    kind = elem.kind

    def bind(v: dict[str, Any], x: Any) -> dict[str, Any]:
        return {**v, var: coerce(kind, x) if kind in COERCED else x}

    if name in ("all", "exists"):
        pred = bodies[0][0]
        decisive = name == "exists"
        if bodies[0][1].kind not in ("bool", "dyn"):
            c.no_overload(tree, name, [t_type, bodies[0][1]])

        def quantifier(v: dict[str, Any], m: Meter) -> Any:
            err: EvalError | None = None
            for x in items(v, m):
                m.charge(1)
                try:
                    result = pred(bind(v, x), m)
                except CostLimitExceeded:
                    raise
                except EvalError as exc:
                    err = err or exc
                    continue
                if result is decisive:
                    return decisive
                if not isinstance(result, bool):
                    err = err or EvalError("no such overload")
            if err is not None:
                raise err
            return not decisive

        return quantifier, BOOL, cost
    if name == "exists_one":
        pred = bodies[0][0]

        def exists_one(v: dict[str, Any], m: Meter) -> Any:
            count = 0
            for x in items(v, m):
                m.charge(1)
                if truth(pred(bind(v, x), m)):
                    count += 1
            return count == 1

        return exists_one, BOOL, cost
    if name == "filter":
        pred = bodies[0][0]

        def filtered(v: dict[str, Any], m: Meter) -> Any:
            out = []
            for x in items(v, m):
                m.charge(1)
                if truth(pred(bind(v, x), m)):
                    out.append(x)
            return out

        return filtered, list_type(elem, size), cost
    # map(x, f) and map(x, p, f)
    fn = bodies[-1][0]
    pred_fn = bodies[0][0] if len(bodies) == 2 else None

    def mapped(v: dict[str, Any], m: Meter) -> Any:
        out = []
        for x in items(v, m):
            m.charge(1)
            scope = bind(v, x)
            if pred_fn is None or truth(pred_fn(scope, m)):
                out.append(fn(scope, m))
        return out

    return mapped, list_type(bodies[-1][1], size), cost


def compile_has(
    c: NodeCompiler, token: Any, args: list[Any], env: dict[str, Type]
) -> tuple[Fn, Type, int]:
    """``has(e.f)``: whether ``e`` (a map or an object) holds the key ``f``."""
    inner = args[0] if len(args) == 1 else None
    while isinstance(inner, Tree) and len(inner.children) == 1 and inner.data != "member_dot":
        inner = inner.children[0]
    if not isinstance(inner, Tree) or inner.data != "member_dot":
        c.error(token, "invalid argument to has() macro")
    assert isinstance(inner, Tree)
    target_tree, name_token = inner.children
    target, t_type, cost = c.node(target_tree, env)
    _f_type, key = c.field(name_token, t_type)

    def has(v: dict[str, Any], m: Meter) -> Any:
        obj = target(v, m)
        m.charge(1)
        if isinstance(obj, dict):
            return key in obj
        present = getattr(obj, "cel_has", None)
        if present is not None:
            return bool(present(key))
        raise EvalError("no such overload")

    return has, BOOL, cost + 1
