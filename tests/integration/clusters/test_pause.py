"""The plane-wide pause (ManagementPlane ``arges``): created unpaused; paused, every instance
acknowledges once idle, controllers start no reconcile and the boot port refuses servers
(503, retry); resumed, what was declared meanwhile converges."""

from __future__ import annotations

from typing import Any

import pytest

from arges.kube.resources import MANAGEMENT_PLANES, TALOS_CLUSTERS
from tests.integration.clusters.conftest import NS, Rack, all_in, create_cluster
from tests.integration.conftest import eventually

pytestmark = pytest.mark.slow


async def acknowledged(rack: Rack, paused: bool) -> dict[str, Any] | None:
    """The plane once this process reports ``paused`` at the current generation."""
    plane = await rack.kube.get(MANAGEMENT_PLANES, "arges")
    generation = plane["metadata"]["generation"]
    instances = (plane.get("status") or {}).get("instances") or []
    ok = len(instances) == 1 and all(
        i["paused"] is paused and i["observedGeneration"] == generation for i in instances
    )
    return plane if ok else None


async def test_a_paused_plane_acts_on_nothing_until_resumed(rack: Rack) -> None:
    sim = await rack.add()
    plane = await eventually(lambda: acknowledged(rack, False), timeout=20, what="unpaused")
    assert not (plane.get("spec") or {}).get("paused")

    await rack.kube.patch(
        MANAGEMENT_PLANES, "arges", {"spec": {"paused": True, "reason": "maintenance"}}
    )
    await eventually(lambda: acknowledged(rack, True), timeout=20, what="pause acknowledged")
    await create_cluster(rack.kube, workers=0)

    base = sim.base_url
    async with rack.session.get(f"{base}/ipxe", params={"uuid": sim.uuid}) as resp:
        assert resp.status == 503
    async with rack.session.get(f"{base}/configdata", params={"uuid": sim.uuid}) as resp:
        assert resp.status == 503
        assert resp.headers["Retry-After"] == "10"
        assert "Arges is paused (maintenance)" in await resp.text()
    # Created while paused, after the boot port's answers: no controller has touched it.
    cluster = await rack.kube.get(TALOS_CLUSTERS, "demo", NS)
    assert "status" not in cluster and not cluster["metadata"].get("finalizers")

    await rack.kube.patch(MANAGEMENT_PLANES, "arges", {"spec": {"paused": False}})
    await eventually(lambda: acknowledged(rack, False), timeout=20, what="resumed")
    await eventually(lambda: all_in(rack, "Ready", 1), timeout=90, what="cluster ready")
