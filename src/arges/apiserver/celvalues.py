"""CEL runtime values and operators, with cel-go's semantics and error wording.

Values are JSON values (``None``, ``bool``, ``int``, ``float``, ``str``, ``list``, ``dict``)
plus ``bytes``, :class:`datetime.datetime` (timestamps, UTC), :class:`datetime.timedelta`
(durations), :class:`UInt`, :class:`CelType` (type values), :class:`Optional` and the library
types of :mod:`arges.apiserver.celext`. Integers are 64-bit (``integer overflow`` beyond),
division truncates towards zero, and equality is heterogeneous (``1 == 1.0``; values of
different types are unequal).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import math
from dataclasses import dataclass
from typing import Any

from arges.errors import ArgesError

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
UINT64_MAX = 2**64 - 1


class EvalError(ArgesError):
    """A runtime error, worded as cel-go words it (``no such key: foo``)."""


class CostLimitExceeded(EvalError):
    """The expression spent its cost budget."""

    def __init__(self) -> None:
        super().__init__("operation cancelled: actual cost limit exceeded")


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


def is_num(value: Any) -> bool:
    """Whether ``value`` is a CEL number (an int, uint or double, not a bool)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def equal(a: Any, b: Any) -> bool:
    """CEL equality: numbers compare across types, containers deeply, other types never."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if is_num(a) and is_num(b):
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
        (is_num(a) and is_num(b))
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


def add(a: Any, b: Any, meter: Meter) -> Any:
    """``a + b`` for numbers, strings, bytes, lists, timestamps and durations."""
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


def sub(a: Any, b: Any) -> Any:
    """``a - b`` for numbers, timestamps and durations."""
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


def mul(a: Any, b: Any) -> Any:
    """``a * b`` for numbers of one type."""
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


def div(a: Any, b: Any) -> Any:
    """``a / b``: integers truncate towards zero, doubles follow IEEE 754."""
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


def mod(a: Any, b: Any) -> Any:
    """``a % b`` for integers, with the dividend's sign (Go's ``%``)."""
    if isinstance(a, bool) or isinstance(b, bool) or type(a) is not type(b):
        raise EvalError("no such overload")
    if isinstance(a, int):
        if b == 0:
            raise EvalError("modulus by zero")
        rest = abs(a) % abs(b)
        rest = -rest if a < 0 else rest
        return UInt(rest) if isinstance(a, UInt) else rest
    raise EvalError("no such overload")


def neg(a: Any) -> Any:
    """``-a`` for ints, doubles and durations."""
    if isinstance(a, bool | UInt):
        raise EvalError("no such overload")
    if isinstance(a, int):
        return check_int(-a)
    if isinstance(a, float | dt.timedelta):
        return -a
    raise EvalError("no such overload")


def truth(value: Any) -> bool:
    """A bool operand, or ``no such overload``."""
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


COERCED = frozenset({"timestamp", "duration", "double", "bytes"})
