import pytest

from arges.apiserver.codec import depth
from arges.apiserver.errors import BadRequest, Invalid, UnsupportedMediaType
from arges.apiserver.patch import (
    JSON_PATCH,
    MERGE_PATCH,
    OBJECT_META_PATCH,
    STRATEGIC_MERGE_PATCH,
    apply_patch,
    merge_patch,
    strategic_merge_patch,
)

# RFC 7386 Appendix A, every example.
RFC7386 = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("target", "patch", "result"), RFC7386)
def test_merge_patch_rfc7386_examples(target: object, patch: object, result: object) -> None:
    assert merge_patch(target, patch) == result


def test_merge_patch_does_not_mutate_its_inputs() -> None:
    target = {"a": {"b": 1}}
    merge_patch(target, {"a": {"c": 2}})
    assert target == {"a": {"b": 1}}


def _apply(content_type: str, original: dict, patch: object, strategic=OBJECT_META_PATCH) -> dict:
    return apply_patch(
        content_type, original, patch, strategic=strategic, kind="Thing", group="g", name="n"
    )


def test_json_patch_operations_and_failures() -> None:
    doc = {"spec": {"tags": ["a"]}}
    out = _apply(JSON_PATCH, doc, [{"op": "add", "path": "/spec/tags/-", "value": "b"}])
    assert out == {"spec": {"tags": ["a", "b"]}}
    with pytest.raises(Invalid) as err:
        _apply(JSON_PATCH, doc, [{"op": "remove", "path": "/spec/missing"}])
    assert err.value.code == 422
    with pytest.raises(Invalid):
        _apply(JSON_PATCH, doc, [{"op": "test", "path": "/spec/tags/0", "value": "z"}])
    with pytest.raises(BadRequest):
        _apply(JSON_PATCH, doc, {"op": "add"})
    with pytest.raises(BadRequest):
        _apply(JSON_PATCH, doc, [{"op": "frobnicate", "path": "/x"}])


def test_strategic_merge_is_refused_where_unsupported() -> None:
    with pytest.raises(UnsupportedMediaType) as err:
        _apply(STRATEGIC_MERGE_PATCH, {}, {}, strategic=None)
    assert err.value.code == 415
    assert err.value.message == (
        "the body of the request was in an unknown format - accepted media types include: "
        "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
    )


STRATEGIC = [
    # maps merge, null deletes
    (
        {"data": {"a": "1", "b": "2"}},
        {"data": {"b": None, "c": "3"}},
        {"data": {"a": "1", "c": "3"}},
    ),
    # $patch: replace replaces the map
    ({"data": {"a": "1"}}, {"data": {"$patch": "replace", "z": "9"}}, {"data": {"z": "9"}}),
    # $patch: delete removes the map
    ({"data": {"a": "1"}, "x": 1}, {"data": {"$patch": "delete"}}, {"x": 1}),
    # $retainKeys keeps only the listed keys
    (
        {"s": {"a": 1, "b": 2}},
        {"s": {"$retainKeys": ["b", "c"], "c": 3}},
        {"s": {"b": 2, "c": 3}},
    ),
    # finalizers: a set union, and $deleteFromPrimitiveList removes
    (
        {"metadata": {"finalizers": ["a"]}},
        {"metadata": {"finalizers": ["b", "a"]}},
        {"metadata": {"finalizers": ["a", "b"]}},
    ),
    (
        {"metadata": {"finalizers": ["a", "b"]}},
        {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}},
        {"metadata": {"finalizers": ["b"]}},
    ),
    # ownerReferences merge by uid; $patch: delete removes one entry
    (
        {"metadata": {"ownerReferences": [{"uid": "1", "name": "a"}, {"uid": "2", "name": "b"}]}},
        {"metadata": {"ownerReferences": [{"uid": "2", "name": "B"}, {"uid": "3", "name": "c"}]}},
        {
            "metadata": {
                "ownerReferences": [
                    {"uid": "1", "name": "a"},
                    {"uid": "2", "name": "B"},
                    {"uid": "3", "name": "c"},
                ]
            }
        },
    ),
    (
        {"metadata": {"ownerReferences": [{"uid": "1"}, {"uid": "2"}]}},
        {"metadata": {"ownerReferences": [{"uid": "1", "$patch": "delete"}]}},
        {"metadata": {"ownerReferences": [{"uid": "2"}]}},
    ),
    # lists without a strategy are replaced
    (
        {"spec": {"finalizers": ["kubernetes"]}},
        {"spec": {"finalizers": []}},
        {"spec": {"finalizers": []}},
    ),
    # $setElementOrder orders a merged list
    (
        {"metadata": {"finalizers": ["a", "b"]}},
        {"metadata": {"$setElementOrder/finalizers": ["b", "a"]}},
        {"metadata": {"finalizers": ["b", "a"]}},
    ),
]


@pytest.mark.parametrize(("original", "patch", "expected"), STRATEGIC)
def test_strategic_merge_patch(original: dict, patch: dict, expected: dict) -> None:
    assert strategic_merge_patch(original, patch, OBJECT_META_PATCH) == expected


def test_strategic_merge_unknown_directive() -> None:
    with pytest.raises(BadRequest):
        strategic_merge_patch({}, {"$patch": "explode"}, {})


def test_merge_patch_must_be_an_object() -> None:
    with pytest.raises(BadRequest):
        _apply(MERGE_PATCH, {}, ["not", "an", "object"])


DEEP = {"a": {"b": {"c": {"d": [{"e": 1}]}}}}


@pytest.mark.parametrize(
    ("target", "patch"),
    [
        *((t, p) for t, p, _ in RFC7386),
        (DEEP, {"a": {"b": None}}),
        (DEEP, {"x": DEEP}),
        ({"x": 1}, {"a": {"b": {"c": {"d": {"e": {"f": 1}}}}}}),
        (DEEP, {"a": {"b": {"c": {"d": [[{"e": [1]}]]}}}}),
    ],
)
def test_a_merge_nests_no_deeper_than_its_deeper_input(target: object, patch: object) -> None:
    # What lets an update by a merge patch skip measuring its result (the stored object and
    # the decoded patch were measured already).
    assert depth(merge_patch(target, patch)) <= max(depth(target), depth(patch))


@pytest.mark.parametrize(("original", "patch", "expected"), STRATEGIC)
def test_a_strategic_merge_nests_no_deeper_than_its_deeper_input(
    original: dict, patch: dict, expected: dict
) -> None:
    merged = strategic_merge_patch(original, patch, OBJECT_META_PATCH)
    assert depth(merged) <= max(depth(original), depth(patch))
