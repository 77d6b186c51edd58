"""CEL's standard functions and Kubernetes' list, string and regex libraries.

The implementations behind :data:`arges.apiserver.celext.FUNCTIONS`: each takes the cost
meter and the evaluated arguments (a member call's receiver first) and raises
:class:`~arges.apiserver.celvalues.EvalError` with cel-go's wording. String and list functions
charge the meter in proportion to the sizes they walk, as cel-go's cost model does.
Regular expressions are RE2 in kube-apiserver and Python's ``re`` here; the two agree on the
syntax rules use in practice (classes, anchors, repetition), not on every corner.
"""

from __future__ import annotations

import datetime as dt
import itertools
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
    compare,
    equal,
    parse_duration,
    parse_timestamp,
    type_name,
)


def _linear(meter: Meter, size: int) -> None:
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
    _linear(meter, len(as_str(args[0])))
    return as_str(args[1]) in args[0]


def fn_starts(meter: Meter, args: list[Any]) -> Any:
    """CEL ``startsWith``."""
    _linear(meter, len(as_str(args[1])))
    return as_str(args[0]).startswith(args[1])


def fn_ends(meter: Meter, args: list[Any]) -> Any:
    """CEL ``endsWith``."""
    _linear(meter, len(as_str(args[1])))
    return as_str(args[0]).endswith(args[1])


@lru_cache(maxsize=512)
def _regex(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise EvalError(f"invalid regular expression: {exc}") from None


def fn_matches(meter: Meter, args: list[Any]) -> Any:
    """CEL ``matches``."""
    text, pattern = as_str(args[0]), as_str(args[1])
    _linear(meter, len(text) * max(1, len(pattern) // 4))
    return _regex(pattern).search(text) is not None


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


# Lists.


def fn_is_sorted(meter: Meter, args: list[Any]) -> Any:
    """CEL ``isSorted``."""
    items = as_list(args[0])
    meter.charge(len(items))
    return all(compare(a, b) <= 0 for a, b in itertools.pairwise(items))


def fn_sum(meter: Meter, args: list[Any]) -> Any:
    """CEL ``sum``."""
    items = as_list(args[0])
    meter.charge(len(items))
    if not items:
        return 0
    total = items[0]
    for item in items[1:]:
        if isinstance(total, dt.timedelta):
            total = total + item
        elif type(total) is not type(item) or isinstance(total, bool):
            raise EvalError("no such overload")
        else:
            total = check_int(total + item) if isinstance(total, int) else total + item
    return total


def fn_extreme(sign: int) -> Callable[[Meter, list[Any]], Any]:
    """``min()`` (sign -1) or ``max()`` (sign 1) of a list."""

    def pick(meter: Meter, args: list[Any]) -> Any:
        items = as_list(args[0])
        if not items:
            raise EvalError(f"{'min' if sign < 0 else 'max'}(list) called on an empty list")
        meter.charge(len(items))
        best = items[0]
        for item in items[1:]:
            if compare(item, best) * sign > 0:
                best = item
        return best

    return pick


def fn_index_of(last: bool) -> Callable[[Meter, list[Any]], Any]:
    """``indexOf`` (or ``lastIndexOf``) of a list item or a substring."""

    def find(meter: Meter, args: list[Any]) -> Any:
        target = args[0]
        if isinstance(target, list):
            meter.charge(len(target))
            positions = range(len(target) - 1, -1, -1) if last else range(len(target))
            return next((i for i in positions if equal(target[i], args[1])), -1)
        text, sub = as_str(target), as_str(args[1])
        _linear(meter, len(text))
        if len(args) > 2:
            start = as_int(args[2])
            if start < 0 or start > len(text):
                raise EvalError(f"index out of range: {start}")
            return text.rfind(sub, 0, start + len(sub)) if last else text.find(sub, start)
        return text.rfind(sub) if last else text.find(sub)

    return find


def fn_slice(meter: Meter, args: list[Any]) -> Any:
    """CEL ``slice``."""
    items, start, end = as_list(args[0]), as_int(args[1]), as_int(args[2])
    if start < 0 or end < 0 or start > end or end > len(items):
        raise EvalError(f"cannot slice({start}, {end}), invalid range")
    meter.charge(end - start)
    return items[start:end]


def fn_flatten(meter: Meter, args: list[Any]) -> Any:
    """CEL ``flatten``."""
    depth = as_int(args[1]) if len(args) > 1 else 1
    if depth < 0:
        raise EvalError("level must be non-negative")

    def flat(items: list[Any], level: int) -> list[Any]:
        out: list[Any] = []
        for item in items:
            if isinstance(item, list) and level > 0:
                out += flat(item, level - 1)
            else:
                out.append(item)
        return out

    items = as_list(args[0])
    meter.charge(len(items))
    return flat(items, depth)


def fn_reverse(meter: Meter, args: list[Any]) -> Any:
    """CEL ``reverse``."""
    value = args[0]
    if isinstance(value, list):
        meter.charge(len(value))
        return value[::-1]
    _linear(meter, len(as_str(value)))
    return value[::-1]


def fn_distinct(meter: Meter, args: list[Any]) -> Any:
    """CEL ``distinct``."""
    items = as_list(args[0])
    meter.charge(len(items) * len(items))
    out: list[Any] = []
    for item in items:
        if not any(equal(item, seen) for seen in out):
            out.append(item)
    return out


def fn_sort(meter: Meter, args: list[Any]) -> Any:
    """CEL ``sort``."""
    items = as_list(args[0])
    meter.charge(len(items) * max(1, int(math.log2(len(items) or 1))))
    from functools import cmp_to_key

    return sorted(items, key=cmp_to_key(compare))


# Strings.


def fn_char_at(meter: Meter, args: list[Any]) -> Any:
    """CEL ``charAt``."""
    text, index = as_str(args[0]), as_int(args[1])
    if index < 0 or index > len(text):
        raise EvalError(f"index out of range: {index}")
    return text[index : index + 1]


def fn_lower(meter: Meter, args: list[Any]) -> Any:
    """CEL ``lowerAscii``."""
    text = as_str(args[0])
    _linear(meter, len(text))
    return "".join(c.lower() if c.isascii() else c for c in text)


def fn_upper(meter: Meter, args: list[Any]) -> Any:
    """CEL ``upperAscii``."""
    text = as_str(args[0])
    _linear(meter, len(text))
    return "".join(c.upper() if c.isascii() else c for c in text)


def fn_replace(meter: Meter, args: list[Any]) -> Any:
    """CEL ``replace``."""
    text, old, new = as_str(args[0]), as_str(args[1]), as_str(args[2])
    limit = as_int(args[3]) if len(args) > 3 else -1
    _linear(meter, len(text) + len(new))
    return text.replace(old, new, limit)


def fn_split(meter: Meter, args: list[Any]) -> Any:
    """CEL ``split``."""
    text, sep = as_str(args[0]), as_str(args[1])
    limit = as_int(args[2]) if len(args) > 2 else -1
    _linear(meter, len(text))
    if limit == 0:
        return []
    if sep == "":
        chars = list(text)
        if 0 < limit < len(chars):
            return [*chars[: limit - 1], "".join(chars[limit - 1 :])]
        return chars
    return text.split(sep, limit - 1 if limit > 0 else -1)


def fn_substring(meter: Meter, args: list[Any]) -> Any:
    """CEL ``substring``."""
    text, start = as_str(args[0]), as_int(args[1])
    end = as_int(args[2]) if len(args) > 2 else len(text)
    if start < 0 or start > len(text):
        raise EvalError(f"index out of range: {start}")
    if end < 0 or end > len(text):
        raise EvalError(f"index out of range: {end}")
    if start > end:
        raise EvalError(f"invalid substring range. start: {start}, end: {end}")
    return text[start:end]


def fn_trim(meter: Meter, args: list[Any]) -> Any:
    """CEL ``trim``."""
    text = as_str(args[0])
    _linear(meter, len(text))
    return text.strip()


def fn_join(meter: Meter, args: list[Any]) -> Any:
    """CEL ``join``."""
    items = as_list(args[0])
    sep = as_str(args[1]) if len(args) > 1 else ""
    parts = [as_str(i) for i in items]
    _linear(meter, sum(len(p) for p in parts))
    return sep.join(parts)


def fn_quote(meter: Meter, args: list[Any]) -> Any:
    """CEL ``strings.quote``."""
    text = as_str(args[0])
    escapes = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t",
               "\v": "\\v", "\\": "\\\\", '"': '\\"'}  # fmt: skip
    return '"' + "".join(escapes.get(c, c) for c in text) + '"'


_VERB = re.compile(r"%(?:\.(\d+))?([sdfeEbxXo%])")


def fn_format(meter: Meter, args: list[Any]) -> Any:
    """CEL ``format``."""
    text, values = as_str(args[0]), as_list(args[1])
    _linear(meter, len(text))
    position = 0

    def verb(match: re.Match[str]) -> str:
        nonlocal position
        precision, kind = match.group(1), match.group(2)
        if kind == "%":
            return "%"
        if position >= len(values):
            raise EvalError(f"index {position} out of range")
        value = values[position]
        position += 1
        if kind == "s":
            return _format_s(value)
        if kind == "d":
            return str(as_int(value))
        if kind in "fe":
            digits = int(precision) if precision is not None else 6
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise EvalError("no such overload")
            return f"{float(value):.{digits}{kind}}"
        if kind in "xX":
            out = (
                value.hex()
                if isinstance(value, bytes)
                else (
                    value.encode().hex() if isinstance(value, str) else format(as_int(value), "x")
                )
            )
            return out.upper() if kind == "X" else out
        if kind == "o":
            return format(as_int(value), "o")
        return format(as_int(value), "b")

    return _VERB.sub(verb, text)


def _format_s(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_format_s(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_format_s(k)}:{_format_s(v)}" for k, v in value.items()) + "}"
    if value is None:
        return "null"
    return format_value(value)


# Regex.


def fn_find(meter: Meter, args: list[Any]) -> Any:
    """CEL ``find``."""
    text, pattern = as_str(args[0]), as_str(args[1])
    _linear(meter, len(text))
    match = _regex(pattern).search(text)
    return match.group(0) if match else ""


def fn_find_all(meter: Meter, args: list[Any]) -> Any:
    """CEL ``findAll``."""
    text, pattern = as_str(args[0]), as_str(args[1])
    limit = as_int(args[2]) if len(args) > 2 else -1
    _linear(meter, len(text))
    found = [m.group(0) for m in _regex(pattern).finditer(text)]
    return found if limit < 0 else found[:limit]
