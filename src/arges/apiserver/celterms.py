"""CEL's terms, compiled: identifiers, field selection, indexing, calls, literals.

Field selection and ``has()`` are checked against the declared types (``undefined field``),
identifiers against the declarations (``undeclared reference``), calls against the function
library's overloads (:class:`~arges.apiserver.celnodes.Function`) and the macros
(:mod:`~arges.apiserver.celmacros`); literals are parsed as cel-go parses them.
"""

from __future__ import annotations

from typing import Any

from celpy.evaluation import celbytes, celstr

from arges.apiserver.celmacros import compile_has, compile_macro
from arges.apiserver.celnodes import Fn, NodeCompiler
from arges.apiserver.celtypes import (
    BOOL,
    DOUBLE,
    DYN,
    INT,
    NULL,
    TYPE,
    UINT,
    Type,
    common_type,
    cost_sum,
    list_type,
    map_type,
    string_type,
)
from arges.apiserver.celvalues import (
    COERCED,
    INT64_MAX,
    INT64_MIN,
    CelType,
    EvalError,
    Meter,
    UInt,
    coerce,
    equal,
)


class TermRules(NodeCompiler):
    """The grammar rules of terms (see the module docstring)."""

    # Pass-through levels of the grammar.

    def _rule_member(self, tree: Any, env: dict[str, Type]) -> tuple[Fn, Type, int]:
        return self.node(tree.children[0], env)

    def _rule_primary(self, tree: Any, env: dict[str, Type]) -> tuple[Fn, Type, int]:
        return self.node(tree.children[0], env)

    def _rule_paren_expr(self, tree: Any, env: dict[str, Type]) -> tuple[Fn, Type, int]:
        return self.node(tree.children[0], env)

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
