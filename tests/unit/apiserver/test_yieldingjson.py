"""The GIL-yielding decoder accepts, refuses and returns exactly what orjson does."""

import json
import threading
import time
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arges.apiserver import codec, yieldingjson
from arges.apiserver.errors import BadRequest


def outcome(decode: Any, data: bytes) -> tuple[str, bytes]:
    """("ok", the value re-encoded: 1 and 1.0 differ) or ("refused", b"")."""
    try:
        value = decode(data)
    except (orjson.JSONDecodeError, yieldingjson.InvalidJSON, RecursionError):
        return ("refused", b"")
    return ("ok", orjson.dumps(value))


def same_as_orjson(data: bytes) -> None:
    assert outcome(yieldingjson.loads, data) == outcome(orjson.loads, data), data[:200]


@pytest.mark.parametrize(
    "data",
    [
        b'{"a": 1, "a": 2, "b": [1, 2.5, -0, -0.0, 1E2, 1e-400, true, false, null]}',
        b"18446744073709551615",  # the largest unsigned 64-bit integer: an int
        b"18446744073709551616",  # one more: a float, as orjson reads it
        b"-9223372036854775808",
        b"-9223372036854775809",
        b"1" * 400,  # a double overflows
        b"1" * 5000,  # past int()'s digit limit
        b"1e999",
        b"NaN",
        b"-Infinity",
        b'"\\ud800"',  # a lone high surrogate
        b'"\\udc00x"',  # a lone low surrogate
        b'{"\\ud800": 1}',  # ... as a key
        b'"\\ud83d\\ude00"',  # a pair: one character
        b'"\\\\ud800"',  # an escaped backslash, then text
        b"\xef\xbb\xbf{}",  # a byte order mark
        b'"\xed\xa0\x80"',  # a surrogate as UTF-8 bytes
        b'"\xff"',
        b'"a\x01b"',  # a raw control character
        b"[1,]",
        b"{} {}",
        b" \t\r\n[]\n",
        b"\x0c[]",  # form feed is not JSON whitespace
        b"01",
        "[1\u0661]".encode(),  # an Arabic-Indic digit after an ASCII one
        "1.5\u0661".encode(),
        "1e\u0661".encode(),
        b"-",
        b"[" * 50 + b"]" * 50,
        b"",
    ],
)
def test_edges(data: bytes) -> None:
    same_as_orjson(data)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=30,
)


@settings(max_examples=400, deadline=None)
@given(json_values, st.booleans())
def test_any_json_document(value: Any, ascii_only: bool) -> None:
    same_as_orjson(json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass"))


TOKENS = [
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b'"',
    b"\\",
    b"\\u",
    b"d800",
    b"dc00",
    b"NaN",
    b"1e999",
    b"-0",
    b"0",
    b"1.5",
    b"e5",
    b" ",
    b"\x00",
    b"\xff",
    b"true",
    b"nul",
    "\u0661".encode(),  # Unicode digits, which Python's \d matches and JSON's do not
    "\uff11".encode(),
]


@settings(max_examples=600, deadline=None)
@given(
    json_values, st.lists(st.tuples(st.integers(0, 10_000), st.sampled_from(TOKENS)), max_size=4)
)
def test_damaged_documents(value: Any, damage: list[tuple[int, bytes]]) -> None:
    data = json.dumps(value).encode()
    for at, token in damage:
        at %= len(data) + 1
        data = data[:at] + token + data[at:]
    same_as_orjson(data)


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="0123456789.eE+- \u0661\uff11\u00b2", min_size=1, max_size=12))
def test_anything_spelt_like_a_number(text: str) -> None:
    same_as_orjson(text.encode())
    same_as_orjson(f"[{text}]".encode())


def ticks_during(decode: Any, body: bytes) -> int:
    """How often a thread that wakes every millisecond ran while ``decode(body)`` did."""
    ticks = 0
    done = threading.Event()

    def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            time.sleep(0.001)
            ticks += 1

    thread = threading.Thread(target=ticker)
    thread.start()
    try:
        time.sleep(0.01)
        before = ticks
        decode(body)
        return ticks - before
    finally:
        done.set()
        thread.join()


def test_a_large_body_lets_other_threads_run_while_it_decodes() -> None:
    body = orjson.dumps({"items": [{"name": f"disk-{i}", "size": i} for i in range(100_000)]})
    assert len(body) > codec.YIELDING_BYTES
    # orjson decodes in one C call holding the GIL: the ticker waits it out (a few ticks at
    # its edges). The yielding decoder hands the GIL over every switch interval (5 ms).
    held, yielded = ticks_during(orjson.loads, body), ticks_during(yieldingjson.loads, body)
    assert yielded > 4 * held + 10, (held, yielded)


def test_nesting_past_recursion_is_the_depth_refusal() -> None:
    body = b"[" * 200_000 + b"]" * 200_000
    with pytest.raises(BadRequest, match="exceeded max depth"):
        codec.decode_body(body, "application/json", kind="Server")
