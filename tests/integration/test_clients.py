"""The API server driven by the Python Kubernetes clients that controllers use."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import kopf
import pytest
from kubernetes_asyncio import client, config, watch
from kubernetes_asyncio.client.exceptions import ApiException

from tests.integration.conftest import WIDGETS, Cluster, eventually, widget

GROUP, VERSION, PLURAL = "example.arges.dev", "v1", "widgets"
# kubernetes-asyncio picks application/json-patch+json for custom objects unless told otherwise.
MERGE = "application/merge-patch+json"


@pytest.fixture
async def k8s(widgets: Cluster):
    cfg = client.Configuration()
    await config.load_kube_config(
        config_file=str(widgets.server.kubeconfig_path), client_configuration=cfg
    )
    async with client.ApiClient(cfg) as api:
        yield api


async def test_list_then_watch_from_the_list_revision(k8s: client.ApiClient) -> None:
    objects = client.CustomObjectsApi(k8s)
    for name in ("a", "b"):
        await objects.create_namespaced_custom_object(
            GROUP, VERSION, "default", PLURAL, widget(name)
        )
    listed = await objects.list_namespaced_custom_object(GROUP, VERSION, "default", PLURAL)
    assert [i["metadata"]["name"] for i in listed["items"]] == ["a", "b"]
    rv = listed["metadata"]["resourceVersion"]

    async def changes() -> None:
        await asyncio.sleep(0.3)
        await objects.patch_namespaced_custom_object(
            GROUP, VERSION, "default", PLURAL, "a", {"spec": {"size": 2}}, _content_type=MERGE
        )
        await objects.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "b")

    writer = asyncio.create_task(changes())
    seen: list[tuple[str, str]] = []
    w = watch.Watch()
    async with asyncio.timeout(10):
        async for event in w.stream(
            objects.list_namespaced_custom_object,
            GROUP,
            VERSION,
            "default",
            PLURAL,
            resource_version=rv,
            timeout_seconds=10,
        ):
            seen.append((event["type"], event["object"]["metadata"]["name"]))
            if len(seen) == 2:
                w.stop()
    await writer
    assert seen == [("MODIFIED", "a"), ("DELETED", "b")]


async def test_status_patches_and_conflicts(k8s: client.ApiClient) -> None:
    objects = client.CustomObjectsApi(k8s)
    created = await objects.create_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, widget("w")
    )
    patched = await objects.patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        "default",
        PLURAL,
        "w",
        {"status": {"conditions": [{"type": "Ready", "status": "True"}]}},
        _content_type=MERGE,
    )
    assert patched["status"]["conditions"][0]["status"] == "True"
    assert patched["metadata"]["generation"] == 1
    stale = created
    stale["spec"]["size"] = 5
    with pytest.raises(ApiException) as err:
        await objects.replace_namespaced_custom_object(
            GROUP, VERSION, "default", PLURAL, "w", stale
        )
    assert err.value.status == 409
    fresh = await objects.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "w")
    fresh["spec"]["size"] = 5
    replaced = await objects.replace_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, "w", fresh
    )
    assert replaced["metadata"]["generation"] == 2
    core = client.CoreV1Api(k8s)
    await core.create_namespaced_config_map(
        "default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="cm"), data={"a": "b"})
    )
    cm = await core.read_namespaced_config_map("cm", "default")
    assert cm.data == {"a": "b"}
    with pytest.raises(ApiException) as err:
        await core.read_namespaced_config_map("missing", "default")
    assert err.value.status == 404


async def test_a_kopf_operator_reconciles(
    widgets: Cluster, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    monkeypatch.setenv("KUBECONFIG", str(widgets.server.kubeconfig_path))
    registry = kopf.OperatorRegistry()
    deleted: list[str] = []

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> Any:
        return kopf.login_with_kubeconfig(**kwargs)

    @kopf.on.create(GROUP, VERSION, PLURAL, registry=registry)
    async def created(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
        patch.status["conditions"] = [{"type": "Ready", "status": "True"}]
        kopf.info(body, reason="Reconciled", message="widget is ready")

    @kopf.on.delete(GROUP, VERSION, PLURAL, registry=registry)
    async def removed(name: str, **_: Any) -> None:
        deleted.append(name)

    settings = kopf.OperatorSettings()
    settings.watching.server_timeout = 10
    stop = asyncio.Event()
    operator = asyncio.create_task(
        kopf.operator(
            registry=registry,
            settings=settings,
            standalone=True,
            namespaces=["default"],
            stop_flag=stop,
        )
    )
    try:
        await widgets.api.post(WIDGETS, widget("k1"))

        async def ready() -> bool:
            _, obj = await widgets.api.get(f"{WIDGETS}/k1")
            return bool((obj.get("status") or {}).get("conditions"))

        await eventually(ready, timeout=20)
        _, obj = await widgets.api.get(f"{WIDGETS}/k1")
        assert "kopf.zalando.org/KopfFinalizerMarker" in obj["metadata"]["finalizers"]

        async def posted() -> bool:
            _, events = await widgets.api.get(
                "/api/v1/namespaces/default/events",
                params={"fieldSelector": "involvedObject.name=k1,involvedObject.kind=Widget"},
            )
            return [(e["reason"], e["message"]) for e in events["items"]] == [
                ("Reconciled", "widget is ready")
            ]

        await eventually(posted, timeout=20)
        await widgets.api.delete(f"{WIDGETS}/k1")

        async def gone() -> bool:
            return (await widgets.api.get(f"{WIDGETS}/k1"))[0] == 404

        await eventually(gone, timeout=20)
        assert deleted == ["k1"]
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(operator, 15)
    problems = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not problems, [r.getMessage() for r in problems]
