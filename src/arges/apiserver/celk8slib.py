"""Kubernetes' CEL value libraries: URLs, quantities, optionals and sets.

``k8s.io/apiserver/pkg/cel/library`` (urls.go, quantity.go, sets.go) and cel-go's optional
types, implemented for :data:`arges.apiserver.celext.FUNCTIONS`.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from arges.apiserver.celstdlib import as_int, as_list, as_str
from arges.apiserver.celvalues import (
    INT64_MAX,
    INT64_MIN,
    EvalError,
    Meter,
    Optional,
    equal,
)

# URLs (k8s.io/apiserver/pkg/cel/library/urls.go: url.ParseRequestURI).


@dataclass(frozen=True)
class URL:
    """A parsed URL value."""

    parts: urllib.parse.SplitResult
    cel_type = "kubernetes.URL"

    def cel_string(self) -> str:
        """The URL as text (``string(url)``)."""
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


def fn_url(meter: Meter, args: list[Any]) -> Any:
    """CEL ``url``."""
    return _parse_url(as_str(args[0]))


def fn_is_url(meter: Meter, args: list[Any]) -> Any:
    """CEL ``isURL``."""
    try:
        _parse_url(as_str(args[0]))
    except EvalError:
        return False
    return True


def fn_url_part(
    get: Callable[[urllib.parse.SplitResult], Any],
) -> Callable[[Meter, list[Any]], Any]:
    """A URL accessor from a function of its parts."""

    def part(meter: Meter, args: list[Any]) -> Any:
        if not isinstance(args[0], URL):
            raise EvalError("no such overload")
        return get(args[0].parts)

    return part


def fn_hostname(parts: urllib.parse.SplitResult) -> str:
    """The host of a URL without port or IPv6 brackets."""
    host = parts.netloc.rpartition("@")[2]
    if host.startswith("["):
        return host[1 : host.find("]")]
    return host.rpartition(":")[0] if ":" in host else host


def fn_port(parts: urllib.parse.SplitResult) -> str:
    """The port of a URL, or ""."""
    host = parts.netloc.rpartition("@")[2]
    if host.startswith("["):
        rest = host[host.find("]") + 1 :]
        return rest[1:] if rest.startswith(":") else ""
    return host.rpartition(":")[2] if ":" in host else ""


def fn_query(parts: urllib.parse.SplitResult) -> dict[str, list[str]]:
    """The query of a URL as a map of lists."""
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
        """-1, 0 or 1 as this quantity is less than, equal to or more than ``other``."""
        return (self.amount > other.amount) - (self.amount < other.amount)

    def cel_string(self) -> str:
        """The quantity as it was written."""
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


def fn_quantity(meter: Meter, args: list[Any]) -> Any:
    """CEL ``quantity``."""
    return parse_quantity(as_str(args[0]))


def fn_is_quantity(meter: Meter, args: list[Any]) -> Any:
    """CEL ``isQuantity``."""
    try:
        parse_quantity(as_str(args[0]))
    except EvalError:
        return False
    return True


def fn_q(value: Any) -> Quantity:
    """The argument as a quantity, else ``no such overload``."""
    if not isinstance(value, Quantity):
        raise EvalError("no such overload")
    return value


def _q_operand(value: Any) -> Decimal:
    if isinstance(value, Quantity):
        return value.amount
    return Decimal(as_int(value))


def fn_q_arith(sign: int) -> Callable[[Meter, list[Any]], Any]:
    """``add`` (sign 1) or ``sub`` (sign -1) of quantities or ints."""

    def arith(meter: Meter, args: list[Any]) -> Any:
        amount = fn_q(args[0]).amount + sign * _q_operand(args[1])
        return Quantity(amount, _format_decimal(amount))

    return arith


def _format_decimal(amount: Decimal) -> str:
    if amount == amount.to_integral_value():
        return str(int(amount))
    return format(amount.normalize(), "f")


def fn_as_integer(meter: Meter, args: list[Any]) -> Any:
    """CEL ``asInteger``."""
    amount = fn_q(args[0]).amount
    if amount != amount.to_integral_value() or not INT64_MIN <= amount <= INT64_MAX:
        raise EvalError("cannot convert value to integer")
    return int(amount)


def fn_is_integer(meter: Meter, args: list[Any]) -> Any:
    """CEL ``isInteger``."""
    amount = fn_q(args[0]).amount
    return amount == amount.to_integral_value() and INT64_MIN <= amount <= INT64_MAX


def fn_q_compare(test: Callable[[int], Any]) -> Callable[[Meter, list[Any]], Any]:
    """A quantity comparison from a function of their ordering."""

    def cmp(meter: Meter, args: list[Any]) -> Any:
        return test(fn_q(args[0]).cel_compare(fn_q(args[1])))

    return cmp


# Optionals.


def fn_opt_value(meter: Meter, args: list[Any]) -> Any:
    """CEL ``value``."""
    opt = args[0]
    if not isinstance(opt, Optional):
        raise EvalError("no such overload")
    if not opt.present:
        raise EvalError("optional.none() dereference")
    return opt.value


def fn_opt(value: Any) -> Optional:
    """The argument as an optional, else ``no such overload``."""
    if not isinstance(value, Optional):
        raise EvalError("no such overload")
    return value


def fn_zero(value: Any) -> bool:
    """Whether a value is its type's zero value (``optional.ofNonZeroValue``)."""
    return value in (None, False, 0, 0.0, "", b"") or value == [] or value == {}


# Sets.


def fn_set_contains(meter: Meter, args: list[Any]) -> Any:
    """CEL ``sets.contains``."""
    a, b = as_list(args[0]), as_list(args[1])
    meter.charge(len(a) * len(b))
    return all(any(equal(x, y) for y in a) for x in b)


def fn_set_equivalent(meter: Meter, args: list[Any]) -> Any:
    """CEL ``sets.equivalent``."""
    return fn_set_contains(meter, args) and fn_set_contains(meter, [args[1], args[0]])


def fn_set_intersects(meter: Meter, args: list[Any]) -> Any:
    """CEL ``sets.intersects``."""
    a, b = as_list(args[0]), as_list(args[1])
    meter.charge(len(a) * len(b))
    return any(any(equal(x, y) for y in a) for x in b)
