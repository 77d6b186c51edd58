"""Member config Secrets: which binding they belong to, which are orphans, what may be served."""

from __future__ import annotations

from typing import Any

import pytest

from arges.api.binding import ServerBinding
from arges.metal.memberconfig import (
    BINDING_UID,
    CLUSTER_LABEL,
    MEMBER_LABEL,
    POOL_LABEL,
    ROLE,
    digest,
    metadata_for,
    mismatch,
    orphans,
    record_of,
    serve_problem,
)


def binding(
    uid: str = "u1",
    *,
    server: str = "s1",
    role: str = "worker",
    pool: str = "workers",
    consumer: str = "TalosCluster",
) -> ServerBinding:
    return ServerBinding.from_json(
        {
            "metadata": {"name": server, "uid": uid, "labels": {POOL_LABEL: pool}},
            "spec": {
                "serverRef": {"name": server},
                "consumerRef": {"apiVersion": "x/v1", "kind": consumer, "name": "demo"},
                "role": role,
            },
        }
    )


def secret(name: str = "demo-config-s1", **meta: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, **meta}}


def rendered_for(b: ServerBinding, pool: str = "workers", name: str = "") -> dict[str, Any]:
    labels, annotations, owners = metadata_for(b, "demo", pool, "version: v1alpha1\n")
    return secret(
        name or f"demo-config-{b.name}",
        labels=labels,
        annotations=annotations,
        ownerReferences=owners,
    )


def test_the_metadata_names_the_binding_and_makes_it_the_owner() -> None:
    b = binding("u1", role="controlplane", pool="controlplane")
    labels, annotations, owners = metadata_for(b, "demo", "controlplane", "x: 1\n")
    assert labels == {CLUSTER_LABEL: "demo", POOL_LABEL: "controlplane", MEMBER_LABEL: "s1"}
    assert annotations[BINDING_UID] == "u1" and annotations[ROLE] == "controlplane"
    assert annotations["cluster.arges.dev/config-digest"] == digest("x: 1\n")
    assert owners == [
        {
            "apiVersion": "metal.arges.dev/v1alpha1",
            "kind": "ServerBinding",
            "name": "s1",
            "uid": "u1",
        }
    ]


@pytest.mark.parametrize(
    ("written_for", "current", "why"),
    [
        (binding("u1"), binding("u1"), None),
        (binding("u1"), binding("u2"), "earlier binding (u1), not u2"),
        (binding("u1", role="controlplane", pool="controlplane"), binding("u1"), "pool"),
        (binding("u1", role="controlplane"), binding("u1"), "rendered as controlplane"),
        (binding("u1", server="s2"), binding("u1"), "server s2"),
    ],
)
def test_a_secret_belongs_only_to_the_binding_it_was_rendered_for(
    written_for: ServerBinding, current: ServerBinding, why: str | None
) -> None:
    pool = written_for.labels[POOL_LABEL]
    got = mismatch(record_of(rendered_for(written_for, pool, "demo-config-s1")), current)
    assert (got is None) if why is None else (got is not None and why in got)


def test_a_secret_that_records_nothing_belongs_to_no_binding() -> None:
    assert mismatch(record_of(secret()), binding()) == (
        "it does not say which binding it was rendered for"
    )


@pytest.mark.parametrize(
    ("s", "b", "served"),
    [
        (rendered_for(binding("u1")), binding("u1"), True),
        (rendered_for(binding("u1")), binding("u2"), False),
        (secret(), binding("u1"), False),
        # Bootstrap data of another consumer (a Cluster API Machine's) records nothing.
        (secret(), binding("u1", consumer="MetalMachine"), True),
        (rendered_for(binding("u1")), binding("u2", consumer="MetalMachine"), False),
    ],
)
def test_what_the_metadata_service_may_serve(
    s: dict[str, Any], b: ServerBinding, served: bool
) -> None:
    assert (serve_problem(s, b) is None) is served


def test_orphans_are_the_member_configs_of_ended_memberships() -> None:
    kept, ended = binding("u1", server="s1"), binding("u0", server="s2")
    secrets = [
        rendered_for(kept),
        rendered_for(ended),
        rendered_for(binding("old", server="s1"), name="demo-config-s1-old"),
        secret("demo-secrets", labels={CLUSTER_LABEL: "demo"}),
    ]
    assert orphans(secrets, [kept]) == ["demo-config-s1-old", "demo-config-s2"]
    assert orphans(secrets, []) == ["demo-config-s1", "demo-config-s1-old", "demo-config-s2"]
