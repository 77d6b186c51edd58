"""JSON decoding that lets other threads run: for large request bodies, off the event loop.

A request body larger than a few hundred KiB is decoded on a worker thread so the event loop
keeps serving. With orjson that does not help: orjson decodes a 3 MiB body in one C call
that holds the GIL for about 15 ms, and the event loop, on the other thread, waits that long
for it (``benchmarks/large_bodies.py``: ``/readyz`` p50 12-17 ms with such bodies in
flight). The standard library's pure-Python scanner (``json.scanner.py_make_scanner``)
decodes in Python bytecode, so the interpreter hands the GIL to a waiting thread every
switch interval (0.1 ms while a body decodes, see :mod:`arges.apiserver.http.params`); it
costs about eight times orjson's CPU, spent on a thread that holds no one up.

:func:`loads` accepts and refuses exactly what ``orjson.loads`` does and returns the same
values (a property test holds it to that): UTF-8 only, no byte order mark, no ``NaN`` or
``Infinity``, no lone surrogate escapes, numbers that overflow a double refused, integers
outside the 64-bit range (-2^63 to 2^64-1) read as floats.
"""

from __future__ import annotations

import json
import json.scanner
import math
import re
from typing import Any

from arges.errors import ArgesError

_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
"""A ``\\uD800``-``\\uDFFF`` escape: the body may hold a lone surrogate, which orjson refuses."""

_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1


class InvalidJSON(ArgesError, ValueError):
    """The bytes are not JSON orjson would accept; the message says why."""


def loads(data: bytes) -> Any:
    """Decode ``data`` as ``orjson.loads`` would, in Python bytecode (see the module docstring).

    Raises:
        InvalidJSON: what ``orjson.loads`` refuses.
        RecursionError: nesting deeper than Python's recursion allows (a few hundred
            levels): the caller's depth limit is far below that.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidJSON(f"str is not valid UTF-8: {exc.reason}") from exc
    decoder = json.JSONDecoder(
        parse_float=_float, parse_int=_int, parse_constant=_constant, strict=True
    )
    # One scanner per call: its key memo is not meant to be shared between threads.
    decoder.scan_once = json.scanner.py_make_scanner(decoder)  # type: ignore[attr-defined]
    try:
        value = decoder.decode(text)
    except json.JSONDecodeError as exc:
        raise InvalidJSON(str(exc)) from exc
    if _SURROGATE_ESCAPE.search(data) and _has_lone_surrogate(value):
        raise InvalidJSON("no low surrogate in string")
    return value


def _ascii_number(text: str) -> None:
    # The scanner's number pattern takes \d for any Unicode digit ("1\u0661" would be 11).
    if not text.isascii():
        raise InvalidJSON(f"invalid number: {text!r}")


def _float(text: str) -> float:
    _ascii_number(text)
    value = float(text)
    if math.isinf(value):
        raise InvalidJSON("number is infinity when parsed as double")
    return value


def _int(text: str) -> int | float:
    _ascii_number(text)
    try:
        value = int(text)
    except ValueError as exc:  # past int()'s digit limit: a double's range too
        raise InvalidJSON("number is infinity when parsed as double") from exc
    return value if _INT_MIN <= value <= _INT_MAX else _float(text)


def _constant(text: str) -> Any:
    raise InvalidJSON(f"{text} is not valid JSON")


def _has_lone_surrogate(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if not _encodes(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
