"""Kubernetes' CEL string and regex libraries: charAt, lowerAscii, upperAscii, replace,
split, substring, trim, join, quote, format; find and findAll.

Same contract as :mod:`~arges.apiserver.celstdlib`: meter and arguments in, cel-go's errors
and costs.
"""

from __future__ import annotations

import re
from typing import Any

from arges.apiserver.celstdlib import (
    as_int,
    as_list,
    as_str,
    charge_linear,
    compiled_regex,
    format_value,
)
from arges.apiserver.celvalues import (
    EvalError,
    Meter,
)


def fn_char_at(meter: Meter, args: list[Any]) -> Any:
    """CEL ``charAt``."""
    text, index = as_str(args[0]), as_int(args[1])
    if index < 0 or index > len(text):
        raise EvalError(f"index out of range: {index}")
    return text[index : index + 1]


def fn_lower(meter: Meter, args: list[Any]) -> Any:
    """CEL ``lowerAscii``."""
    text = as_str(args[0])
    charge_linear(meter, len(text))
    return "".join(c.lower() if c.isascii() else c for c in text)


def fn_upper(meter: Meter, args: list[Any]) -> Any:
    """CEL ``upperAscii``."""
    text = as_str(args[0])
    charge_linear(meter, len(text))
    return "".join(c.upper() if c.isascii() else c for c in text)


def fn_replace(meter: Meter, args: list[Any]) -> Any:
    """CEL ``replace``."""
    text, old, new = as_str(args[0]), as_str(args[1]), as_str(args[2])
    limit = as_int(args[3]) if len(args) > 3 else -1
    charge_linear(meter, len(text) + len(new))
    return text.replace(old, new, limit)


def fn_split(meter: Meter, args: list[Any]) -> Any:
    """CEL ``split``."""
    text, sep = as_str(args[0]), as_str(args[1])
    limit = as_int(args[2]) if len(args) > 2 else -1
    charge_linear(meter, len(text))
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
    charge_linear(meter, len(text))
    return text.strip()


def fn_join(meter: Meter, args: list[Any]) -> Any:
    """CEL ``join``."""
    items = as_list(args[0])
    sep = as_str(args[1]) if len(args) > 1 else ""
    parts = [as_str(i) for i in items]
    charge_linear(meter, sum(len(p) for p in parts))
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
    charge_linear(meter, len(text))
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


def fn_find(meter: Meter, args: list[Any]) -> Any:
    """CEL ``find``."""
    text, pattern = as_str(args[0]), as_str(args[1])
    charge_linear(meter, len(text))
    match = compiled_regex(pattern).search(text)
    return match.group(0) if match else ""


def fn_find_all(meter: Meter, args: list[Any]) -> Any:
    """CEL ``findAll``."""
    text, pattern = as_str(args[0]), as_str(args[1])
    limit = as_int(args[2]) if len(args) > 2 else -1
    charge_linear(meter, len(text))
    found = [m.group(0) for m in compiled_regex(pattern).finditer(text)]
    return found if limit < 0 else found[:limit]
