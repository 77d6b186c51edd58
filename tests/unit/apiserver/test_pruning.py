from typing import Any

import pytest

from arges.apiserver.pruning import Pruner

SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": True,  # not read at the root: its fields are the declared ones
    "properties": {
        "spec": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "ports": {
                    "type": "array",
                    "items": {"type": "object", "properties": {"port": {"type": "integer"}}},
                },
                "pools": {
                    "type": "object",
                    "additionalProperties": {
                        "type": "object",
                        "properties": {"size": {"type": "integer"}},
                    },
                },
                "free": {"type": "object", "additionalProperties": True},
                "kept": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "template": {
                    "type": "object",
                    "x-kubernetes-embedded-resource": True,
                    "properties": {"spec": {"type": "object", "properties": {}}},
                },
            },
        },
    },
}


@pytest.mark.parametrize(
    ("obj", "dropped", "left"),
    [
        (
            {"spec": {"name": "a", "other": 1, "ports": [{"port": 1, "proto": "x"}]}},
            ["spec.other", "spec.ports[0].proto"],
            {"spec": {"name": "a", "ports": [{"port": 1}]}},
        ),
        (
            {"spec": {"pools": {"web": {"size": 2, "color": "red"}}}, "top": 1},
            ["spec.pools.web.color", "top"],
            {"spec": {"pools": {"web": {"size": 2}}}},
        ),
        (
            {"spec": {"free": {"any": {"thing": 1}}, "kept": {"deep": [{"x": 1}]}}},
            [],
            {"spec": {"free": {"any": {"thing": 1}}, "kept": {"deep": [{"x": 1}]}}},
        ),
        (
            {
                "apiVersion": "v1",
                "kind": "K",
                "metadata": {"name": "a", "bogus": 1},
                "spec": {
                    "template": {
                        "apiVersion": "v1",
                        "kind": "Pod",
                        "metadata": {"labels": {"a": "b"}, "junk": 2},
                        "spec": {"x": 1},
                        "status": {},
                    }
                },
            },
            [
                "metadata.bogus",
                "spec.template.metadata.junk",
                "spec.template.spec.x",
                "spec.template.status",
            ],
            {
                "apiVersion": "v1",
                "kind": "K",
                "metadata": {"name": "a"},
                "spec": {
                    "template": {
                        "apiVersion": "v1",
                        "kind": "Pod",
                        "metadata": {"labels": {"a": "b"}},
                        "spec": {},
                    }
                },
            },
        ),
        # A declared string given an object: its fields are all undeclared.
        ({"spec": {"name": {"a": 1}}}, ["spec.name.a"], {"spec": {"name": {}}}),
    ],
)
def test_pruning_drops_undeclared_fields_in_the_order_met_with_their_paths(
    obj: dict[str, Any], dropped: list[str], left: dict[str, Any]
) -> None:
    assert Pruner.compile(SCHEMA).prune(obj) == dropped
    assert obj == left
