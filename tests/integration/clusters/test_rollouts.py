"""Roll-outs on simulated servers: Talos upgrades, Kubernetes upgrades, config changes reaching
running members, pausing, a member that fails, and restarts of Arges at each step; members'
health; releases through Talos' Reset, and the network-booted wipe when Talos is silent."""

from __future__ import annotations

import time
from typing import Any

import pytest
import yaml

from arges.kube.resources import EVENTS, SERVER_CLASSES, SERVERS, TALOS_CLUSTERS
from arges.talos.components import COMPONENTS, image
from tests.integration.clusters.conftest import NS, Rack, create_cluster
from tests.integration.clusters.sim import SimServer
from tests.integration.conftest import eventually

pytestmark = pytest.mark.slow

OLD = "ghcr.io/siderolabs/installer:v1.11.6"
NEW = "ghcr.io/siderolabs/installer:v1.11.7"


def figure(capsys: pytest.CaptureFixture[str], text: str) -> None:
    with capsys.disabled():
        print(f"\n  [rollout] {text}", flush=True)


def condition(cluster: dict[str, Any], kind: str) -> dict[str, Any] | None:
    conditions = (cluster.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == kind), None)


async def settled(
    rack: Rack, count: int, *, talos: str = "v1.11.6", kubernetes: str = "1.34.1"
) -> dict[str, Any] | None:
    """The cluster once Running with ``count`` members, all Ready and up to date on those
    versions (None before)."""
    cluster = await rack.cluster()
    status = cluster.get("status") or {}
    members = status.get("members") or []
    up = condition(cluster, "UpToDate")
    ok = (
        status.get("phase") == "Running"
        and len(members) == count
        and all(
            m["state"] == "Ready"
            and m.get("rollout") == "UpToDate"
            and m.get("talosVersion") == talos
            and m.get("kubernetesVersion") == kubernetes
            for m in members
        )
        and up is not None
        and up["status"] == "True"
    )
    return cluster if ok else None


async def cluster_of(rack: Rack, count: int, **spec: Any) -> dict[str, SimServer]:
    """A settled cluster on ``count`` fresh servers; its sims by role and name order
    (``cp-1``..., ``w-1``...)."""
    for _ in range(count):
        await rack.add()
    await create_cluster(rack.kube, **spec)
    await eventually(lambda: settled(rack, count), timeout=120, what="a settled cluster")
    members = sorted(await rack.members(), key=lambda m: m["server"])
    out: dict[str, SimServer] = {}
    for role, prefix in (("controlplane", "cp"), ("worker", "w")):
        for i, m in enumerate(m for m in members if m["role"] == role):
            out[f"{prefix}-{i + 1}"] = rack.sim(m["server"])
    return out


def one_at_a_time(sims: list[SimServer]) -> bool:
    """Whether the sims' reboots never overlapped (each came back before the next went)."""
    spans = sorted(span for s in sims for span in s.downtime)
    return all(
        end is not None and (nxt is None or end <= nxt[0])
        for (_, end), nxt in zip(spans, [*spans[1:], None], strict=True)
    )


async def test_a_talos_upgrade_goes_control_planes_first_one_at_a_time(
    rack: Rack, capsys: pytest.CaptureFixture[str]
) -> None:
    sims = await cluster_of(rack, 5, control_planes=3, workers=2)
    started = time.monotonic()
    await rack.kube.patch(TALOS_CLUSTERS, "demo", {"spec": {"installerImage": NEW}}, NS)
    cluster = await eventually(lambda: settled(rack, 5, talos="v1.11.7"), timeout=180)
    took = time.monotonic() - started
    figure(capsys, f"Talos upgrade of 5 members: {took:.1f} s, {took / 5:.1f} s per member")
    for name, sim in sims.items():
        assert sim.talos is not None and sim.talos.upgrades == [NEW], f"{name} upgraded once"
        assert sim.reboots == ["upgrade"]
    control_planes = [sims[f"cp-{i}"] for i in (1, 2, 3)]
    workers = [sims["w-1"], sims["w-2"]]
    assert one_at_a_time(control_planes + workers)
    last_cp_back = max(s.downtime[0][1] or 0 for s in control_planes)
    assert all(w.downtime[0][0] >= last_cp_back for w in workers), "workers after every cp"
    assert [s.downtime[0][0] for s in control_planes] == sorted(
        s.downtime[0][0] for s in control_planes
    ), "control planes in name order"
    status = cluster["status"]
    assert (status["talosVersion"], status["updated"]) == ("v1.11.7", "5/5")
    assert condition(cluster, "UpToDate")["message"].startswith(  # type: ignore[index]
        "every member runs Talos v1.11.7"
    )
    assert len(sims["cp-1"].talos.etcd.members()) == 3  # type: ignore[union-attr]


async def test_a_kubernetes_upgrade_is_made_as_upgrade_k8s_makes_it(rack: Rack) -> None:
    sims = await cluster_of(rack, 3, control_planes=2, workers=1)
    adopted = {n: len(s.talos.apply_requests) for n, s in sims.items()}  # type: ignore[union-attr]
    before = {n: s.talos.config or "" for n, s in sims.items()}  # type: ignore[union-attr]
    await rack.kube.patch(TALOS_CLUSTERS, "demo", {"spec": {"kubernetesVersion": "1.34.2"}}, NS)
    await eventually(lambda: settled(rack, 3, kubernetes="1.34.2"), timeout=120)
    # What each ApplyConfiguration changed, in the order the nodes received them.
    calls = sorted(
        (a.at, n, a.config)
        for n, s in sims.items()
        for a in s.talos.apply_requests[adopted[n] :]  # type: ignore[union-attr]
        if not a.dry_run
    )
    done = []
    for _, name, config in calls:
        changed = [c for c in COMPONENTS if image(config, c) != image(before[name], c)]
        done += [(name, c) for c in changed]
        before[name] = config
    components = [
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kube-proxy",
    ]
    assert done == [
        *[(cp, c) for c in components for cp in ("cp-1", "cp-2")],
        ("cp-1", "kubelet"),
        ("cp-2", "kubelet"),
        ("w-1", "kubelet"),
    ], "each component on every control plane in turn, then kubelets, control planes first"
    for name, sim in sims.items():
        node = sim.talos
        assert node is not None and sim.reboots == [], "no reboot"
        applies = [a for a in node.apply_requests[adopted[name] :] if not a.dry_run]
        assert {(a.mode, a.applied) for a in applies} == {("NO_REBOOT", "NO_REBOOT")}
        configs = [yaml.safe_load(a.config) for a in applies]
        assert len(configs) == (5 if name.startswith("cp") else 1)
        config = yaml.safe_load(node.config or "")
        assert config["machine"]["kubelet"]["image"] == "ghcr.io/siderolabs/kubelet:v1.34.2"


async def test_config_changes_reach_running_members(rack: Rack) -> None:
    sims = await cluster_of(rack, 3, control_planes=1, workers=2)

    def config(sim: SimServer) -> dict[str, Any]:
        assert sim.talos is not None
        return yaml.safe_load(sim.talos.config or "")  # type: ignore[no-any-return]

    # A cluster patch Talos applies in place: every member at once, no reboot.
    label = "machine:\n  nodeLabels:\n    tier: gold\n"
    await rack.kube.patch(TALOS_CLUSTERS, "demo", {"spec": {"strategicPatches": [label]}}, NS)
    await eventually(
        lambda: all(
            (config(s)["machine"].get("nodeLabels") or {}).get("tier") == "gold"
            for s in sims.values()
        ),
        timeout=30,
    )
    await eventually(lambda: settled(rack, 3), timeout=60)
    assert all(s.reboots == [] for s in sims.values())

    # A pool's patch: that pool's members only, in place.
    pool = "machine:\n  nodeLabels:\n    pool: edge\n"
    workers = {"name": "workers", "replicas": 2, "strategicPatches": [pool]}
    await rack.kube.patch(TALOS_CLUSTERS, "demo", {"spec": {"workers": [workers]}}, NS)
    await eventually(
        lambda: all(
            config(sims[w])["machine"]["nodeLabels"].get("pool") == "edge" for w in ("w-1", "w-2")
        ),
        timeout=30,
    )
    await eventually(lambda: settled(rack, 3), timeout=60)
    assert "pool" not in config(sims["cp-1"])["machine"]["nodeLabels"], "not another pool's"
    assert all(config(s)["machine"]["nodeLabels"]["tier"] == "gold" for s in sims.values())
    assert all(s.reboots == [] for s in sims.values())

    # A ServerClass patch Talos cannot apply in place: each member rebooted, one at a time.
    env = "machine:\n  env:\n    HTTP_PROXY: http://proxy:3128\n"
    await rack.kube.patch(SERVER_CLASSES, "any", {"spec": {"strategicPatches": [env]}})
    await eventually(
        lambda: all(config(s)["machine"].get("env") for s in sims.values()), timeout=60
    )
    await eventually(lambda: settled(rack, 3), timeout=60)
    assert all(s.reboots == ["apply"] for s in sims.values())
    assert one_at_a_time(list(sims.values()))
    assert sims["cp-1"].downtime[0][0] < min(sims[w].downtime[0][0] for w in ("w-1", "w-2"))

    # A Server's patch: that member only.
    sysctl = "machine:\n  sysctls:\n    vm.nr_hugepages: '64'\n"
    one = sims["w-2"]
    before = {n: len(s.talos.apply_requests) for n, s in sims.items()}  # type: ignore[union-attr]
    await rack.kube.patch(SERVERS, one.uuid, {"spec": {"strategicPatches": [sysctl]}})
    await eventually(lambda: config(one)["machine"].get("sysctls") == {"vm.nr_hugepages": "64"})
    await eventually(lambda: settled(rack, 3), timeout=60)
    after = {n: len(s.talos.apply_requests) for n, s in sims.items()}  # type: ignore[union-attr]
    assert [n for n in sims if after[n] != before[n]] == ["w-2"]
    assert one.reboots == ["apply"]


async def test_a_paused_roll_out_waits_and_then_goes_on(rack: Rack) -> None:
    sims = await cluster_of(rack, 2)
    await rack.kube.patch(
        TALOS_CLUSTERS, "demo", {"spec": {"installerImage": NEW, "paused": True}}, NS
    )

    async def paused() -> dict[str, Any] | None:
        found = condition(await rack.cluster(), "UpToDate")
        return found if found and found["reason"] == "Paused" else None

    cond = await eventually(paused, timeout=30)
    assert "paused" in cond["message"]
    assert (await rack.cluster())["status"]["phase"] == "Updating"
    assert all(s.talos is not None and s.talos.upgrade_requests == [] for s in sims.values())
    await rack.kube.patch(TALOS_CLUSTERS, "demo", {"spec": {"paused": False}}, NS)
    await eventually(lambda: settled(rack, 2, talos="v1.11.7"), timeout=90)


async def test_a_member_that_fails_stops_the_roll_out(rack: Rack) -> None:
    sims = await cluster_of(rack, 3, control_planes=1, workers=2)
    sims["w-1"].talos.failing_images.add(NEW)  # type: ignore[union-attr]
    await rack.kube.patch(TALOS_CLUSTERS, "demo", {"spec": {"installerImage": NEW}}, NS)

    async def failed() -> dict[str, Any] | None:
        found = condition(await rack.cluster(), "UpToDate")
        return found if found and found["reason"] == "MemberFailed" else None

    cond = await eventually(failed, timeout=90)
    assert sims["w-1"].uuid in cond["message"]
    assert "it came back on Talos v1.11.6, not v1.11.7" in cond["message"]
    member = next(m for m in await rack.members() if m["server"] == sims["w-1"].uuid)
    assert member["rollout"] == "Failed" and "came back on Talos v1.11.6" in member["message"]
    assert sims["w-2"].talos.upgrade_requests == [], "the roll-out stopped"  # type: ignore[union-attr]
    assert sims["cp-1"].talos.upgrades == [NEW]  # type: ignore[union-attr]

    # Another image: the failure is history, the roll-out goes on.
    newer = "ghcr.io/siderolabs/installer:v1.11.8"
    await rack.kube.patch(TALOS_CLUSTERS, "demo", {"spec": {"installerImage": newer}}, NS)
    await eventually(lambda: settled(rack, 3, talos="v1.11.8"), timeout=120)


@pytest.mark.parametrize("stop_when", ["confirmed", "rebooting", "back"])
async def test_restarts_at_every_step_of_a_roll_out_upgrade_each_member_once(
    rack: Rack, stop_when: str
) -> None:
    sims = await cluster_of(rack, 3, control_planes=1, workers=2)
    first = sims["w-1"]
    node = first.talos
    assert node is not None
    node.install_seconds = 2.0
    node.reboot_seconds = 0
    await rack.kube.patch(TALOS_CLUSTERS, "demo", {"spec": {"installerImage": NEW}}, NS)
    stops = {
        "confirmed": lambda: node.busy,
        "rebooting": lambda: bool(first.downtime) and first.downtime[-1][1] is None,
        "back": lambda: bool(first.downtime) and first.downtime[-1][1] is not None,
    }
    await eventually(stops[stop_when], timeout=90, interval=0.01)
    await rack.plane.stop()
    await rack.start()
    await eventually(lambda: settled(rack, 3, talos="v1.11.7"), timeout=120)
    for name, sim in sims.items():
        assert sim.talos is not None and sim.talos.upgrades == [NEW], f"{name}: exactly once"
        assert sim.reboots == ["upgrade"]


async def test_a_silent_worker_is_unhealthy_and_replaced(rack: Rack) -> None:
    sims = await cluster_of(rack, 2)
    spare = await rack.add()
    await rack.kube.patch(
        TALOS_CLUSTERS,
        "demo",
        {
            "spec": {
                "unhealthyAfterSeconds": 10,
                "workers": [{"name": "workers", "replicas": 1, "autoReplace": True}],
            }
        },
        NS,
    )
    sick = sims["w-1"]
    await sick.silence()

    async def unhealthy() -> list[dict[str, Any]]:
        # The Event, not the condition: where the pool replaces the member at once, the
        # condition is True only until the next reconcile, too briefly to poll for.
        events = await rack.kube.list(EVENTS, NS, field_selector="involvedObject.name=demo")
        return [e for e in events if e["reason"] == "MemberUnhealthy"]

    found = await eventually(unhealthy, timeout=60)
    assert found[0]["type"] == "Warning" and sick.uuid in found[0]["message"]
    await eventually(lambda: settled(rack, 2), timeout=90)
    members = {m["server"] for m in await rack.members()}
    assert members == {sims["cp-1"].uuid, spare.uuid}, "the spare took the sick worker's place"
    await eventually(lambda: rack.available(sick), timeout=60)
    assert sick.boots[-1] == "agent" and sick.installed is None, "wiped over the network"
    server = await rack.kube.get(SERVERS, sick.uuid)
    kinds = {c["type"] for c in server["status"]["conditions"]}
    assert "TalosReset" not in kinds and "PowerCycle" in kinds, "its BMC rebooted it"
    cond = condition(await rack.cluster(), "MemberUnhealthy")
    assert cond is not None and cond["status"] == "False"
