"""Metal controllers against the embedded API server, through a real Kubernetes client."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from arges.api.base import ObjectReference
from arges.api.binding import RELEASE_FINALIZER
from arges.api.crds import DEFINITIONS
from arges.api.manifests import deploy_files
from arges.api.server import Server
from arges.api.serverclass import ServerClass
from arges.controllers.allocation import allocate, allocate_many
from arges.kube.client import KubeClient
from arges.kube.connection import from_kubeconfig
from arges.kube.errors import Invalid, NotFound
from arges.kube.resources import ENVIRONMENTS, EVENTS, SERVER_BINDINGS, SERVER_CLASSES, SERVERS
from arges.metal import classes
from arges.plane import ManagementPlane
from tests.integration.conftest import eventually, make_assets, register, sha512

UUID_A = "4c4c4544-0035-4b10-8036-000000000a0a"
UUID_B = "4c4c4544-0035-4b10-8036-000000000b0b"
UUID_C = "4c4c4544-0035-4b10-8036-000000000c0c"
EARLIER_CYCLE = {
    "type": "PowerCycle",
    "status": "True",
    "reason": "Requested",
    "message": "power cycle requested (an earlier wipe)",
    "lastTransitionTime": "2026-01-01T00:00:00Z",
}
CONSUMER = ObjectReference(
    api_version="cluster.arges.dev/v1alpha1", kind="TalosCluster", name="demo", namespace="default"
)


async def status_of(kube: KubeClient, name: str) -> dict:
    return (await kube.get(SERVERS, name)).get("status") or {}


async def class_status(kube: KubeClient, name: str = "any") -> dict:
    return (await kube.get(SERVER_CLASSES, name)).get("status") or {}


async def bind(kube: KubeClient, name: str, *, finalizers: list[str] | None = None) -> None:
    await kube.create(
        SERVER_BINDINGS,
        {
            "metadata": {"name": name, "finalizers": finalizers or []},
            "spec": {
                "serverRef": {"name": name},
                "consumerRef": CONSUMER.to_json(),
                "role": "worker",
            },
        },
    )


async def test_accept_clean_available_bind_release(kube: KubeClient) -> None:
    await register(kube, UUID_A)
    await eventually(lambda: _status_is(kube, UUID_A, inUse=False, isClean=False))
    assert (await class_status(kube)).get("serversAvailable") == []
    got = await kube.get(SERVERS, UUID_A)
    assert "metal.arges.dev/server-protection" in got["metadata"]["finalizers"]

    await kube.patch(SERVERS, UUID_A, {"spec": {"accepted": True}})
    await kube.patch(SERVERS, UUID_A, {"status": {"isClean": True}}, subresource="status")
    await eventually(lambda: _class_has(kube, available=[UUID_A], in_use=[]))

    await bind(kube, UUID_A)
    await eventually(lambda: _status_is(kube, UUID_A, inUse=True, isClean=False))
    await eventually(lambda: _class_has(kube, available=[], in_use=[UUID_A]))

    await kube.delete(SERVER_BINDINGS, UUID_A)
    await eventually(lambda: _status_is(kube, UUID_A, inUse=False, isClean=False))

    async def reasons() -> set[str]:
        selector = f"involvedObject.name={UUID_A}"
        return {e["reason"] for e in await kube.list(EVENTS, "default", field_selector=selector)}

    await eventually(lambda: _has(reasons(), {"Allocated", "Released"}), what="both Events")
    await eventually(lambda: _class_has(kube, available=[UUID_A], in_use=[]))


async def test_a_server_made_without_registration_gets_its_allocation_state_after_a_while(
    kube: KubeClient,
) -> None:
    # As kubectl makes one: no agent registers it, so nobody else will record its state; the
    # controller leaves it to a registration for a few seconds (REGISTRATION_GRACE), then does.
    await kube.create(SERVERS, {"metadata": {"name": UUID_A}, "spec": {"accepted": False}})
    await asyncio.sleep(1.0)
    assert not await status_of(kube, UUID_A), "left to a registration at first"
    await eventually(lambda: _status_is(kube, UUID_A, inUse=False, isClean=False))


async def _has(found: Any, wanted: set[str]) -> bool:
    return wanted <= await found


async def test_a_binding_deleted_at_once_still_sends_its_server_through_a_wipe(
    kube: KubeClient,
) -> None:
    await register(kube, UUID_A, accepted=True, clean=True)
    await eventually(lambda: _class_has(kube, available=[UUID_A], in_use=[]))
    # As Arges' allocators create bindings: with the release finalizer, in the same write.
    await bind(kube, UUID_A, finalizers=[RELEASE_FINALIZER])
    await kube.delete(SERVER_BINDINGS, UUID_A)
    # Whether or not anything saw the binding, the server is recorded as released, and the
    # binding goes only then.
    await eventually(lambda: _status_is(kube, UUID_A, inUse=False, isClean=False))
    await eventually(lambda: _binding_gone(kube, UUID_A), what="the binding gone")


async def test_a_cycle_asked_for_the_releases_wipe_outlives_the_release(
    kube: KubeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    await register(kube, UUID_A, accepted=True, clean=True)
    await bind(kube, UUID_A, finalizers=[RELEASE_FINALIZER])
    await eventually(lambda: _status_is(kube, UUID_A, inUse=True, isClean=False))
    await kube.patch(
        SERVERS, UUID_A, {"status": {"conditions": [EARLIER_CYCLE]}}, subresource="status"
    )
    # The power controller sees the binding go too, and may ask for the wipe's cycle before
    # the server controller records the release (whose write is then refused, and made
    # again on the newer Server): reproduced by writing that cycle just ahead of it.
    real = KubeClient.patch
    raced: list[dict[str, Any]] = []

    async def patch(client: KubeClient, res: Any, name: str, body: Any, *a: Any, **kw: Any) -> Any:
        status = body.get("status") or {} if isinstance(body, dict) else {}
        if res is SERVERS and status.get("inUse") is False and not raced:
            now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            raced.append(
                {
                    **EARLIER_CYCLE,
                    "message": "power cycle requested (wipe)",
                    "lastTransitionTime": now,
                }
            )
            await real(
                client, SERVERS, name, {"status": {"conditions": raced}}, subresource="status"
            )
        return await real(client, res, name, body, *a, **kw)

    monkeypatch.setattr(KubeClient, "patch", patch)
    await kube.delete(SERVER_BINDINGS, UUID_A)
    await eventually(lambda: _status_is(kube, UUID_A, inUse=False, isClean=False))
    assert raced, "the release was recorded"
    assert await _condition(kube, UUID_A, "PowerCycle") == raced[0], "the wipe's cycle is kept"


async def test_a_release_drops_a_cycle_asked_before_it(kube: KubeClient) -> None:
    await register(kube, UUID_A, accepted=True, clean=True)
    await bind(kube, UUID_A, finalizers=[RELEASE_FINALIZER])
    await eventually(lambda: _status_is(kube, UUID_A, inUse=True, isClean=False))
    await kube.patch(
        SERVERS, UUID_A, {"status": {"conditions": [EARLIER_CYCLE]}}, subresource="status"
    )
    await kube.delete(SERVER_BINDINGS, UUID_A)
    await eventually(lambda: _status_is(kube, UUID_A, inUse=False, isClean=False))
    assert await _condition(kube, UUID_A, "PowerCycle") is None, "it does not hold off the wipe"


async def _binding_gone(kube: KubeClient, name: str) -> bool:
    return name not in {b["metadata"]["name"] for b in await kube.list(SERVER_BINDINGS)}


async def test_unaccepted_servers_are_never_clean(kube: KubeClient) -> None:
    await register(kube, UUID_A, accepted=False, clean=True)
    await eventually(lambda: _status_is(kube, UUID_A, isClean=False))


async def test_a_bound_server_cannot_be_deleted(kube: KubeClient) -> None:
    await register(kube, UUID_A, accepted=True, clean=True)
    await eventually(lambda: _has_finalizer(kube, UUID_A))
    await bind(kube, UUID_A)
    await kube.delete(SERVERS, UUID_A)
    await eventually(lambda: _condition(kube, UUID_A, "DeletionBlocked"))
    await asyncio.sleep(0.3)
    assert (await kube.get(SERVERS, UUID_A))["metadata"]["deletionTimestamp"]
    await kube.delete(SERVER_BINDINGS, UUID_A)
    await eventually(lambda: _gone(kube, UUID_A))


async def test_concurrent_allocations_for_one_server_exactly_one_wins(
    kube: KubeClient, plane: ManagementPlane
) -> None:
    await register(kube, UUID_A, accepted=True, clean=True)
    await eventually(lambda: _class_has(kube, available=[UUID_A], in_use=[]))
    any_class = ServerClass.from_json(await kube.get(SERVER_CLASSES, "any"))
    servers = {UUID_A: Server.from_json(await kube.get(SERVERS, UUID_A))}
    results = await asyncio.gather(
        *(
            allocate(
                kube,
                any_class,
                servers,
                set(),
                consumer=ObjectReference(api_version="v1", kind="Test", name=f"c{i}"),
            )
            for i in range(5)
        )
    )
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    bindings = await kube.list(SERVER_BINDINGS)
    assert [b["metadata"]["name"] for b in bindings] == [UUID_A]
    assert bindings[0]["spec"]["consumerRef"]["name"] == winners[0].spec.consumer_ref.name


async def test_allocation_skips_dirty_and_unqualified_servers(kube: KubeClient) -> None:
    await register(kube, UUID_A, accepted=True, clean=False)
    await register(kube, UUID_B, accepted=True, clean=True)
    any_class = ServerClass.from_json(await kube.get(SERVER_CLASSES, "any"))
    await eventually(lambda: _status_is(kube, UUID_B, isClean=True))
    servers = {b["metadata"]["name"]: Server.from_json(b) for b in await kube.list(SERVERS)}
    got = await allocate(
        kube,
        any_class,
        servers,
        set(),
        consumer=ObjectReference(api_version="v1", kind="Test", name="t"),
    )
    assert got is not None and got.name == UUID_B
    again = await allocate(
        kube,
        any_class,
        servers,
        {UUID_B},
        consumer=ObjectReference(api_version="v1", kind="Test", name="u"),
    )
    assert again is None


@pytest.fixture
async def allocator(plane: ManagementPlane) -> AsyncIterator[KubeClient]:
    """A client of the allocator's own, to count or hold its requests: the plane's
    controllers share ``plane.kube`` and read servers at the same time."""
    assert plane.api is not None
    async with KubeClient(from_kubeconfig(plane.api.kubeconfig_path)) as client:
        yield client


async def three_clean_servers(kube: KubeClient) -> dict[str, Server]:
    """Servers A, B and C registered, accepted and clean: an allocator's view of them."""
    for uuid in (UUID_A, UUID_B, UUID_C):
        await register(kube, uuid, accepted=True, clean=True)
    for uuid in (UUID_A, UUID_B, UUID_C):
        await eventually(lambda u=uuid: _status_is(kube, u, isClean=True))
    return {b["metadata"]["name"]: Server.from_json(b) for b in await kube.list(SERVERS)}


async def test_servers_found_taken_are_asked_for_once_by_a_caller_binding_several(
    kube: KubeClient, allocator: KubeClient
) -> None:
    # The caller's view (servers read before) has not seen the bindings another allocator
    # makes next (A and B).
    servers = await three_clean_servers(kube)
    await bind(kube, UUID_A)
    await bind(kube, UUID_B)
    any_class = ServerClass.from_json(await kube.get(SERVER_CLASSES, "any"))
    asked: list[str] = []
    create, get = allocator.create, allocator.get

    async def counted_create(resource: Any, body: Any, *args: Any, **kwargs: Any) -> Any:
        if resource == SERVER_BINDINGS:
            asked.append(f"create {body['metadata']['name']}")
        return await create(resource, body, *args, **kwargs)

    async def counted_get(resource: Any, name: str, *args: Any, **kwargs: Any) -> Any:
        if resource == SERVERS:
            asked.append(f"get {name}")
        return await get(resource, name, *args, **kwargs)

    allocator.create = counted_create  # type: ignore[method-assign]
    allocator.get = counted_get  # type: ignore[method-assign]
    bound: set[str] = set()
    consumer = ObjectReference(api_version="v1", kind="Test", name="t")
    got = await allocate(allocator, any_class, servers, bound, consumer=consumer)
    assert got is not None and got.name == UUID_C
    # A and B are each read once, and bound only if the read came before the Server
    # controller marked them in use (then the create meets 409); C is read and bound.
    assert [a for a in asked if a.startswith("get")] == [
        f"get {u}" for u in (UUID_A, UUID_B, UUID_C)
    ]
    assert asked[-1] == f"create {UUID_C}"
    assert bound == {UUID_A, UUID_B, UUID_C}
    before = len(asked)
    assert await allocate(allocator, any_class, servers, bound, consumer=consumer) is None
    assert len(asked) == before  # nothing asked for again


async def test_a_caller_binding_several_locks_them_at_once(
    kube: KubeClient, allocator: KubeClient
) -> None:
    servers = await three_clean_servers(kube)
    any_class = ServerClass.from_json(await kube.get(SERVER_CLASSES, "any"))
    started: list[str] = []
    all_started = asyncio.Event()
    create = allocator.create

    async def held_create(resource: Any, body: Any, *args: Any, **kwargs: Any) -> Any:
        # Each create waits for the other two: one after another, they never would.
        if resource == SERVER_BINDINGS:
            started.append(body["metadata"]["name"])
            if len(started) == 3:
                all_started.set()
            await asyncio.wait_for(all_started.wait(), 10)
        return await create(resource, body, *args, **kwargs)

    allocator.create = held_create  # type: ignore[method-assign]
    bound: set[str] = set()
    consumer = ObjectReference(api_version="v1", kind="Test", name="t")
    made = await allocate_many(allocator, any_class, servers, bound, 3, consumer=consumer)
    assert sorted(b.name for b in made) == sorted([UUID_A, UUID_B, UUID_C])
    assert bound == {UUID_A, UUID_B, UUID_C}


async def test_a_caller_binding_several_moves_past_servers_taken_since_its_view(
    kube: KubeClient,
) -> None:
    servers = await three_clean_servers(kube)
    first = sorted([UUID_A, UUID_B, UUID_C])[0]
    await bind(kube, first)
    any_class = ServerClass.from_json(await kube.get(SERVER_CLASSES, "any"))
    consumer = ObjectReference(api_version="v1", kind="Test", name="t")
    bound: set[str] = set()
    made = await allocate_many(kube, any_class, servers, bound, 2, consumer=consumer)
    assert sorted(b.name for b in made) == sorted({UUID_A, UUID_B, UUID_C} - {first})
    assert all(b.spec.consumer_ref.name == "t" for b in made)
    # Asked for more than there are, it binds what is left and says no more.
    assert await allocate_many(kube, any_class, servers, bound, 2, consumer=consumer) == []


async def test_a_server_dirty_since_the_callers_view_is_not_bound(kube: KubeClient) -> None:
    await register(kube, UUID_A, accepted=True, clean=True)
    await eventually(lambda: _status_is(kube, UUID_A, isClean=True))
    servers = {UUID_A: Server.from_json(await kube.get(SERVERS, UUID_A))}
    # Re-inspected, say: the caller's view (its cache) still says clean.
    await kube.patch(SERVERS, UUID_A, {"status": {"isClean": False}}, subresource="status")
    any_class = ServerClass.from_json(await kube.get(SERVER_CLASSES, "any"))
    bound: set[str] = set()
    consumer = ObjectReference(api_version="v1", kind="Test", name="t")
    assert await allocate(kube, any_class, servers, bound, consumer=consumer) is None
    assert bound == {UUID_A}
    # No binding was made (and none given back: a binding deleted sends its server through
    # a wipe, and makes an Event of a release that never was).
    assert await _binding_gone(kube, UUID_A)


async def test_a_server_the_server_controller_marks_at_once_stays_bound(
    kube: KubeClient, allocator: KubeClient
) -> None:
    # Regression: the allocator read the server after taking the lock; when the Server
    # controller had already marked it in use and not clean (its answer to the binding), the
    # allocator took that for a dirty server, gave the binding back, and the server went to
    # a wipe instead of the cluster. Here every binding create returns only once the Server
    # controller has answered it.
    await register(kube, UUID_A, accepted=True, clean=True)
    await eventually(lambda: _class_has(kube, available=[UUID_A], in_use=[]))
    servers = {UUID_A: Server.from_json(await kube.get(SERVERS, UUID_A))}
    any_class = ServerClass.from_json(await kube.get(SERVER_CLASSES, "any"))
    create = allocator.create

    async def slow_create(resource: Any, body: Any, *args: Any, **kwargs: Any) -> Any:
        created = await create(resource, body, *args, **kwargs)
        if resource == SERVER_BINDINGS:
            name = body["metadata"]["name"]
            await eventually(lambda: _status_is(kube, name, inUse=True, isClean=False))
        return created

    allocator.create = slow_create  # type: ignore[method-assign]
    consumer = ObjectReference(api_version="v1", kind="Test", name="t")
    got = await allocate(allocator, any_class, servers, set(), consumer=consumer)
    assert got is not None and got.name == UUID_A
    await asyncio.sleep(0.3)
    binding = await kube.get(SERVER_BINDINGS, UUID_A)
    assert not binding["metadata"].get("deletionTimestamp")
    assert (await status_of(kube, UUID_A)).get("inUse") is True


async def test_invalid_qualifiers_are_reported_naming_the_field(kube: KubeClient) -> None:
    await kube.create(
        SERVER_CLASSES,
        {
            "metadata": {"name": "big"},
            "spec": {
                "qualifiers": {
                    "expressions": [
                        "hardware.compute.totalCoreCount >= 2",
                        "hardware.cpu.cores > 1",
                    ]
                }
            },
        },
    )
    cond = await eventually(lambda: _class_condition(kube, "big", "Valid"))
    assert cond["status"] == "False" and cond["reason"] == "InvalidQualifier"
    assert cond["message"].startswith("spec.qualifiers.expressions[1]:")
    await kube.patch(
        SERVER_CLASSES,
        "big",
        {"spec": {"qualifiers": {"expressions": ["hardware.compute.totalCoreCount >= 2"]}}},
    )
    await register(kube, UUID_A, accepted=True, clean=True)
    await eventually(lambda: _class_has(kube, available=[UUID_A], in_use=[], name="big"))


async def test_membership_writes_wait_their_turn_and_a_spec_change_is_answered_at_once(
    kube: KubeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    picky = {"selector": {"matchLabels": {"pick": "me"}}}
    await kube.create(SERVER_CLASSES, {"metadata": {"name": "picky"}, "spec": picky})
    await eventually(lambda: _class_condition(kube, "picky", "Valid"))
    # From now on a class's membership lists may be written once an hour.
    monkeypatch.setattr(classes, "MEMBERSHIP_WRITE_SECONDS", 3600.0)
    await register(kube, UUID_A, accepted=True, clean=True)
    await register(kube, UUID_B, accepted=True, clean=True)
    await kube.patch(SERVERS, UUID_A, {"metadata": {"labels": {"pick": "me"}}})
    await asyncio.sleep(2.5)
    assert (await class_status(kube, "picky")).get("serversAvailable") == []
    # A new spec is not a membership change: it is written at once, with its members.
    await kube.patch(SERVER_CLASSES, "picky", {"spec": {"selector": None}})
    await eventually(lambda: _class_has(kube, available=[UUID_A, UUID_B], in_use=[], name="picky"))
    valid = await _class_condition(kube, "picky", "Valid")
    assert valid is not None and valid["observedGeneration"] == 2


async def test_the_any_class_comes_back_when_deleted(kube: KubeClient) -> None:
    await register(kube, UUID_A, accepted=True, clean=True)
    await eventually(lambda: _class_has(kube, available=[UUID_A], in_use=[]))
    first = (await kube.get(SERVER_CLASSES, "any"))["metadata"]["uid"]
    await kube.delete(SERVER_CLASSES, "any")

    async def recreated() -> bool:
        try:
            body = await kube.get(SERVER_CLASSES, "any")
        except NotFound:
            return False
        return bool(body["metadata"]["uid"] != first)

    await eventually(recreated, what="a new any")
    await eventually(lambda: _class_has(kube, available=[UUID_A], in_use=[]))


async def test_a_memory_module_size_in_sidero_mb_is_refused_saying_the_unit(
    kube: KubeClient,
) -> None:
    spec = {"qualifiers": {"hardware": [{"memory": {"modules": [{"size": 16384}]}}]}}
    with pytest.raises(Invalid) as err:
        await kube.create(SERVER_CLASSES, {"metadata": {"name": "mb"}, "spec": spec})
    assert "sizes are in bytes here; Sidero wrote them in MB" in err.value.message
    spec = {"qualifiers": {"hardware": [{"memory": {"totalSize": "64GB"}}]}}
    await kube.create(SERVER_CLASSES, {"metadata": {"name": "gb"}, "spec": spec})
    cond = await eventually(lambda: _class_condition(kube, "gb", "Valid"))
    assert cond["status"] == "False"
    assert cond["message"].startswith("spec.qualifiers.hardware[0].memory.totalSize:")
    assert 'Sidero\'s "<N> GB"' in cond["message"]


async def test_environments_verify_their_assets(kube: KubeClient, tmp_path: Path) -> None:
    cond = await eventually(lambda: _env_condition(kube, "default"))
    assert cond["status"] == "True", cond
    kernel, initrd = make_assets(tmp_path / "assets" / "other")
    await kube.create(
        ENVIRONMENTS,
        {
            "metadata": {"name": "bad-sum"},
            "spec": {
                "kernel": {"url": kernel.as_uri(), "sha512": "0" * 128},
                "initrd": {"url": initrd.as_uri(), "sha512": sha512(initrd)},
            },
        },
    )
    await kube.create(
        ENVIRONMENTS,
        {
            "metadata": {"name": "missing"},
            "spec": {
                "kernel": {"url": (tmp_path / "assets" / "nonexistent" / "vmlinuz").as_uri()},
                "initrd": {"url": initrd.as_uri()},
            },
        },
    )
    bad = await eventually(lambda: _env_condition(kube, "bad-sum"))
    assert (bad["status"], bad["reason"]) == ("False", "ChecksumMismatch")
    missing = await eventually(lambda: _env_condition(kube, "missing"))
    assert (missing["status"], missing["reason"]) == ("False", "FetchFailed")
    assert "/nonexistent/vmlinuz" in missing["message"]
    await kube.patch(ENVIRONMENTS, "bad-sum", {"spec": {"kernel": {"sha512": sha512(kernel)}}})
    fixed = await eventually(lambda: _env_condition(kube, "bad-sum", status="True"))
    assert fixed["reason"] == "AssetsVerified"


async def test_environments_may_not_name_local_files_outside_the_asset_dirs(
    plane: ManagementPlane, kube: KubeClient, tmp_path: Path
) -> None:
    key = tmp_path / "data" / "pki" / "ca.key"
    sneaky = tmp_path / "assets" / "kernel-link"
    sneaky.parent.mkdir(parents=True, exist_ok=True)
    sneaky.symlink_to(key)
    _, initrd = make_assets(tmp_path / "assets" / "ok")
    for name, url in (
        ("ca-key", key.as_uri()),
        ("through-a-link", sneaky.as_uri()),
        ("up-and-out", f"{(tmp_path / 'assets').as_uri()}/../data/pki/ca.key"),
        ("other-host", f"file://fileserver{key}"),
        ("ftp", "ftp://example.com/vmlinuz"),
    ):
        await kube.create(
            ENVIRONMENTS,
            {
                "metadata": {"name": name},
                "spec": {"kernel": {"url": url}, "initrd": {"url": initrd.as_uri()}},
            },
        )
    for name in ("ca-key", "through-a-link", "up-and-out", "other-host"):
        refused = await eventually(lambda n=name: _env_condition(kube, n))
        assert (refused["status"], refused["reason"]) == ("False", "URLNotAllowed"), name
        assert f"allowed: {tmp_path / 'assets'}" in refused["message"]
        assert plane.assets.cached(name, "kernel") is None, "nothing was read or cached"
    ftp = await eventually(lambda: _env_condition(kube, "ftp"))
    assert (ftp["status"], ftp["reason"]) == ("False", "InvalidURL")
    assert "only http:// and https://" in ftp["message"]


async def test_the_checked_in_deploy_files_are_current() -> None:
    deploy = Path(__file__).parents[3] / "deploy"
    for name, text in deploy_files().items():
        assert (deploy / name).read_text() == text, (
            f"deploy/{name} is stale: run `python -m arges.api.manifests deploy`"
        )
    for definition in DEFINITIONS:
        path = deploy / "crds" / f"{definition.name}.yaml"
        assert yaml.safe_load(path.read_text())["spec"]["names"]["kind"] == definition.kind


async def test_kubectl_shows_server_columns(plane: ManagementPlane, kube: KubeClient) -> None:
    await register(kube, UUID_A, accepted=True, clean=True)
    await eventually(lambda: _status_is(kube, UUID_A, inUse=False, isClean=True))
    from tests.integration.conftest import kubectl_binary

    proc = await asyncio.create_subprocess_exec(
        kubectl_binary(),
        "--kubeconfig",
        str(plane.api.kubeconfig_path),
        "get",
        "servers",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    lines = out.decode().splitlines()
    assert lines[0].split() == [
        "NAME",
        "HOSTNAME",
        "ACCEPTED",
        "CORDONED",
        "ALLOCATED",
        "CLEAN",
        "POWER",
        "AGE",
    ], err
    assert lines[1].split()[:6] == [UUID_A, "host-4c4c", "true", "false", "false", "true"]


async def _status_is(kube: KubeClient, name: str, **want: object) -> bool:
    status = await status_of(kube, name)
    return all(status.get(k) == v for k, v in want.items())


async def _class_has(
    kube: KubeClient, *, available: list[str], in_use: list[str], name: str = "any"
) -> bool:
    status = await class_status(kube, name)
    return status.get("serversAvailable") == available and status.get("serversInUse") == in_use


async def _has_finalizer(kube: KubeClient, name: str) -> bool:
    return bool((await kube.get(SERVERS, name))["metadata"].get("finalizers"))


async def _condition(kube: KubeClient, name: str, kind: str) -> dict | None:
    for cond in (await status_of(kube, name)).get("conditions") or []:
        if cond["type"] == kind:
            return cond
    return None


async def _class_condition(kube: KubeClient, name: str, kind: str) -> dict | None:
    for cond in (await class_status(kube, name)).get("conditions") or []:
        if cond["type"] == kind:
            return cond
    return None


async def _env_condition(kube: KubeClient, name: str, status: str | None = None) -> dict | None:
    try:
        env = await kube.get(ENVIRONMENTS, name)
    except NotFound:
        return None
    for cond in (env.get("status") or {}).get("conditions") or []:
        if cond["type"] == "Ready" and (status is None or cond["status"] == status):
            return cond
    return None


async def _gone(kube: KubeClient, name: str) -> bool:
    try:
        await kube.get(SERVERS, name)
    except NotFound:
        return True
    return False
