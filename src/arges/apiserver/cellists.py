"""Kubernetes' CEL list library: isSorted, sum, min, max, indexOf, lastIndexOf, slice, and
the ext library's flatten, reverse, distinct and sort.

Same contract as :mod:`~arges.apiserver.celstdlib`: meter and arguments in, cel-go's errors
and costs.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
from collections.abc import Callable
from typing import Any

from arges.apiserver.celstdlib import as_int, as_list, as_str, charge_linear
from arges.apiserver.celvalues import (
    EvalError,
    Meter,
    check_int,
    compare,
    equal,
)


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
        charge_linear(meter, len(text))
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
    charge_linear(meter, len(as_str(value)))
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
