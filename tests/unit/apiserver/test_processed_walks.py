"""Pruning and defaulting an update given the stored object that the same schema processed:
the values the update left as they were are not walked, and the result, its dropped paths
included, is what a walk of the whole object gives."""

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from arges.apiserver import codec
from arges.apiserver.schema import Schema

ITEM = {
    "type": "object",
    "properties": {"weight": {"type": "integer", "default": 1}, "name": {"type": "string"}},
}
SCHEMA = Schema.compile(
    {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "properties": {
                    "size": {"type": "integer"},
                    "color": {"type": "string", "default": "blue"},
                    "note": {"type": "string", "nullable": True, "default": "n"},
                    "items": {"type": "array", "items": ITEM},
                    "pools": {"type": "object", "additionalProperties": ITEM},
                    "nested": {
                        "type": "object",
                        "default": {},
                        "properties": {"deep": {"type": "string", "default": "d"}},
                    },
                    "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                },
            },
            "status": {
                "type": "object",
                "properties": {
                    "ready": {"type": "boolean"},
                    "hardware": {"type": "object", "properties": {"disks": ITEM}},
                },
            },
        },
    }
)

# Declared and undeclared names, so that walks meet both; values of every JSON type, True
# and 1 among them (equal in Python, a change in JSON).
names = st.sampled_from(
    [
        "spec",
        "status",
        "size",
        "color",
        "note",
        "items",
        "pools",
        "nested",
        "deep",
        "extra",
        "ready",
        "hardware",
        "disks",
        "weight",
        "name",
        "junk",
        "other",
    ]
)
scalars = st.none() | st.booleans() | st.integers(-2, 2) | st.sampled_from(["a", "b"])
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(names, inner, max_size=4),
    max_leaves=30,
)
fields = st.dictionaries(names, values, max_size=5)
objects = st.fixed_dictionaries({}, optional={"spec": fields, "status": fields, "junk": values})


def processed(obj: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """``obj`` pruned and defaulted as a create is, and the paths pruning dropped."""
    out = codec.clone(obj)
    dropped = SCHEMA.prune(out)
    SCHEMA.default(out)
    return out, dropped


def edited(obj: Any, edits: list[tuple[list[Any], Any]]) -> Any:
    """``obj`` with the value at each path (names, or indexes taken modulo a list's length)
    replaced, where the path leads somewhere."""
    out = codec.clone(obj)
    for path, value in edits:
        node = out
        for step in path[:-1]:
            if isinstance(node, dict) and isinstance(step, str) and step in node:
                node = node[step]
            elif isinstance(node, list) and isinstance(step, int) and node:
                node = node[step % len(node)]
            else:
                break
        else:
            last = path[-1] if path else None
            if isinstance(node, dict) and isinstance(last, str):
                node[last] = value
            elif isinstance(node, list) and isinstance(last, int) and node:
                node[last % len(node)] = value
    return out


paths = st.builds(
    lambda top, rest: [top, *rest],
    st.sampled_from(["spec", "status"]),
    st.lists(names | st.integers(0, 3), max_size=4),
)


@settings(max_examples=600, deadline=None)
@given(objects, st.lists(st.tuples(paths, values), max_size=4))
def test_an_update_is_pruned_and_defaulted_as_a_whole_walk_would(
    created: dict[str, Any], edits: list[tuple[list[Any], Any]]
) -> None:
    stored, _ = processed(created)
    update = edited(stored, edits)
    whole = codec.clone(update)
    whole_dropped = SCHEMA.prune(whole)
    SCHEMA.default(whole)
    given_stored = codec.clone(update)
    dropped = SCHEMA.prune(given_stored, stored)
    SCHEMA.default(given_stored, stored)
    assert dropped == whole_dropped
    assert codec.dumps(given_stored) == codec.dumps(whole)


def test_what_an_update_left_as_stored_is_not_walked_again() -> None:
    # Shown with a stored object the schema did not process (what the write path never
    # gives): its undeclared field, unchanged, stays, while the changed part is pruned and
    # defaulted.
    stored = {"spec": {"size": 1}, "status": {"hardware": {"disks": {"junk": 1}}}}
    update = codec.clone(stored)
    update["spec"] = {"size": 2, "junk": 2}
    assert SCHEMA.prune(update, stored) == ["spec.junk"]
    SCHEMA.default(update, stored)
    assert update["spec"] == {"size": 2, "color": "blue", "note": "n", "nested": {"deep": "d"}}
    assert update["status"] == {"hardware": {"disks": {"junk": 1}}}
