"""The CEL function library kube-apiserver offers validation rules.

CEL's standard functions (``size``, ``contains``, ``matches``, conversions, timestamp and
duration accessors) and Kubernetes' extension libraries, as documented at
https://kubernetes.io/docs/reference/using-api/cel/ and implemented in
``k8s.io/apiserver/pkg/cel/library`` and cel-go's ``ext`` package:

- lists: ``isSorted``, ``sum``, ``min``, ``max``, ``indexOf``, ``lastIndexOf``, ``slice``,
  ``flatten``, ``reverse``, ``distinct``, ``sort``;
- strings: ``charAt``, ``indexOf``, ``lastIndexOf``, ``lowerAscii``, ``upperAscii``,
  ``replace``, ``split``, ``substring``, ``trim``, ``join``, ``format``, ``reverse``,
  ``strings.quote``;
- regex: ``find``, ``findAll``; URLs: ``url``, ``isURL``, ``getScheme``, ``getHost``,
  ``getHostname``, ``getPort``, ``getEscapedPath``, ``getQuery``;
- quantities: ``quantity``, ``isQuantity``, ``sign``, ``isInteger``, ``asInteger``,
  ``asApproximateFloat``, ``add``, ``sub``, ``isGreaterThan``, ``isLessThan``, ``compareTo``;
- optionals: ``optional.of``, ``optional.none``, ``optional.ofNonZeroValue``, ``hasValue``,
  ``value``, ``orValue``, ``or``; sets: ``sets.contains``, ``sets.equivalent``,
  ``sets.intersects``.

Regular expressions are RE2 in kube-apiserver and Python's ``re`` here; the two agree on the
syntax rules use in practice (classes, anchors, repetition), not on every corner.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
import re
import urllib.parse
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

from arges.apiserver.cel import (
    BOOL,
    DOUBLE,
    DURATION,
    DYN,
    INT,
    INT64_MAX,
    INT64_MIN,
    TIMESTAMP,
    TYPE,
    UINT,
    UINT64_MAX,
    UNBOUNDED,
    CelType,
    EvalError,
    Function,
    Meter,
    Optional,
    Type,
    UInt,
    check_int,
    compare,
    equal,
    list_type,
    map_type,
    parse_duration,
    parse_timestamp,
    string_type,
    type_name,
)

STRING = string_type()
QUANTITY = Type("quantity")
URL_TYPE = Type("url")


def _linear(meter: Meter, size: int) -> None:
    meter.charge(math.ceil(size * 0.1))


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise EvalError("no such overload")
    return value


def _list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise EvalError("no such overload")
    return value


def _int(value: Any) -> int:
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


def _size_cost(index: int = 0) -> Callable[[list[Type]], int]:
    def cost(types: list[Type]) -> int:
        t = types[index] if index < len(types) else DYN
        return 1 + math.ceil((t.max_size if t.max_size else UNBOUNDED) * 0.1)

    return cost


def _elem(types: list[Type]) -> Type:
    return types[0].elem or DYN if types and types[0].kind == "list" else DYN


# Standard functions.


def _size(meter: Meter, args: list[Any]) -> Any:
    value = args[0]
    if isinstance(value, str):
        return len(value)
    if isinstance(value, bytes | list | dict):
        return len(value)
    raise EvalError("no such overload")


def _contains(meter: Meter, args: list[Any]) -> Any:
    _linear(meter, len(_str(args[0])))
    return _str(args[1]) in args[0]


def _starts(meter: Meter, args: list[Any]) -> Any:
    _linear(meter, len(_str(args[1])))
    return _str(args[0]).startswith(args[1])


def _ends(meter: Meter, args: list[Any]) -> Any:
    _linear(meter, len(_str(args[1])))
    return _str(args[0]).endswith(args[1])


@lru_cache(maxsize=512)
def _regex(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise EvalError(f"invalid regular expression: {exc}") from None


def _matches(meter: Meter, args: list[Any]) -> Any:
    text, pattern = _str(args[0]), _str(args[1])
    _linear(meter, len(text) * max(1, len(pattern) // 4))
    return _regex(pattern).search(text) is not None


def _to_int(meter: Meter, args: list[Any]) -> Any:
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


def _to_uint(meter: Meter, args: list[Any]) -> Any:
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


def _to_double(meter: Meter, args: list[Any]) -> Any:
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


def _to_string(meter: Meter, args: list[Any]) -> Any:
    if isinstance(args[0], list | dict | type(None)):
        raise EvalError("no such overload")
    return format_value(args[0])


def _to_bytes(meter: Meter, args: list[Any]) -> Any:
    if isinstance(args[0], bytes):
        return args[0]
    return _str(args[0]).encode()


def _to_bool(meter: Meter, args: list[Any]) -> Any:
    value = args[0]
    if isinstance(value, bool):
        return value
    text = _str(value)
    if text in ("true", "True", "TRUE", "t", "1"):
        return True
    if text in ("false", "False", "FALSE", "f", "0"):
        return False
    raise EvalError("type conversion error from 'string' to 'bool'")


def _to_duration(meter: Meter, args: list[Any]) -> Any:
    if isinstance(args[0], dt.timedelta):
        return args[0]
    return parse_duration(_str(args[0]))


def _to_timestamp(meter: Meter, args: list[Any]) -> Any:
    value = args[0]
    if isinstance(value, dt.datetime):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return dt.datetime.fromtimestamp(value, dt.UTC)
    return parse_timestamp(_str(value))


def _type_of(meter: Meter, args: list[Any]) -> Any:
    name = type_name(args[0])
    return CelType({"null_type": "null_type"}.get(name, name))


def _in_zone(value: Any, args: list[Any]) -> dt.datetime:
    if not isinstance(value, dt.datetime):
        raise EvalError("no such overload")
    if len(args) > 1:
        zone = _str(args[1])
        try:
            if zone[:1] in "+-" and ":" in zone:
                hours, minutes = zone[1:].split(":")
                delta = dt.timedelta(hours=int(hours), minutes=int(minutes))
                return value.astimezone(dt.timezone(delta if zone[0] == "+" else -delta))
            return value.astimezone(zoneinfo.ZoneInfo(zone))
        except (ValueError, zoneinfo.ZoneInfoNotFoundError):
            raise EvalError(f"unknown time zone {zone}") from None
    return value


def _time_getter(
    of_time: Callable[[dt.datetime], int] | None, of_duration: Callable[[dt.timedelta], int] | None
) -> Callable[[Meter, list[Any]], Any]:
    def get(meter: Meter, args: list[Any]) -> Any:
        value = args[0]
        if isinstance(value, dt.timedelta) and of_duration is not None and len(args) == 1:
            return of_duration(value)
        if of_time is None:
            raise EvalError("no such overload")
        return of_time(_in_zone(value, args))

    return get


def _whole(delta: dt.timedelta, unit: float) -> int:
    return int(delta.total_seconds() / unit)


# Lists.


def _is_sorted(meter: Meter, args: list[Any]) -> Any:
    items = _list(args[0])
    meter.charge(len(items))
    return all(compare(a, b) <= 0 for a, b in itertools.pairwise(items))


def _sum(meter: Meter, args: list[Any]) -> Any:
    items = _list(args[0])
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


def _extreme(sign: int) -> Callable[[Meter, list[Any]], Any]:
    def pick(meter: Meter, args: list[Any]) -> Any:
        items = _list(args[0])
        if not items:
            raise EvalError(f"{'min' if sign < 0 else 'max'}(list) called on an empty list")
        meter.charge(len(items))
        best = items[0]
        for item in items[1:]:
            if compare(item, best) * sign > 0:
                best = item
        return best

    return pick


def _index_of(last: bool) -> Callable[[Meter, list[Any]], Any]:
    def find(meter: Meter, args: list[Any]) -> Any:
        target = args[0]
        if isinstance(target, list):
            meter.charge(len(target))
            positions = range(len(target) - 1, -1, -1) if last else range(len(target))
            return next((i for i in positions if equal(target[i], args[1])), -1)
        text, sub = _str(target), _str(args[1])
        _linear(meter, len(text))
        if len(args) > 2:
            start = _int(args[2])
            if start < 0 or start > len(text):
                raise EvalError(f"index out of range: {start}")
            return text.rfind(sub, 0, start + len(sub)) if last else text.find(sub, start)
        return text.rfind(sub) if last else text.find(sub)

    return find


def _slice(meter: Meter, args: list[Any]) -> Any:
    items, start, end = _list(args[0]), _int(args[1]), _int(args[2])
    if start < 0 or end < 0 or start > end or end > len(items):
        raise EvalError(f"cannot slice({start}, {end}), invalid range")
    meter.charge(end - start)
    return items[start:end]


def _flatten(meter: Meter, args: list[Any]) -> Any:
    depth = _int(args[1]) if len(args) > 1 else 1
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

    items = _list(args[0])
    meter.charge(len(items))
    return flat(items, depth)


def _reverse(meter: Meter, args: list[Any]) -> Any:
    value = args[0]
    if isinstance(value, list):
        meter.charge(len(value))
        return value[::-1]
    _linear(meter, len(_str(value)))
    return value[::-1]


def _distinct(meter: Meter, args: list[Any]) -> Any:
    items = _list(args[0])
    meter.charge(len(items) * len(items))
    out: list[Any] = []
    for item in items:
        if not any(equal(item, seen) for seen in out):
            out.append(item)
    return out


def _sort(meter: Meter, args: list[Any]) -> Any:
    items = _list(args[0])
    meter.charge(len(items) * max(1, int(math.log2(len(items) or 1))))
    from functools import cmp_to_key

    return sorted(items, key=cmp_to_key(compare))


# Strings.


def _char_at(meter: Meter, args: list[Any]) -> Any:
    text, index = _str(args[0]), _int(args[1])
    if index < 0 or index > len(text):
        raise EvalError(f"index out of range: {index}")
    return text[index : index + 1]


def _lower(meter: Meter, args: list[Any]) -> Any:
    text = _str(args[0])
    _linear(meter, len(text))
    return "".join(c.lower() if c.isascii() else c for c in text)


def _upper(meter: Meter, args: list[Any]) -> Any:
    text = _str(args[0])
    _linear(meter, len(text))
    return "".join(c.upper() if c.isascii() else c for c in text)


def _replace(meter: Meter, args: list[Any]) -> Any:
    text, old, new = _str(args[0]), _str(args[1]), _str(args[2])
    limit = _int(args[3]) if len(args) > 3 else -1
    _linear(meter, len(text) + len(new))
    return text.replace(old, new, limit)


def _split(meter: Meter, args: list[Any]) -> Any:
    text, sep = _str(args[0]), _str(args[1])
    limit = _int(args[2]) if len(args) > 2 else -1
    _linear(meter, len(text))
    if limit == 0:
        return []
    if sep == "":
        chars = list(text)
        if 0 < limit < len(chars):
            return [*chars[: limit - 1], "".join(chars[limit - 1 :])]
        return chars
    return text.split(sep, limit - 1 if limit > 0 else -1)


def _substring(meter: Meter, args: list[Any]) -> Any:
    text, start = _str(args[0]), _int(args[1])
    end = _int(args[2]) if len(args) > 2 else len(text)
    if start < 0 or start > len(text):
        raise EvalError(f"index out of range: {start}")
    if end < 0 or end > len(text):
        raise EvalError(f"index out of range: {end}")
    if start > end:
        raise EvalError(f"invalid substring range. start: {start}, end: {end}")
    return text[start:end]


def _trim(meter: Meter, args: list[Any]) -> Any:
    text = _str(args[0])
    _linear(meter, len(text))
    return text.strip()


def _join(meter: Meter, args: list[Any]) -> Any:
    items = _list(args[0])
    sep = _str(args[1]) if len(args) > 1 else ""
    parts = [_str(i) for i in items]
    _linear(meter, sum(len(p) for p in parts))
    return sep.join(parts)


def _quote(meter: Meter, args: list[Any]) -> Any:
    text = _str(args[0])
    escapes = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t",
               "\v": "\\v", "\\": "\\\\", '"': '\\"'}  # fmt: skip
    return '"' + "".join(escapes.get(c, c) for c in text) + '"'


_VERB = re.compile(r"%(?:\.(\d+))?([sdfeEbxXo%])")


def _format(meter: Meter, args: list[Any]) -> Any:
    text, values = _str(args[0]), _list(args[1])
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
            return str(_int(value))
        if kind in "fe":
            digits = int(precision) if precision is not None else 6
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise EvalError("no such overload")
            return f"{float(value):.{digits}{kind}}"
        if kind in "xX":
            out = (
                value.hex()
                if isinstance(value, bytes)
                else (value.encode().hex() if isinstance(value, str) else format(_int(value), "x"))
            )
            return out.upper() if kind == "X" else out
        if kind == "o":
            return format(_int(value), "o")
        return format(_int(value), "b")

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


def _find(meter: Meter, args: list[Any]) -> Any:
    text, pattern = _str(args[0]), _str(args[1])
    _linear(meter, len(text))
    match = _regex(pattern).search(text)
    return match.group(0) if match else ""


def _find_all(meter: Meter, args: list[Any]) -> Any:
    text, pattern = _str(args[0]), _str(args[1])
    limit = _int(args[2]) if len(args) > 2 else -1
    _linear(meter, len(text))
    found = [m.group(0) for m in _regex(pattern).finditer(text)]
    return found if limit < 0 else found[:limit]


# URLs (k8s.io/apiserver/pkg/cel/library/urls.go: url.ParseRequestURI).


@dataclass(frozen=True)
class URL:
    """A parsed URL value."""

    parts: urllib.parse.SplitResult
    cel_type = "kubernetes.URL"

    def cel_string(self) -> str:
        return urllib.parse.urlunsplit(self.parts)


_BAD_URI = "invalid URI for request"


def _parse_url(text: str) -> URL:
    parts = urllib.parse.urlsplit(text)
    if not (parts.scheme and (parts.netloc or parts.path)) and not text.startswith("/"):
        raise EvalError(
            f'URL parse error during conversion from string: parse "{text}": {_BAD_URI}'
        )
    if parts.fragment or "#" in text:
        raise EvalError(
            f'URL parse error during conversion from string: parse "{text}": {_BAD_URI}'
        )
    return URL(parts)


def _url(meter: Meter, args: list[Any]) -> Any:
    return _parse_url(_str(args[0]))


def _is_url(meter: Meter, args: list[Any]) -> Any:
    try:
        _parse_url(_str(args[0]))
    except EvalError:
        return False
    return True


def _url_part(get: Callable[[urllib.parse.SplitResult], Any]) -> Callable[[Meter, list[Any]], Any]:
    def part(meter: Meter, args: list[Any]) -> Any:
        if not isinstance(args[0], URL):
            raise EvalError("no such overload")
        return get(args[0].parts)

    return part


def _hostname(parts: urllib.parse.SplitResult) -> str:
    host = parts.netloc.rpartition("@")[2]
    if host.startswith("["):
        return host[1 : host.find("]")]
    return host.rpartition(":")[0] if ":" in host else host


def _port(parts: urllib.parse.SplitResult) -> str:
    host = parts.netloc.rpartition("@")[2]
    if host.startswith("["):
        rest = host[host.find("]") + 1 :]
        return rest[1:] if rest.startswith(":") else ""
    return host.rpartition(":")[2] if ":" in host else ""


def _query(parts: urllib.parse.SplitResult) -> dict[str, list[str]]:
    return urllib.parse.parse_qs(parts.query, keep_blank_values=True)


# Quantities (k8s.io/apimachinery/pkg/api/resource).

_QUANTITY = re.compile(
    r"^([+-]?(?:\d+\.?\d*|\.\d+))(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?\d+)?$"
)
_SUFFIX = {
    "Ki": Decimal(2) ** 10, "Mi": Decimal(2) ** 20, "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40, "Pi": Decimal(2) ** 50, "Ei": Decimal(2) ** 60,
    "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
    "k": Decimal("1e3"), "M": Decimal("1e6"), "G": Decimal("1e9"), "T": Decimal("1e12"),
    "P": Decimal("1e15"), "E": Decimal("1e18"),
}  # fmt: skip


@dataclass(frozen=True)
class Quantity:
    """A Kubernetes resource quantity (``1.5Gi``, ``500m``)."""

    amount: Decimal
    text: str
    cel_type = "kubernetes.Quantity"

    def cel_compare(self, other: Quantity) -> int:
        return (self.amount > other.amount) - (self.amount < other.amount)

    def cel_string(self) -> str:
        return self.text


def parse_quantity(text: str) -> Quantity:
    """Parse a quantity.

    Raises:
        EvalError: when ``text`` is not a quantity.
    """
    match = _QUANTITY.match(text)
    if not match:
        raise EvalError(
            "quantities must match the regular expression "
            "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
        )
    number, suffix = match.group(1), match.group(2) or ""
    try:
        scale = Decimal(10) ** int(suffix[1:]) if suffix[:1] in ("e", "E") else _SUFFIX[suffix]
        return Quantity(Decimal(number) * scale, text)
    except (InvalidOperation, ValueError):
        raise EvalError("unable to parse quantity's suffix") from None


def _quantity(meter: Meter, args: list[Any]) -> Any:
    return parse_quantity(_str(args[0]))


def _is_quantity(meter: Meter, args: list[Any]) -> Any:
    try:
        parse_quantity(_str(args[0]))
    except EvalError:
        return False
    return True


def _q(value: Any) -> Quantity:
    if not isinstance(value, Quantity):
        raise EvalError("no such overload")
    return value


def _q_operand(value: Any) -> Decimal:
    if isinstance(value, Quantity):
        return value.amount
    return Decimal(_int(value))


def _q_arith(sign: int) -> Callable[[Meter, list[Any]], Any]:
    def arith(meter: Meter, args: list[Any]) -> Any:
        amount = _q(args[0]).amount + sign * _q_operand(args[1])
        return Quantity(amount, _format_decimal(amount))

    return arith


def _format_decimal(amount: Decimal) -> str:
    if amount == amount.to_integral_value():
        return str(int(amount))
    return format(amount.normalize(), "f")


def _as_integer(meter: Meter, args: list[Any]) -> Any:
    amount = _q(args[0]).amount
    if amount != amount.to_integral_value() or not INT64_MIN <= amount <= INT64_MAX:
        raise EvalError("cannot convert value to integer")
    return int(amount)


def _is_integer(meter: Meter, args: list[Any]) -> Any:
    amount = _q(args[0]).amount
    return amount == amount.to_integral_value() and INT64_MIN <= amount <= INT64_MAX


def _q_compare(test: Callable[[int], Any]) -> Callable[[Meter, list[Any]], Any]:
    def cmp(meter: Meter, args: list[Any]) -> Any:
        return test(_q(args[0]).cel_compare(_q(args[1])))

    return cmp


# Optionals.


def _opt_value(meter: Meter, args: list[Any]) -> Any:
    opt = args[0]
    if not isinstance(opt, Optional):
        raise EvalError("no such overload")
    if not opt.present:
        raise EvalError("optional.none() dereference")
    return opt.value


def _opt(value: Any) -> Optional:
    if not isinstance(value, Optional):
        raise EvalError("no such overload")
    return value


def _zero(value: Any) -> bool:
    return value in (None, False, 0, 0.0, "", b"") or value == [] or value == {}


# Sets.


def _set_contains(meter: Meter, args: list[Any]) -> Any:
    a, b = _list(args[0]), _list(args[1])
    meter.charge(len(a) * len(b))
    return all(any(equal(x, y) for y in a) for x in b)


def _set_equivalent(meter: Meter, args: list[Any]) -> Any:
    return _set_contains(meter, args) and _set_contains(meter, [args[1], args[0]])


def _set_intersects(meter: Meter, args: list[Any]) -> Any:
    a, b = _list(args[0]), _list(args[1])
    meter.charge(len(a) * len(b))
    return any(any(equal(x, y) for y in a) for x in b)


STR = ("string",)
LIST = ("list",)
NUM = ("int", "uint", "double")
TIME = ("timestamp",)
TIME_OR_DURATION = ("timestamp", "duration")
ANY = ("*",)


def _same_elem(types: list[Type]) -> Type:
    return _elem(types)


def _optional_of(types: list[Type]) -> Type:
    return Type("optional", types[0] if types else DYN)


def _optional_inner(types: list[Type]) -> Type:
    return types[0].elem or DYN if types and types[0].kind == "optional" else DYN


FUNCTIONS: dict[str, Function] = {
    "size": Function(_size, sig(INT, (("string", "bytes", "list", "map"),)), glob=True),
    "contains": Function(_contains, sig(BOOL, (STR, STR)), _size_cost()),
    "startsWith": Function(_starts, sig(BOOL, (STR, STR)), _size_cost(1)),
    "endsWith": Function(_ends, sig(BOOL, (STR, STR)), _size_cost(1)),
    "matches": Function(_matches, sig(BOOL, (STR, STR)), _size_cost(), glob=True),
    "int": Function(_to_int, sig(INT, (ANY,)), member=False, glob=True),
    "uint": Function(_to_uint, sig(UINT, (ANY,)), member=False, glob=True),
    "double": Function(_to_double, sig(DOUBLE, (ANY,)), member=False, glob=True),
    "string": Function(_to_string, sig(STRING, (ANY,)), member=False, glob=True),
    "bytes": Function(_to_bytes, sig(Type("bytes"), (ANY,)), member=False, glob=True),
    "bool": Function(_to_bool, sig(BOOL, (ANY,)), member=False, glob=True),
    "duration": Function(_to_duration, sig(DURATION, (ANY,)), member=False, glob=True),
    "timestamp": Function(_to_timestamp, sig(TIMESTAMP, (ANY,)), member=False, glob=True),
    "type": Function(_type_of, sig(TYPE, (ANY,)), member=False, glob=True),
    "getFullYear": Function(_time_getter(lambda t: t.year, None), sig(INT, (TIME,), (TIME, STR))),
    "getMonth": Function(_time_getter(lambda t: t.month - 1, None), sig(INT, (TIME,), (TIME, STR))),
    "getDate": Function(_time_getter(lambda t: t.day, None), sig(INT, (TIME,), (TIME, STR))),
    "getDayOfMonth": Function(
        _time_getter(lambda t: t.day - 1, None), sig(INT, (TIME,), (TIME, STR))
    ),
    "getDayOfWeek": Function(
        _time_getter(lambda t: (t.weekday() + 1) % 7, None), sig(INT, (TIME,), (TIME, STR))
    ),
    "getDayOfYear": Function(
        _time_getter(lambda t: t.timetuple().tm_yday - 1, None), sig(INT, (TIME,), (TIME, STR))
    ),
    "getHours": Function(
        _time_getter(lambda t: t.hour, lambda d: _whole(d, 3600)),
        sig(INT, (TIME_OR_DURATION,), (TIME, STR)),
    ),
    "getMinutes": Function(
        _time_getter(lambda t: t.minute, lambda d: _whole(d, 60)),
        sig(INT, (TIME_OR_DURATION,), (TIME, STR)),
    ),
    "getSeconds": Function(
        _time_getter(lambda t: t.second, lambda d: _whole(d, 1)),
        sig(INT, (TIME_OR_DURATION,), (TIME, STR)),
    ),
    "getMilliseconds": Function(
        _time_getter(lambda t: t.microsecond // 1000, lambda d: _whole(d, 1e-3)),
        sig(INT, (TIME_OR_DURATION,), (TIME, STR)),
    ),
    # Kubernetes list library.
    "isSorted": Function(_is_sorted, sig(BOOL, (LIST,)), _size_cost()),
    "sum": Function(_sum, sig(_same_elem, (LIST,)), _size_cost()),
    "min": Function(_extreme(-1), sig(_same_elem, (LIST,)), _size_cost()),
    "max": Function(_extreme(1), sig(_same_elem, (LIST,)), _size_cost()),
    "indexOf": Function(
        _index_of(False), sig(INT, (STR, STR), (STR, STR, ("int",)), (LIST, ANY)), _size_cost()
    ),
    "lastIndexOf": Function(
        _index_of(True), sig(INT, (STR, STR), (STR, STR, ("int",)), (LIST, ANY)), _size_cost()
    ),
    "slice": Function(_slice, sig(lambda t: t[0], (LIST, ("int",), ("int",))), _size_cost()),
    "flatten": Function(_flatten, sig(list_type(DYN), (LIST,), (LIST, ("int",))), _size_cost()),
    "reverse": Function(_reverse, sig(lambda t: t[0], (LIST,), (STR,)), _size_cost()),
    "distinct": Function(_distinct, sig(lambda t: t[0], (LIST,)), _size_cost()),
    "sort": Function(_sort, sig(lambda t: t[0], (LIST,)), _size_cost()),
    # Kubernetes string library (cel-go ext strings).
    "charAt": Function(_char_at, sig(STRING, (STR, ("int",)))),
    "lowerAscii": Function(_lower, sig(lambda t: t[0], (STR,)), _size_cost()),
    "upperAscii": Function(_upper, sig(lambda t: t[0], (STR,)), _size_cost()),
    "replace": Function(
        _replace, sig(STRING, (STR, STR, STR), (STR, STR, STR, ("int",))), _size_cost()
    ),
    "split": Function(
        _split, sig(list_type(STRING), (STR, STR), (STR, STR, ("int",))), _size_cost()
    ),
    "substring": Function(
        _substring, sig(lambda t: t[0], (STR, ("int",)), (STR, ("int",), ("int",)))
    ),
    "trim": Function(_trim, sig(lambda t: t[0], (STR,)), _size_cost()),
    "join": Function(_join, sig(STRING, (LIST,), (LIST, STR)), _size_cost()),
    "format": Function(_format, sig(STRING, (STR, LIST)), _size_cost()),
    "strings.quote": Function(_quote, sig(STRING, (STR,)), _size_cost(), member=False, glob=True),
    # Kubernetes regex library.
    "find": Function(_find, sig(STRING, (STR, STR)), _size_cost()),
    "findAll": Function(
        _find_all, sig(list_type(STRING), (STR, STR), (STR, STR, ("int",))), _size_cost()
    ),
    # Kubernetes URL library.
    "url": Function(_url, sig(URL_TYPE, (STR,)), _size_cost(), member=False, glob=True),
    "isURL": Function(_is_url, sig(BOOL, (STR,)), _size_cost(), member=False, glob=True),
    "getScheme": Function(_url_part(lambda p: p.scheme), sig(STRING, (("url",),))),
    "getHost": Function(_url_part(lambda p: p.netloc.rpartition("@")[2]), sig(STRING, (("url",),))),
    "getHostname": Function(_url_part(_hostname), sig(STRING, (("url",),))),
    "getPort": Function(_url_part(_port), sig(STRING, (("url",),))),
    "getEscapedPath": Function(
        _url_part(
            lambda p: urllib.parse.quote(urllib.parse.unquote(p.path), safe="/:@!$&'()*+,;=")
        ),
        sig(STRING, (("url",),)),
    ),
    "getQuery": Function(_url_part(_query), sig(map_type(list_type(STRING)), (("url",),))),
    # Kubernetes quantity library.
    "quantity": Function(_quantity, sig(QUANTITY, (STR,)), member=False, glob=True),
    "isQuantity": Function(_is_quantity, sig(BOOL, (STR,)), member=False, glob=True),
    "sign": Function(
        lambda m, a: _q(a[0]).cel_compare(Quantity(Decimal(0), "0")), sig(INT, (("quantity",),))
    ),
    "isInteger": Function(_is_integer, sig(BOOL, (("quantity",),))),
    "asInteger": Function(_as_integer, sig(INT, (("quantity",),))),
    "asApproximateFloat": Function(
        lambda m, a: float(_q(a[0]).amount), sig(DOUBLE, (("quantity",),))
    ),
    "add": Function(_q_arith(1), sig(QUANTITY, (("quantity",), ("quantity", "int")))),
    "sub": Function(_q_arith(-1), sig(QUANTITY, (("quantity",), ("quantity", "int")))),
    "isGreaterThan": Function(
        _q_compare(lambda c: c > 0), sig(BOOL, (("quantity",), ("quantity",)))
    ),
    "isLessThan": Function(_q_compare(lambda c: c < 0), sig(BOOL, (("quantity",), ("quantity",)))),
    "compareTo": Function(_q_compare(lambda c: c), sig(INT, (("quantity",), ("quantity",)))),
    # Optionals.
    "optional.of": Function(
        lambda m, a: Optional(a[0], True), sig(_optional_of, (ANY,)), member=False, glob=True
    ),
    "optional.ofNonZeroValue": Function(
        lambda m, a: Optional(a[0], not _zero(a[0])),
        sig(_optional_of, (ANY,)),
        member=False,
        glob=True,
    ),
    "optional.none": Function(
        lambda m, a: Optional(), sig(Type("optional", DYN), ()), member=False, glob=True
    ),
    "hasValue": Function(lambda m, a: _opt(a[0]).present, sig(BOOL, (("optional",),))),
    "value": Function(_opt_value, sig(_optional_inner, (("optional",),))),
    "orValue": Function(
        lambda m, a: _opt(a[0]).value if _opt(a[0]).present else a[1],
        sig(_optional_inner, (("optional",), ANY)),
    ),
    "or": Function(
        lambda m, a: a[0] if _opt(a[0]).present else _opt(a[1]),
        sig(lambda t: t[0], (("optional",), ("optional",))),
    ),
    # Sets.
    "sets.contains": Function(
        _set_contains, sig(BOOL, (LIST, LIST)), _size_cost(), member=False, glob=True
    ),
    "sets.equivalent": Function(
        _set_equivalent, sig(BOOL, (LIST, LIST)), _size_cost(), member=False, glob=True
    ),
    "sets.intersects": Function(
        _set_intersects, sig(BOOL, (LIST, LIST)), _size_cost(), member=False, glob=True
    ),
}
"""Every function rules may call, by name (member calls take the receiver as first argument)."""
