"""CEL's standard functions and what Kubernetes' libraries share: argument checks, costs.

The implementations behind :data:`arges.apiserver.celext.FUNCTIONS`: each takes the cost
meter and the evaluated arguments (a member call's receiver first) and raises
:class:`~arges.apiserver.celvalues.EvalError` with cel-go's wording. String and list functions
charge the meter in proportion to the sizes they walk, as cel-go's cost model does. The
Kubernetes list library is :mod:`~arges.apiserver.cellists`, the string and regex libraries
:mod:`~arges.apiserver.celstrings`.
Regular expressions are RE2 in kube-apiserver and Python's ``re`` here; the two agree on the
syntax rules use in practice (classes, anchors, repetition), not on every corner.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import zoneinfo
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from arges.apiserver.celtypes import (
    DYN,
    UNBOUNDED,
    Type,
)
from arges.apiserver.celvalues import (
    INT64_MIN,
    UINT64_MAX,
    CelType,
    EvalError,
    Meter,
    UInt,
    check_int,
    parse_duration,
    parse_timestamp,
    type_name,
)


def charge_linear(meter: Meter, size: int) -> None:
    """Charge ``meter`` for walking ``size`` elements or characters (cel-go's 0.1 per unit)."""
    meter.charge(math.ceil(size * 0.1))


def as_str(value: Any) -> str:
    """The argument as a string, else ``no such overload``."""
    if not isinstance(value, str):
        raise EvalError("no such overload")
    return value


def as_list(value: Any) -> list[Any]:
    """The argument as a list, else ``no such overload``."""
    if not isinstance(value, list):
        raise EvalError("no such overload")
    return value


def as_int(value: Any) -> int:
    """The argument as an int (not a bool), else ``no such overload``."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise EvalError("no such overload")
    return value


def _kinds(types: list[Type], *wanted: str | tuple[str, ...]) -> bool:
    """Whether the argument types match ``wanted`` (dyn matches anything)."""
    if len(types) != len(wanted):
        return False
    for t, w in zip(types, wanted, strict=True):
        allowed = (w,) if isinstance(w, str) else w
        if t.kind != "dyn" and "*" not in allowed and t.kind not in allowed:
            return False
    return True


def sig(
    result: Type | Callable[[list[Type]], Type], *overloads: tuple[Any, ...]
) -> Callable[[list[Type]], Type | None]:
    """A result-type function: ``result`` when the argument kinds match one of ``overloads``."""

    def check(types: list[Type]) -> Type | None:
        if any(_kinds(types, *o) for o in overloads):
            return result(types) if callable(result) else result
        return None

    return check


def size_cost(index: int = 0) -> Callable[[list[Type]], int]:
    """An estimated-cost function: linear in the size of argument ``index``."""

    def cost(types: list[Type]) -> int:
        t = types[index] if index < len(types) else DYN
        return 1 + math.ceil((t.max_size if t.max_size else UNBOUNDED) * 0.1)

    return cost


def elem_type(types: list[Type]) -> Type:
    """The element type of the first argument's list type (dyn otherwise)."""
    return types[0].elem or DYN if types and types[0].kind == "list" else DYN


# Standard functions.


def fn_size(meter: Meter, args: list[Any]) -> Any:
    """CEL ``size``."""
    value = args[0]
    if isinstance(value, str):
        return len(value)
    if isinstance(value, bytes | list | dict):
        return len(value)
    raise EvalError("no such overload")


def fn_contains(meter: Meter, args: list[Any]) -> Any:
    """CEL ``contains``."""
    charge_linear(meter, len(as_str(args[0])))
    return as_str(args[1]) in args[0]


def fn_starts(meter: Meter, args: list[Any]) -> Any:
    """CEL ``startsWith``."""
    charge_linear(meter, len(as_str(args[1])))
    return as_str(args[0]).startswith(args[1])


def fn_ends(meter: Meter, args: list[Any]) -> Any:
    """CEL ``endsWith``."""
    charge_linear(meter, len(as_str(args[1])))
    return as_str(args[0]).endswith(args[1])


@lru_cache(maxsize=512)
def compiled_regex(pattern: str) -> re.Pattern[str]:
    """``pattern`` compiled (and cached).

    Raises:
        EvalError: a pattern that does not compile, in cel-go's words.
    """
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise EvalError(f"invalid regular expression: {exc}") from None


def fn_matches(meter: Meter, args: list[Any]) -> Any:
    """CEL ``matches``."""
    text, pattern = as_str(args[0]), as_str(args[1])
    charge_linear(meter, len(text) * max(1, len(pattern) // 4))
    return compiled_regex(pattern).search(text) is not None


def fn_to_int(meter: Meter, args: list[Any]) -> Any:
    """CEL ``int``."""
    value = args[0]
    if isinstance(value, bool):
        raise EvalError("no such overload")
    if isinstance(value, int):
        return check_int(int(value))
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value) or not INT64_MIN <= value < 2**63:
            raise EvalError("integer overflow")
        return int(value)
    if isinstance(value, str):
        try:
            return check_int(int(value, 10))
        except ValueError:
            raise EvalError(f"cannot convert '{value}' to int") from None
    if isinstance(value, dt.datetime):
        return int(value.timestamp())
    if isinstance(value, dt.timedelta):
        return int(value / dt.timedelta(microseconds=1)) * 1000
    raise EvalError("no such overload")


def fn_to_uint(meter: Meter, args: list[Any]) -> Any:
    """CEL ``uint``."""
    value = args[0]
    if isinstance(value, bool):
        raise EvalError("no such overload")
    try:
        number = int(value, 10) if isinstance(value, str) else int(value)
    except (ValueError, TypeError):
        raise EvalError(f"cannot convert '{value}' to uint") from None
    if number < 0 or number > UINT64_MAX:
        raise EvalError("unsigned integer overflow")
    return UInt(number)


def fn_to_double(meter: Meter, args: list[Any]) -> Any:
    """CEL ``double``."""
    value = args[0]
    if isinstance(value, bool):
        raise EvalError("no such overload")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise EvalError(f"cannot convert '{value}' to double") from None
    raise EvalError("no such overload")


def format_value(value: Any) -> str:
    """``string(value)``: how CEL prints a value."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e21:
            return str(int(value))
        return repr(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, dt.datetime):
        return (
            value.strftime("%Y-%m-%dT%H:%M:%S")
            + (f".{value.microsecond:06d}".rstrip("0") if value.microsecond else "")
            + "Z"
        )
    if isinstance(value, dt.timedelta):
        seconds = value.total_seconds()
        return f"{seconds:g}s"
    if isinstance(value, CelType):
        return value.name
    text = getattr(value, "cel_string", None)
    if text is not None:
        return str(text())
    raise EvalError("no such overload")


def fn_to_string(meter: Meter, args: list[Any]) -> Any:
    """CEL ``string``."""
    if isinstance(args[0], list | dict | type(None)):
        raise EvalError("no such overload")
    return format_value(args[0])


def fn_to_bytes(meter: Meter, args: list[Any]) -> Any:
    """CEL ``bytes``."""
    if isinstance(args[0], bytes):
        return args[0]
    return as_str(args[0]).encode()


def fn_to_bool(meter: Meter, args: list[Any]) -> Any:
    """CEL ``bool``."""
    value = args[0]
    if isinstance(value, bool):
        return value
    text = as_str(value)
    if text in ("true", "True", "TRUE", "t", "1"):
        return True
    if text in ("false", "False", "FALSE", "f", "0"):
        return False
    raise EvalError("type conversion error from 'string' to 'bool'")


def fn_to_duration(meter: Meter, args: list[Any]) -> Any:
    """CEL ``duration``."""
    if isinstance(args[0], dt.timedelta):
        return args[0]
    return parse_duration(as_str(args[0]))


def fn_to_timestamp(meter: Meter, args: list[Any]) -> Any:
    """CEL ``timestamp``."""
    value = args[0]
    if isinstance(value, dt.datetime):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return dt.datetime.fromtimestamp(value, dt.UTC)
    return parse_timestamp(as_str(value))


def fn_type_of(meter: Meter, args: list[Any]) -> Any:
    """CEL ``type``."""
    name = type_name(args[0])
    return CelType({"null_type": "null_type"}.get(name, name))


def _in_zone(value: Any, args: list[Any]) -> dt.datetime:
    if not isinstance(value, dt.datetime):
        raise EvalError("no such overload")
    if len(args) > 1:
        zone = as_str(args[1])
        try:
            if zone[:1] in "+-" and ":" in zone:
                hours, minutes = zone[1:].split(":")
                delta = dt.timedelta(hours=int(hours), minutes=int(minutes))
                return value.astimezone(dt.timezone(delta if zone[0] == "+" else -delta))
            return value.astimezone(zoneinfo.ZoneInfo(zone))
        except (ValueError, zoneinfo.ZoneInfoNotFoundError):
            raise EvalError(f"unknown time zone {zone}") from None
    return value


def fn_time_getter(
    of_time: Callable[[dt.datetime], int] | None, of_duration: Callable[[dt.timedelta], int] | None
) -> Callable[[Meter, list[Any]], Any]:
    """A timestamp (optionally in a time zone) or duration accessor."""

    def get(meter: Meter, args: list[Any]) -> Any:
        value = args[0]
        if isinstance(value, dt.timedelta) and of_duration is not None and len(args) == 1:
            return of_duration(value)
        if of_time is None:
            raise EvalError("no such overload")
        return of_time(_in_zone(value, args))

    return get


def fn_whole(delta: dt.timedelta, unit: float) -> int:
    """Whole ``unit`` seconds in a duration, truncated towards zero."""
    return int(delta.total_seconds() / unit)
