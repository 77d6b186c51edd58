"""A Constellation's lifecycle without servers: an unusable spec or missing credentials write
nothing and say why; fixed, the members appear; a satellite removed from the spec loses its
TalosCluster and Secret; new credentials reach the member's patch Secret and TalosCluster
(by digest, never by value); deleted, it takes its members along; a TalosCluster name that is not the Constellation's is left
alone."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import pytest

from arges.kube.errors import NotFound
from arges.kube.resources import CONSTELLATIONS, SECRETS, TALOS_CLUSTERS
from tests.integration.clusters.conftest import NS, Rack, create_cluster
from tests.integration.clusters.test_constellations import small_example
from tests.integration.conftest import eventually

pytestmark = pytest.mark.slow

NAME = "jupiter-system"
SELECTOR = f"cluster.arges.dev/constellation={NAME}"
DIGEST = "cluster.arges.dev/addons-digest"


async def condition(rack: Rack, kind: str) -> dict[str, Any] | None:
    status = (await rack.kube.get(CONSTELLATIONS, NAME, NS)).get("status") or {}
    return next((c for c in status.get("conditions") or [] if c["type"] == kind), None)


async def members(rack: Rack) -> dict[str, dict[str, Any]]:
    found = await rack.kube.list(TALOS_CLUSTERS, NS, label_selector=SELECTOR)
    return {c["metadata"]["name"]: c for c in found if not c["metadata"].get("deletionTimestamp")}


async def poke(rack: Rack, value: str) -> None:
    """Touch the Constellation: Secrets are not watched, a change to it is."""
    await rack.kube.patch(
        CONSTELLATIONS, NAME, {"metadata": {"annotations": {"test/poke": value}}}, NS
    )


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


async def addon_patch(rack: Rack, member: str) -> str:
    secret = await rack.kube.get(SECRETS, f"{member}-addons", NS)
    return base64.b64decode(secret["data"]["patch"]).decode()


async def test_unusable_specs_write_nothing_and_members_follow_the_spec(rack: Rack) -> None:
    body = small_example()
    spec = body["spec"]
    good_id = spec["satellites"][1]["addons"]["cilium"]["clusterId"]
    spec["satellites"][1]["addons"]["cilium"]["clusterId"] = 2
    await rack.kube.create(CONSTELLATIONS, body, NS)
    cond = await eventually(lambda: condition(rack, "Valid"), timeout=20, what="Valid")
    assert cond["status"] == "False" and cond["reason"] == "InvalidSpec"
    assert "satellite callisto: cilium.clusterId 2 is ganymede's too" in cond["message"]

    # Usable, but the DNS credentials Secret it names does not exist yet.
    await rack.kube.patch(
        CONSTELLATIONS,
        NAME,
        {
            "spec": {
                "satellites": [*spec["satellites"][:1], _with_id(spec["satellites"][1], good_id)]
            }
        },
        NS,
    )

    async def cannot_render() -> dict[str, Any] | None:
        found = await condition(rack, "Valid")
        return found if found and found["reason"] == "CannotRender" else None

    cond = await eventually(cannot_render, timeout=20, what="CannotRender")
    assert "external-dns credentials Secret dns-credentials not found" in cond["message"]
    assert await members(rack) == {}

    await rack.kube.create(
        SECRETS,
        {"metadata": {"name": "dns-credentials"}, "stringData": {"credentials.json": "key-one"}},
        NS,
    )
    await poke(rack, "1")

    async def three() -> dict[str, dict[str, Any]] | None:
        found = await members(rack)
        return found if set(found) == {"jupiter", "ganymede", "callisto"} else None

    await eventually(three, timeout=30, what="three members")
    assert b64("key-one") in await addon_patch(rack, "ganymede")
    before = (await members(rack))["ganymede"]["metadata"]["annotations"][DIGEST]

    # New credentials: the patch Secret and the TalosCluster's digest follow, not its spec.
    await rack.kube.patch(
        SECRETS, "dns-credentials", {"stringData": {"credentials.json": "key-two"}}, NS
    )
    await poke(rack, "2")

    async def rotated() -> dict[str, Any] | None:
        cluster = (await members(rack))["ganymede"]
        return cluster if cluster["metadata"]["annotations"][DIGEST] != before else None

    ganymede = await eventually(rotated, timeout=30, what="digest changed")
    assert b64("key-two") in await addon_patch(rack, "ganymede")
    text = json.dumps(ganymede)
    assert all(k not in text for k in ("key-one", "key-two", b64("key-one"), b64("key-two")))

    # callisto leaves the constellation: its TalosCluster and patch Secret go, the rest stay.
    await rack.kube.patch(
        CONSTELLATIONS, NAME, {"spec": {"satellites": spec["satellites"][:1]}}, NS
    )

    async def two() -> dict[str, dict[str, Any]] | None:
        found = await members(rack)
        return found if set(found) == {"jupiter", "ganymede"} else None

    await eventually(two, timeout=30, what="callisto removed")

    async def secret_gone() -> bool:
        try:
            await rack.kube.get(SECRETS, "callisto-addons", NS)
        except NotFound:
            return True
        return False

    await eventually(secret_gone, timeout=30, what="callisto's Secret removed")

    async def listed() -> list[str]:
        status = (await rack.kube.get(CONSTELLATIONS, NAME, NS))["status"]
        names = [m["name"] for m in status["members"]]
        return names if names == ["jupiter", "ganymede"] else []

    await eventually(listed, timeout=30, what="status without callisto")

    # Deleted, it takes its TalosClusters and Secrets with it (owner references).
    await rack.kube.delete(CONSTELLATIONS, NAME, NS)

    async def all_gone() -> bool:
        left = await rack.kube.list(TALOS_CLUSTERS, NS, label_selector=SELECTOR)
        secrets = await rack.kube.list(SECRETS, NS, label_selector=SELECTOR)
        return not left and not secrets

    await eventually(all_gone, timeout=60, what="members and Secrets collected")
    assert (await rack.kube.get(SECRETS, "dns-credentials", NS))["data"], "the user's stays"


def _with_id(member: dict[str, Any], cluster_id: int) -> dict[str, Any]:
    out = copy.deepcopy(member)
    out["addons"]["cilium"]["clusterId"] = cluster_id
    return out


async def test_a_talos_cluster_that_is_not_the_constellations_is_left_alone(rack: Rack) -> None:
    await create_cluster(rack.kube, "ganymede", workers=0)
    body = small_example()
    for member in [body["spec"]["barycenter"], *body["spec"]["satellites"]]:
        member["addons"].pop("externalDNS")
    await rack.kube.create(CONSTELLATIONS, body, NS)

    async def refused() -> dict[str, Any] | None:
        found = await condition(rack, "MembersCreated")
        return found if found and found["status"] == "False" else None

    cond = await eventually(refused, timeout=30, what="MembersCreated False")
    assert "ganymede" in cond["message"]
    ganymede = await rack.kube.get(TALOS_CLUSTERS, "ganymede", NS)
    assert "ownerReferences" not in ganymede["metadata"]
    assert "patchesFrom" not in ganymede["spec"]["controlPlane"]
    assert set(await members(rack)) == {"jupiter", "callisto"}
