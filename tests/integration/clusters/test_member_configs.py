"""A member's config belongs to one membership: a release cut short, or a leftover Secret,
never gives a later member the config of an earlier one."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import yaml

from arges.kube.client import KubeClient
from arges.kube.errors import NotFound
from arges.kube.resources import SECRETS, SERVER_BINDINGS, TALOS_CLUSTERS, Resource
from arges.talos.configgen import ClusterInput
from arges.talos.render import render
from arges.talos.secrets import generate
from tests.integration.clusters.conftest import NS, Rack, all_in, create_cluster
from tests.integration.conftest import eventually

pytestmark = pytest.mark.slow


class CutShort:
    """Stops the plane's deletes after the first one of a release: the second hangs for
    ever, as a process killed there would never make it."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.armed = False
        self.seen: list[tuple[str, str]] = []
        self.stuck = asyncio.Event()
        real = KubeClient.delete

        async def delete(client: KubeClient, res: Resource, name: str, *a: Any, **kw: Any) -> None:
            if self.armed and res.plural in ("secrets", "serverbindings"):
                self.seen.append((res.plural, name))
                if len(self.seen) == 2:
                    self.stuck.set()
                    await asyncio.Event().wait()
            await real(client, res, name, *a, **kw)

        monkeypatch.setattr(KubeClient, "delete", delete)


async def _gone(kube: KubeClient, name: str) -> bool:
    try:
        await kube.get(SECRETS, name, NS)
        return False
    except NotFound:
        return True


async def test_a_release_cut_short_leaves_no_config_for_the_next_member(
    rack: Rack, monkeypatch: pytest.MonkeyPatch
) -> None:
    cut = CutShort(monkeypatch)
    for _ in range(3):
        await rack.add()
    await create_cluster(rack.kube, workers=2)
    await eventually(lambda: all_in(rack, "Ready", 3), timeout=60)

    cut.armed = True
    await rack.kube.patch(
        TALOS_CLUSTERS, "demo", {"spec": {"workers": [{"name": "workers", "replicas": 1}]}}, NS
    )
    await asyncio.wait_for(cut.stuck.wait(), 30)
    await rack.plane.stop()
    (released,) = {name.removeprefix("demo-config-") for _, name in cut.seen}
    assert [kind for kind, _ in cut.seen] == ["secrets", "serverbindings"], (
        "the config goes first, its binding second"
    )

    # The reset was asked for (condition TalosReset) but never sent; while the plane is down
    # the member's Talos goes quiet, so the restarted plane wipes it over the network, and
    # the reset that is not coming must not hold the wipe back for reset_timeout (300 s).
    sim = rack.sim(released)
    await sim.silence()
    cut.armed = False
    await rack.start()
    await eventually(lambda: all_in(rack, "Ready", 2), timeout=60)
    assert await _gone(rack.kube, f"demo-config-{released}"), "no config outlives its member"
    await eventually(lambda: rack.available(sim), timeout=60)

    # The released worker is the only free server: growing the control plane takes it.
    await rack.kube.patch(TALOS_CLUSTERS, "demo", {"spec": {"controlPlane": {"replicas": 2}}}, NS)
    await eventually(lambda: all_in(rack, "Ready", 3), timeout=60)
    assert sim.machine_type == "controlplane", "it installed the config of its new role"


async def test_a_leftover_config_is_rendered_anew_for_its_new_member(rack: Rack) -> None:
    for _ in range(3):
        await rack.add()
    await create_cluster(rack.kube, workers=1)
    await eventually(lambda: all_in(rack, "Ready", 2), timeout=60)
    bound = {b["metadata"]["name"] for b in await rack.bindings()}
    (spare,) = [s for s in rack.servers if s.uuid not in bound]
    # What an Arges before these records left behind: another role's config, saying nothing
    # of what it was rendered for.
    stale = render(generate(), "controlplane", ClusterInput("demo", "https://10.5.0.10:6443"))
    await rack.kube.create(
        SECRETS,
        {"metadata": {"name": f"demo-config-{spare.uuid}"}, "stringData": {"config": stale}},
        NS,
    )

    await rack.kube.patch(
        TALOS_CLUSTERS, "demo", {"spec": {"workers": [{"name": "workers", "replicas": 2}]}}, NS
    )
    await eventually(lambda: all_in(rack, "Ready", 3), timeout=60)
    assert spare.machine_type == "worker"
    assert yaml.safe_load(spare.installed or "") != yaml.safe_load(stale)
    secret = await rack.kube.get(SECRETS, f"demo-config-{spare.uuid}", NS)
    binding = await rack.kube.get(SERVER_BINDINGS, spare.uuid)
    meta = secret["metadata"]
    assert meta["annotations"]["cluster.arges.dev/binding-uid"] == binding["metadata"]["uid"]
    assert meta["ownerReferences"][0]["uid"] == binding["metadata"]["uid"]


async def test_a_binding_deleted_by_hand_takes_its_config_with_it(rack: Rack) -> None:
    for _ in range(2):
        await rack.add()
    await create_cluster(rack.kube, workers=1)
    await eventually(lambda: all_in(rack, "Ready", 2), timeout=60)
    worker = next(m["server"] for m in await rack.members() if m["role"] == "worker")
    old = (await rack.kube.get(SERVER_BINDINGS, worker))["metadata"]["uid"]
    await rack.kube.delete(SERVER_BINDINGS, worker)

    async def not_the_old_one() -> bool:
        try:
            secret = await rack.kube.get(SECRETS, f"demo-config-{worker}", NS)
        except NotFound:
            return True
        return bool(secret["metadata"]["annotations"]["cluster.arges.dev/binding-uid"] != old)

    # Gone, or (once the wiped server is bound again) rendered for the new binding.
    await eventually(not_the_old_one, timeout=30)
