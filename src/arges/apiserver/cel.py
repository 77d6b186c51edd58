"""Common Expression Language as Kubernetes runs it: compile, type-check, cost, evaluate.

Expressions are parsed with cel-python's grammar (``celpy.celparser``) and compiled here into
Python closures, because kube-apiserver's rules need three things cel-python's interpreter does
not give: a static check against the schema (``undefined field 'x'``, ``undeclared reference``,
a result that must be a bool), a static cost estimate, and a runtime cost meter that stops an
expression when it has spent its budget (``operation cancelled: actual cost limit exceeded``).
Evaluating closures is also some hundred times faster than celpy's tree interpreter, which
matters when a rule runs for every element of a list.

Semantics follow cel-go (github.com/google/cel-go) as configured by kube-apiserver:

- values are JSON values (``None``, ``bool``, ``int``, ``float``, ``str``, ``list``, ``dict``)
  plus ``bytes``, :class:`datetime.datetime` (timestamps, UTC), :class:`datetime.timedelta`
  (durations), :class:`CelType` (type values), :class:`Optional` and the library types of
  :mod:`arges.apiserver.celext`;
- integers are 64-bit (``integer overflow`` beyond), division truncates towards zero;
- equality is heterogeneous (``1 == 1.0``; values of different types are unequal);
- ``&&`` and ``||`` are commutative over errors (``false && error`` is false);
- macros: ``has``, ``all``, ``exists``, ``exists_one``, ``map`` (two and three arguments),
  ``filter``; functions come from :mod:`arges.apiserver.celext`.

Costs are counted as cel-go counts them to the first order: one unit per evaluated node, and
string and list functions in proportion to the sizes they walk (the library says how much).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn

from celpy.celparser import CELParseError, CELParser
from celpy.evaluation import celbytes, celstr
from lark import Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedToken

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
UINT64_MAX = 2**64 - 1
MAX_REQUEST_BYTES = 3 * 1024 * 1024
"""kube-apiserver's request size limit: the size of anything a schema leaves unbounded."""
UNBOUNDED = MAX_REQUEST_BYTES


class EvalError(Exception):
    """A runtime error, worded as cel-go words it (``no such key: foo``)."""


class CostLimitExceeded(EvalError):
    """The expression spent its cost budget."""

    def __init__(self) -> None:
        super().__init__("operation cancelled: actual cost limit exceeded")


class CompileError(Exception):
    """An expression that does not parse or type-check; ``str()`` is cel-go's issue text."""


class Meter:
    """Counts the cost of one evaluation and stops it at ``limit``."""

    __slots__ = ("limit", "used")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def charge(self, units: int) -> None:
        """Add ``units``; raises :class:`CostLimitExceeded` past the limit."""
        self.used += units
        if self.used > self.limit:
            raise CostLimitExceeded()


@dataclass(frozen=True)
class Type:
    """A static CEL type, with the largest size the schema allows (for cost estimates).

    ``kind`` is one of dyn, null, bool, int, uint, double, string, bytes, list, map, object,
    timestamp, duration, type, optional, or a library kind (quantity, url). ``elem`` is a list's
    element, a map's value or an optional's content; ``fields`` an object's properties.
    """

    kind: str
    elem: Type | None = None
    fields: Mapping[str, Type] | None = None
    max_size: int = 0

    def name(self) -> str:
        """cel-go's spelling of the type in messages (``list(string)``)."""
        if self.kind == "list":
            return f"list({self.elem.name() if self.elem else 'dyn'})"
        if self.kind == "map":
            return f"map(string, {self.elem.name() if self.elem else 'dyn'})"
        if self.kind == "optional":
            return f"optional_type({self.elem.name() if self.elem else 'dyn'})"
        if self.kind == "object":
            return "object"
        return {
            "timestamp": "google.protobuf.Timestamp",
            "duration": "google.protobuf.Duration",
        }.get(self.kind, self.kind)


_WELL_KNOWN = {"timestamp": "google.protobuf.Timestamp", "duration": "google.protobuf.Duration"}
DYN = Type("dyn")
BOOL = Type("bool")
INT = Type("int")
UINT = Type("uint")
DOUBLE = Type("double")
NULL = Type("null")
TIMESTAMP = Type("timestamp")
DURATION = Type("duration")
TYPE = Type("type")


def string_type(max_size: int = UNBOUNDED) -> Type:
    """A string type at most ``max_size`` characters long."""
    return Type("string", max_size=max_size)


STRING = string_type()


def list_type(elem: Type, max_size: int = UNBOUNDED) -> Type:
    """A list type of ``elem`` with at most ``max_size`` items."""
    return Type("list", elem, max_size=max_size)


def map_type(value: Type, max_size: int = UNBOUNDED) -> Type:
    """A map type from strings to ``value``."""
    return Type("map", value, max_size=max_size)


@dataclass(frozen=True)
class CelType:
    """A type as a runtime value (``type(x) == string``)."""

    name: str

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class Optional:
    """cel-go's ``optional_type``: a value that may be absent."""

    value: Any = None
    present: bool = False


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
    compiler = _Compiler(source, functions)
    fn, typ, cost = compiler.node(tree, dict(declarations))
    return Program(source, fn, typ, cost, frozenset(compiler.references))


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


# Values.


def type_name(value: Any) -> str:
    """The CEL type name of a runtime value."""
    if value is None:
        return "null_type"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, UInt):
        return "uint"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "double"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bytes):
        return "bytes"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "map"
    if isinstance(value, dt.datetime):
        return "google.protobuf.Timestamp"
    if isinstance(value, dt.timedelta):
        return "google.protobuf.Duration"
    if isinstance(value, CelType):
        return "type"
    if isinstance(value, Optional):
        return "optional_type"
    return str(getattr(value, "cel_type", type(value).__name__))


class UInt(int):
    """An unsigned CEL integer (``1u``)."""


def check_int(value: int) -> int:
    """``value`` if it fits in int64, else the overflow error."""
    if value < INT64_MIN or value > INT64_MAX:
        raise EvalError("integer overflow")
    return value


def _is_num(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def equal(a: Any, b: Any) -> bool:
    """CEL equality: numbers compare across types, containers deeply, other types never."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if _is_num(a) and _is_num(b):
        return bool(a == b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(equal(v, b[k]) for k, v in a.items())
    if type(a) is not type(b) and not (isinstance(a, str) and isinstance(b, str)):
        return False
    return bool(a == b)


def compare(a: Any, b: Any) -> int:
    """-1, 0 or 1 for CEL's ordered types; ``no such overload`` otherwise."""
    ordered = (
        (_is_num(a) and _is_num(b))
        or (isinstance(a, bool) and isinstance(b, bool))
        or all(isinstance(x, str) for x in (a, b))
        or all(isinstance(x, bytes) for x in (a, b))
        or all(isinstance(x, dt.datetime) for x in (a, b))
        or all(isinstance(x, dt.timedelta) for x in (a, b))
    )
    if not ordered:
        custom = getattr(a, "cel_compare", None)
        if custom is not None and type(a) is type(b):
            return int(custom(b))
        raise EvalError("no such overload")
    return int((a > b) - (a < b))


def _add(a: Any, b: Any, meter: Meter) -> Any:
    if isinstance(a, bool) or isinstance(b, bool):
        raise EvalError("no such overload")
    if isinstance(a, UInt) and isinstance(b, UInt):
        if a + b > UINT64_MAX:
            raise EvalError("unsigned integer overflow")
        return UInt(a + b)
    if isinstance(a, int) and isinstance(b, int) and type(a) is type(b):
        return check_int(a + b)
    if isinstance(a, float) and isinstance(b, float):
        return a + b
    if isinstance(a, str) and isinstance(b, str):
        meter.charge(math.ceil((len(a) + len(b)) * 0.1))
        return a + b
    if isinstance(a, bytes) and isinstance(b, bytes):
        meter.charge(math.ceil((len(a) + len(b)) * 0.1))
        return a + b
    if isinstance(a, list) and isinstance(b, list):
        meter.charge(math.ceil((len(a) + len(b)) * 0.1))
        return a + b
    if isinstance(a, dt.datetime) and isinstance(b, dt.timedelta):
        return a + b
    if isinstance(a, dt.timedelta) and isinstance(b, dt.datetime | dt.timedelta):
        return b + a
    raise EvalError("no such overload")


def _sub(a: Any, b: Any) -> Any:
    if isinstance(a, bool) or isinstance(b, bool):
        raise EvalError("no such overload")
    if isinstance(a, UInt) and isinstance(b, UInt):
        if a < b:
            raise EvalError("unsigned integer overflow")
        return UInt(a - b)
    if isinstance(a, int) and isinstance(b, int) and type(a) is type(b):
        return check_int(a - b)
    if isinstance(a, float) and isinstance(b, float):
        return a - b
    if isinstance(a, dt.datetime) and isinstance(b, dt.datetime | dt.timedelta):
        return a - b
    if isinstance(a, dt.timedelta) and isinstance(b, dt.timedelta):
        return a - b
    raise EvalError("no such overload")


def _mul(a: Any, b: Any) -> Any:
    if isinstance(a, bool) or isinstance(b, bool) or type(a) is not type(b):
        raise EvalError("no such overload")
    if isinstance(a, UInt):
        if a * b > UINT64_MAX:
            raise EvalError("unsigned integer overflow")
        return UInt(a * b)
    if isinstance(a, int):
        return check_int(a * b)
    if isinstance(a, float):
        return a * b
    raise EvalError("no such overload")


def _div(a: Any, b: Any) -> Any:
    if isinstance(a, bool) or isinstance(b, bool) or type(a) is not type(b):
        raise EvalError("no such overload")
    if isinstance(a, float):
        if b == 0:
            return math.copysign(math.inf, a) if a else math.nan
        return a / b
    if isinstance(a, int):
        if b == 0:
            raise EvalError("division by zero")
        quotient = abs(a) // abs(b)
        quotient = quotient if (a < 0) == (b < 0) else -quotient
        return UInt(quotient) if isinstance(a, UInt) else check_int(quotient)
    raise EvalError("no such overload")


def _mod(a: Any, b: Any) -> Any:
    if isinstance(a, bool) or isinstance(b, bool) or type(a) is not type(b):
        raise EvalError("no such overload")
    if isinstance(a, int):
        if b == 0:
            raise EvalError("modulus by zero")
        rest = abs(a) % abs(b)
        rest = -rest if a < 0 else rest
        return UInt(rest) if isinstance(a, UInt) else rest
    raise EvalError("no such overload")


def _neg(a: Any) -> Any:
    if isinstance(a, bool | UInt):
        raise EvalError("no such overload")
    if isinstance(a, int):
        return check_int(-a)
    if isinstance(a, float | dt.timedelta):
        return -a
    raise EvalError("no such overload")


def _truth(value: Any) -> bool:
    if not isinstance(value, bool):
        raise EvalError("no such overload")
    return value


def parse_timestamp(text: str) -> dt.datetime:
    """An RFC 3339 timestamp as an aware UTC datetime.

    Raises:
        EvalError: when ``text`` is not one.
    """
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise EvalError(f'timestamp("{text}"): invalid timestamp') from None
    if value.tzinfo is None:
        raise EvalError(f'timestamp("{text}"): invalid timestamp')
    return value.astimezone(dt.UTC)


_DURATION_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def parse_duration(text: str) -> dt.timedelta:
    """A Go duration string (``1h30m``, ``-1.5s``, ``300ms``).

    Raises:
        EvalError: when ``text`` is not one.
    """
    rest = text
    sign = 1.0
    if rest[:1] in "+-" and rest:
        sign = -1.0 if rest[0] == "-" else 1.0
        rest = rest[1:]
    if rest == "0":
        return dt.timedelta(0)
    total = 0.0
    if not rest:
        raise EvalError(f"invalid duration: {text}")
    while rest:
        i = 0
        while i < len(rest) and (rest[i].isdigit() or rest[i] == "."):
            i += 1
        j = i
        while j < len(rest) and not (rest[j].isdigit() or rest[j] == "."):
            j += 1
        number, unit = rest[:i], rest[i:j]
        if not number or unit not in _DURATION_UNITS:
            raise EvalError(f"invalid duration: {text}")
        try:
            total += float(number) * _DURATION_UNITS[unit]
        except ValueError:
            raise EvalError(f"invalid duration: {text}") from None
        rest = rest[j:]
    return dt.timedelta(seconds=sign * total)


def coerce(kind: str, value: Any) -> Any:
    """A JSON value as the CEL value its schema type says (timestamps, durations, bytes)."""
    if kind == "timestamp" and isinstance(value, str):
        return parse_timestamp(value)
    if kind == "duration" and isinstance(value, str):
        return parse_duration(value)
    if kind == "double" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind == "bytes" and isinstance(value, str):
        try:
            return base64.b64decode(value)
        except (binascii.Error, ValueError):
            return value.encode()
    return value


_COERCED = frozenset({"timestamp", "duration", "double", "bytes"})

# Property names that are CEL keywords are reached escaped (``__in__``); so are names with
# characters CEL identifiers cannot hold (k8s.io/apiserver/pkg/cel/escaping.go).
RESERVED = frozenset(
    {
        "true", "false", "null", "in", "as", "break", "const", "continue", "else", "for",
        "function", "if", "import", "let", "loop", "package", "namespace", "return", "var",
        "void", "while",
    }
)  # fmt: skip


def escape(name: str) -> str | None:
    """The identifier a property is reached by in CEL, or None when it cannot be."""
    if name in RESERVED:
        return f"__{name}__"
    out = []
    i = 0
    while i < len(name):
        c = name[i]
        if name.startswith("__", i):
            out.append("__underscores__")
            i += 2
            continue
        if c.isascii() and (c.isalnum() or c == "_"):
            out.append(c)
        elif c in "./-":
            out.append({".": "__dot__", "/": "__slash__", "-": "__dash__"}[c])
        else:
            return None
        i += 1
    text = "".join(out)
    return text if text and not text[0].isdigit() else None


# The compiler.


def _cost_sum(*costs: int) -> int:
    return min(sum(costs), 2**63)


class _Compiler:
    def __init__(self, source: str, functions: Mapping[str, Function]) -> None:
        self.source = source
        self.functions = functions
        self.references: set[str] = set()

    def error(self, tree: Any, message: str, column: int | None = None) -> NoReturn:
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
        if left.meta.empty:
            return None
        at = self.source.find(op, left.meta.end_pos)
        return at + 1 if at >= 0 else None

    def node(self, tree: Any, env: dict[str, Type]) -> tuple[Fn, Type, int]:
        handler = getattr(self, "n_" + str(tree.data), None)
        if handler is None:
            raise self.issue(tree, f"unsupported syntax: {tree.data}")
        result: tuple[Fn, Type, int] = handler(tree, env)
        return result

    # Pass-through levels of the grammar.

    def n_member(self, tree: Any, env: dict[str, Type]) -> tuple[Fn, Type, int]:
        return self.node(tree.children[0], env)

    def n_primary(self, tree: Any, env: dict[str, Type]) -> tuple[Fn, Type, int]:
        return self.node(tree.children[0], env)

    def n_paren_expr(self, tree: Any, env: dict[str, Type]) -> tuple[Fn, Type, int]:
        return self.node(tree.children[0], env)

    def n_expr(self, tree: Any, env: dict[str, Type]) -> tuple[Fn, Type, int]:
        kids = [c for c in tree.children if c is not None]
        if len(kids) == 1:
            return self.node(kids[0], env)
        cond, c_type, c_cost = self.node(kids[0], env)
        yes, y_type, y_cost = self.node(kids[1], env)
        no, n_type, n_cost = self.node(kids[2], env)
        if c_type.kind not in ("bool", "dyn"):
            self._no_overload(tree, "_?_:_", [c_type, y_type, n_type])

        def ternary(v: dict[str, Any], m: Meter) -> Any:
            return yes(v, m) if _truth(cond(v, m)) else no(v, m)

        typ = y_type if y_type == n_type else DYN
        return ternary, typ, _cost_sum(c_cost, max(y_cost, n_cost))

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

        return logic, BOOL, _cost_sum(l_cost, r_cost, 1)

    def n_conditionalor(self, tree: Any, env: dict[str, Type]) -> tuple[Fn, Type, int]:
        return self._logic(tree, env, is_and=False)

    def n_conditionaland(self, tree: Any, env: dict[str, Type]) -> tuple[Fn, Type, int]:
        return self._logic(tree, env, is_and=True)

    def n_relation(self, tree: Any, env: dict[str, Type]) -> tuple[Fn, Type, int]:
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
        cost = _cost_sum(l_cost, r_cost, 1)
        if op == "in":
            if r_type.kind not in ("list", "map", "dyn"):
                self._no_overload(tree, "@in", [l_type, r_type], column)
            size = r_type.max_size if r_type.kind in ("list", "map") else UNBOUNDED

            def contains(v: dict[str, Any], m: Meter) -> Any:
                item, container = left(v, m), right(v, m)
                if isinstance(container, list):
                    m.charge(len(container))
                    return any(equal(item, x) for x in container)
                if isinstance(container, dict):
                    return any(equal(item, k) for k in container)
                raise EvalError("no such overload")

            return contains, BOOL, _cost_sum(cost, size)
        if op in ("eq", "ne"):
            if not _comparable(l_type, r_type):
                self._no_overload(tree, f"_{symbol}_", [l_type, r_type], column)
            negate = op == "ne"
            size_cost = _compare_cost(l_type, r_type)

            def eq(v: dict[str, Any], m: Meter) -> Any:
                a, b = left(v, m), right(v, m)
                if isinstance(a, str | list | dict | bytes):
                    m.charge(math.ceil(len(a) * 0.1))
                return equal(a, b) != negate

            return eq, BOOL, _cost_sum(cost, size_cost)
        if not _orderable(l_type, r_type):
            self._no_overload(tree, f"_{symbol}_", [l_type, r_type], column)
        test: Callable[[int], bool] = {
            "lt": lambda c: c < 0,
            "le": lambda c: c <= 0,
            "gt": lambda c: c > 0,
            "ge": lambda c: c >= 0,
        }[op]

        def order(v: dict[str, Any], m: Meter) -> Any:
            return test(compare(left(v, m), right(v, m)))

        return order, BOOL, _cost_sum(cost, _compare_cost(l_type, r_type))

    def _no_overload(
        self, tree: Any, op: str, types: list[Type], column: int | None = None
    ) -> NoReturn:
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
        typ = _arith_type(op, l_type, r_type)
        if typ is None:
            column = self.op_column(left_tree, symbol)
            self._no_overload(tree, f"_{symbol}_", [l_type, r_type], column)
            typ = DYN
        cost = _cost_sum(l_cost, r_cost, 1)
        if op == "add":
            if typ.kind in ("string", "list", "bytes"):
                cost = _cost_sum(cost, math.ceil((l_type.max_size + r_type.max_size) * 0.1))

            def add(v: dict[str, Any], m: Meter) -> Any:
                return _add(left(v, m), right(v, m), m)

            return add, typ, cost
        impl = {"sub": _sub, "mul": _mul, "div": _div, "mod": _mod}[op]

        def arith(v: dict[str, Any], m: Meter) -> Any:
            return impl(left(v, m), right(v, m))

        return arith, typ, cost

    def n_addition(self, tree: Any, env: dict[str, Type]) -> tuple[Fn, Type, int]:
        return self._arith(tree, env, "addition")

    def n_multiplication(self, tree: Any, env: dict[str, Type]) -> tuple[Fn, Type, int]:
        return self._arith(tree, env, "multiplication")

    def n_unary(self, tree: Any, env: dict[str, Type]) -> tuple[Fn, Type, int]:
        kids = [c for c in tree.children if c is not None]
        if len(kids) == 1:
            return self.node(kids[0], env)
        op, operand_tree = kids
        operand, typ, cost = self.node(operand_tree, env)
        if op.data == "unary_not":
            if typ.kind not in ("bool", "dyn"):
                self._no_overload(tree, "!_", [typ])

            def negate(v: dict[str, Any], m: Meter) -> Any:
                return not _truth(operand(v, m))

            return negate, BOOL, cost + 1
        if typ.kind not in ("int", "double", "duration", "dyn"):
            self._no_overload(tree, "-_", [typ])

        def minus(v: dict[str, Any], m: Meter) -> Any:
            return _neg(operand(v, m))

        return minus, typ, cost + 1

    # Members.

    def n_member_dot(self, tree: Any, env: dict[str, Type]) -> tuple[Fn, Type, int]:
        target_tree, name_token = tree.children
        target, t_type, cost = self.node(target_tree, env)
        f_type, key = self._field(name_token, t_type)
        kind = f_type.kind

        def select(v: dict[str, Any], m: Meter) -> Any:
            obj = target(v, m)
            m.charge(1)
            if isinstance(obj, dict):
                if key not in obj:
                    raise EvalError(f"no such key: {key}")
                value = obj[key]
                return coerce(kind, value) if kind in _COERCED else value
            selector = getattr(obj, "cel_field", None)
            if selector is not None:
                return selector(key)
            raise EvalError("no such overload")

        return select, f_type, cost + 1

    def _field(self, name_token: Any, t_type: Type) -> tuple[Type, str]:
        name = str(name_token)
        column = (name_token.column or 2) - 1
        if t_type.kind == "object":
            fields = t_type.fields or {}
            if name in fields:
                return fields[name], _unescape(name)
            self.error(None, f"undefined field '{name}'", column)
        if t_type.kind == "map":
            return t_type.elem or DYN, name
        if t_type.kind == "dyn":
            return DYN, name
        self.error(None, f"type '{t_type.name()}' does not support field selection", column)
        return DYN, name

    def _qualified(self, tree: Any) -> str | None:
        """``a.b`` when the tree is a plain dotted name (for namespaced functions)."""
        while isinstance(tree, Tree) and tree.data != "ident" and len(tree.children) == 1:
            tree = tree.children[0]
        if isinstance(tree, Tree) and tree.data == "ident":
            return str(tree.children[0])
        return None

    def n_member_index(self, tree: Any, env: dict[str, Type]) -> tuple[Fn, Type, int]:
        target, t_type, t_cost = self.node(tree.children[0], env)
        index, i_type, i_cost = self.node(tree.children[1], env)
        if t_type.kind == "list":
            if i_type.kind not in ("int", "uint", "dyn"):
                self._no_overload(tree, "_[_]", [t_type, i_type])
            typ = t_type.elem or DYN
        elif t_type.kind == "map":
            typ = t_type.elem or DYN
        elif t_type.kind == "object" or t_type.kind == "dyn":
            typ = DYN
        else:
            self._no_overload(tree, "_[_]", [t_type, i_type])
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
            return coerce(kind, value) if kind in _COERCED else value

        return item, typ, _cost_sum(t_cost, i_cost, 1)

    def n_member_object(self, tree: Any, env: dict[str, Type]) -> tuple[Fn, Type, int]:
        self.error(tree, "message construction is not supported")
        raise AssertionError("unreachable")

    def n_member_dot_arg(self, tree: Any, env: dict[str, Type]) -> tuple[Fn, Type, int]:
        target_tree, name_token = tree.children[0], tree.children[1]
        args = (
            list(tree.children[2].children)
            if len(tree.children) > 2 and tree.children[2] is not None
            else []
        )
        name = str(name_token)
        qualified = self._qualified(target_tree)
        if qualified is not None and qualified not in env:
            full = f"{qualified}.{name}"
            if full in self.functions:
                return self._call(name_token, full, None, args, env)
        if name in _MACROS:
            return self._macro(tree, name_token, target_tree, args, env)
        return self._call(name_token, name, target_tree, args, env)

    def _macro(
        self,
        tree: Any,
        name_token: Any,
        target_tree: Any,
        args: list[Any],
        env: dict[str, Type],
    ) -> tuple[Fn, Type, int]:
        name = str(name_token)
        arity = (2, 3) if name == "map" else (2,)
        if len(args) not in arity:
            self.error(name_token, f"undeclared reference to '{name}' (in container '')")
        var = self._qualified(args[0])
        if var is None:
            self.error(args[0], "argument is not an identifier")
        assert var is not None
        target, t_type, t_cost = self.node(target_tree, env)
        if t_type.kind == "list":
            elem = t_type.elem or DYN
        elif t_type.kind == "map":
            elem = string_type()
        elif t_type.kind == "dyn":
            elem = DYN
        else:
            self.error(
                name_token,
                f"found no matching overload for '{name}' applied to '({t_type.name()})'",
            )
            elem = DYN
        size = t_type.max_size if t_type.kind in ("list", "map") else UNBOUNDED
        inner = {**env, var: elem}
        bodies = [self.node(a, inner) for a in args[1:]]
        body_cost = sum(b[2] for b in bodies) + 1
        cost = _cost_sum(t_cost, size * body_cost)

        def items(v: dict[str, Any], m: Meter) -> list[Any]:
            value = target(v, m)
            if isinstance(value, list):
                return value
            if isinstance(value, dict):
                return list(value)
            raise EvalError("no such overload")

        kind = elem.kind

        def bind(v: dict[str, Any], x: Any) -> dict[str, Any]:
            return {**v, var: coerce(kind, x) if kind in _COERCED else x}

        if name in ("all", "exists"):
            pred = bodies[0][0]
            decisive = name == "exists"
            if bodies[0][1].kind not in ("bool", "dyn"):
                self._no_overload(tree, name, [t_type, bodies[0][1]])

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
                    if _truth(pred(bind(v, x), m)):
                        count += 1
                return count == 1

            return exists_one, BOOL, cost
        if name == "filter":
            pred = bodies[0][0]

            def filtered(v: dict[str, Any], m: Meter) -> Any:
                out = []
                for x in items(v, m):
                    m.charge(1)
                    if _truth(pred(bind(v, x), m)):
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
                if pred_fn is None or _truth(pred_fn(scope, m)):
                    out.append(fn(scope, m))
            return out

        return mapped, list_type(bodies[-1][1], size), cost

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
        cost = _cost_sum(*(c[2] for c in compiled), func.cost(types))
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

    def n_ident(self, tree: Any, env: dict[str, Type]) -> tuple[Fn, Type, int]:
        token = tree.children[0]
        name = str(token)
        if name in env:
            self.references.add(name)
            typ = env[name]
            kind = typ.kind

            def ident(v: dict[str, Any], m: Meter) -> Any:
                m.charge(1)
                value = v[name]
                return coerce(kind, value) if kind in _COERCED else value

            return ident, typ, 1
        if name in _TYPE_NAMES:
            value = CelType(_TYPE_NAMES[name])
            return (lambda v, m: value), TYPE, 0
        self.error(token, f"undeclared reference to '{name}' (in container '')")
        raise AssertionError("unreachable")

    def n_dot_ident(self, tree: Any, env: dict[str, Type]) -> tuple[Fn, Type, int]:
        return self.n_ident(tree, env)

    def n_ident_arg(self, tree: Any, env: dict[str, Type]) -> tuple[Fn, Type, int]:
        token = tree.children[0]
        args = (
            list(tree.children[1].children)
            if len(tree.children) > 1 and tree.children[1] is not None
            else []
        )
        name = str(token)
        if name == "has":
            return self._has(token, args, env)
        if name == "dyn" and len(args) == 1:
            fn, _typ, cost = self.node(args[0], env)
            return fn, DYN, cost
        return self._call(token, name, None, args, env)

    def n_dot_ident_arg(self, tree: Any, env: dict[str, Type]) -> tuple[Fn, Type, int]:
        return self.n_ident_arg(tree, env)

    def _has(self, token: Any, args: list[Any], env: dict[str, Type]) -> tuple[Fn, Type, int]:
        inner = args[0] if len(args) == 1 else None
        while isinstance(inner, Tree) and len(inner.children) == 1 and inner.data != "member_dot":
            inner = inner.children[0]
        if not isinstance(inner, Tree) or inner.data != "member_dot":
            self.error(token, "invalid argument to has() macro")
        assert isinstance(inner, Tree)
        target_tree, name_token = inner.children
        target, t_type, cost = self.node(target_tree, env)
        _f_type, key = self._field(name_token, t_type)

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

    def n_literal(self, tree: Any, env: dict[str, Type]) -> tuple[Fn, Type, int]:
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

    def n_list_lit(self, tree: Any, env: dict[str, Type]) -> tuple[Fn, Type, int]:
        exprs = (
            list(tree.children[0].children)
            if tree.children and tree.children[0] is not None
            else []
        )
        compiled = [self.node(e, env) for e in exprs]
        fns = [c[0] for c in compiled]
        elem = _common([c[1] for c in compiled])

        def make(v: dict[str, Any], m: Meter) -> Any:
            m.charge(1)
            return [f(v, m) for f in fns]

        return make, list_type(elem, len(fns)), _cost_sum(*(c[2] for c in compiled), 1)

    def n_map_lit(self, tree: Any, env: dict[str, Type]) -> tuple[Fn, Type, int]:
        exprs = (
            list(tree.children[0].children)
            if tree.children and tree.children[0] is not None
            else []
        )
        compiled = [self.node(e, env) for e in exprs]
        pairs = [(compiled[i][0], compiled[i + 1][0]) for i in range(0, len(compiled), 2)]
        elem = _common([compiled[i + 1][1] for i in range(0, len(compiled), 2)])

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

        return make, map_type(elem, len(pairs)), _cost_sum(*(c[2] for c in compiled), 1)


_MISSING = object()
_MACROS = frozenset({"all", "exists", "exists_one", "map", "filter"})
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
_NUMERIC = frozenset({"int", "uint", "double"})


def _unescape(name: str) -> str:
    if name.startswith("__") and name.endswith("__") and name[2:-2] in RESERVED:
        return name[2:-2]
    return (
        name.replace("__underscores__", "\0")
        .replace("__dot__", ".")
        .replace("__dash__", "-")
        .replace("__slash__", "/")
        .replace("\0", "__")
    )


def _common(types: list[Type]) -> Type:
    """The element type of a literal: one kind (at the largest size seen), else dyn."""
    kinds = {t.kind for t in types}
    if len(kinds) != 1 or kinds & {"list", "map", "object", "optional"}:
        return DYN
    return Type(types[0].kind, max_size=max(t.max_size for t in types))


def _comparable(a: Type, b: Type) -> bool:
    if "dyn" in (a.kind, b.kind) or "null" in (a.kind, b.kind):
        return True
    if a.kind == b.kind:
        if a.kind in ("list", "map", "optional"):
            return _comparable(a.elem or DYN, b.elem or DYN)
        return True
    return {a.kind, b.kind} <= {"object", "map"}


def _orderable(a: Type, b: Type) -> bool:
    if "dyn" in (a.kind, b.kind):
        return True
    if a.kind in _NUMERIC and b.kind in _NUMERIC:
        return True
    return a.kind == b.kind and a.kind in (
        "string",
        "bytes",
        "bool",
        "timestamp",
        "duration",
        "quantity",
    )


def _compare_cost(a: Type, b: Type) -> int:
    if a.kind in ("string", "bytes") or b.kind in ("string", "bytes"):
        sizes = [t.max_size for t in (a, b) if t.kind in ("string", "bytes")]
        return 1 + math.ceil(min(sizes) * 0.1)
    if a.kind in ("list", "map", "object") or b.kind in ("list", "map", "object"):
        return 1 + math.ceil(max(a.max_size, b.max_size) * 0.1)
    return 1


def _arith_type(op: str, a: Type, b: Type) -> Type | None:
    if "dyn" in (a.kind, b.kind):
        return DYN
    if op == "add":
        if a.kind == b.kind and a.kind in ("int", "uint", "double", "duration"):
            return a
        if a.kind == b.kind and a.kind in ("string", "bytes"):
            return Type(a.kind, max_size=a.max_size + b.max_size)
        if a.kind == b.kind == "list":
            elem = a.elem if a.elem == b.elem else DYN
            return list_type(elem or DYN, a.max_size + b.max_size)
        if {a.kind, b.kind} == {"timestamp", "duration"}:
            return TIMESTAMP
        return None
    if op == "sub":
        if a.kind == b.kind and a.kind in ("int", "uint", "double", "duration"):
            return a
        if a.kind == "timestamp" and b.kind == "timestamp":
            return DURATION
        if a.kind == "timestamp" and b.kind == "duration":
            return TIMESTAMP
        return None
    if op == "mod":
        return a if a.kind == b.kind and a.kind in ("int", "uint") else None
    return a if a.kind == b.kind and a.kind in _NUMERIC else None
