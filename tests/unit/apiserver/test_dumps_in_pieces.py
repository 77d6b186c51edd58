"""The piecewise encoder writes exactly orjson's bytes, and lets other threads run."""

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arges.apiserver import codec
from tests.unit.apiserver.test_yieldingjson import ticks_during

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
# Wide containers too: those of PIECE_ITEMS items or more are taken apart at any level.
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=codec.PIECE_ITEMS + 4)
        | st.dictionaries(st.text(), inner, max_size=codec.PIECE_ITEMS + 4)
    ),
    max_leaves=200,
)


@settings(max_examples=800, deadline=None)
@given(values)
def test_the_same_bytes_as_orjson(value: Any) -> None:
    assert codec.dumps_in_pieces(value) == codec.dumps(value)


def test_what_orjson_makes_null_it_makes_null() -> None:
    value = {"a": [float("nan"), float("inf")] * 10}
    assert (
        codec.dumps_in_pieces(value) == codec.dumps(value) == b'{"a":[' + b"null," * 19 + b"null]}"
    )


@pytest.mark.parametrize(
    "value",
    [
        {"a": {"b": {"c": {"d": {1: "a key that is no string"}}}}},
        {"a": [{"b": object()}] * 20},
        {"a": ["\ud800"] * 20},
        {"a": {"b": {"c": 2**70}}},
    ],
)
def test_what_orjson_refuses_it_refuses(value: Any) -> None:
    with pytest.raises(orjson.JSONEncodeError) as whole:
        codec.dumps(value)
    with pytest.raises(orjson.JSONEncodeError) as pieces:
        codec.dumps_in_pieces(value)
    assert str(pieces.value) == str(whole.value)


def test_a_large_object_lets_other_threads_run_while_it_is_encoded() -> None:
    obj = {"spec": {"items": [{"name": f"disk-{i}", "size": i} for i in range(100_000)]}}
    assert len(codec.dumps(obj)) > codec.YIELDING_BYTES
    # One orjson call holds the GIL from start to end: the ticker waits it out.
    held, yielded = ticks_during(codec.dumps, obj), ticks_during(codec.dumps_in_pieces, obj)
    assert yielded > 4 * held + 10, (held, yielded)
