"""Request bodies decode to JSON-ready values, bounded in depth and alias expansion (#23)."""

from __future__ import annotations

import pytest

from arges.apiserver import codec
from arges.apiserver.errors import BadRequest, RequestTooLarge

YAML = "application/yaml"


def test_yaml_only_values_become_what_yaml_to_json_makes_of_them() -> None:
    body = b"2: two\ntrue: yes\nnull: x\nwhen: 2024-01-02\nset: !!set {a, b}\nbin: !!binary aGk=\n"
    assert codec.decode_body(body, YAML) == {
        "2": "two",
        "true": True,
        "null": "x",
        "when": "2024-01-02",
        "set": {"a": None, "b": None},
        "bin": "aGk=",
    }
    codec.dumps(codec.decode_body(body, YAML))


def test_an_anchor_that_contains_itself_is_refused() -> None:
    with pytest.raises(BadRequest, match="anchor contains itself"):
        codec.decode_body(b"a: &x {b: *x}\n", YAML)


@pytest.mark.parametrize("ctype", ["application/json", YAML])
def test_nesting_is_bounded(ctype: str) -> None:
    ok = b"[" * codec.MAX_DEPTH + b"]" * codec.MAX_DEPTH
    assert codec.depth(codec.decode_body(ok, ctype)) == codec.MAX_DEPTH
    deep = b"[" + ok + b"]"
    with pytest.raises(BadRequest, match=f"exceeded max depth of {codec.MAX_DEPTH}"):
        codec.decode_body(deep, ctype, kind="Widget")


def test_aliasing_is_bounded_as_go_yaml_bounds_it() -> None:
    # 1,000 references to a 10-item list: 99% of the nodes come from aliases (allowed up to
    # 99% below 400,000 nodes); the same with a 2-level fan-out is not.
    fine = b"a: &a [0,1,2,3,4,5,6,7,8,9]\nb: [" + b",".join([b"*a"] * 1000) + b"]\n"
    assert len(codec.decode_body(fine, YAML)["b"]) == 1000
    bomb = b"a: &a [0,1,2,3,4,5,6,7,8,9]\nb: &b [" + b",".join([b"*a"] * 100) + b"]\n"
    bomb += b"c: [" + b",".join([b"*b"] * 100) + b"]\n"
    with pytest.raises(BadRequest, match="document contains excessive aliasing"):
        codec.decode_body(bomb, YAML, kind="Widget")


def test_the_expanded_size_of_a_yaml_document_is_bounded() -> None:
    body = b"a: &a " + b"x" * 1000 + b"\nb: [" + b",".join([b"*a"] * 20) + b"]\n"
    assert codec.decode_body(body, YAML, expanded_limit=30_000)
    with pytest.raises(RequestTooLarge):
        codec.decode_body(body, YAML, expanded_limit=10_000)
