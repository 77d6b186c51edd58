"""The API server driven by real kubectl, every supported minor version."""

from __future__ import annotations

import asyncio
import base64
import json

import pytest
import yaml

from tests.integration.conftest import (
    KUBECTL_VERSIONS,
    WIDGET_CRD,
    WIDGETS,
    Cluster,
    widget,
)

W1 = yaml.safe_dump(widget("w1", 3, labels={"app": "demo"}))


@pytest.mark.parametrize("version", KUBECTL_VERSIONS)
async def test_core_workflow_with_every_kubectl(cluster: Cluster, version: str) -> None:
    k = cluster.kubectl
    out = await k("apply", "-f", "-", stdin=yaml.safe_dump(WIDGET_CRD), version=version)
    assert "created" in out.out
    out = await k("apply", "-f", "-", stdin=yaml.safe_dump(WIDGET_CRD), version=version)
    assert "unchanged" in out.out
    assert "created" in (await k("apply", "-f", "-", stdin=W1, version=version)).out
    assert "unchanged" in (await k("apply", "-f", "-", stdin=W1, version=version)).out
    await k("apply", "-f", "-", stdin=W1.replace("size: 3", "size: 5"), version=version)
    await k(
        "patch", "wd", "w1", "--type", "merge", "-p", '{"spec":{"color":"red"}}', version=version
    )
    await k(
        "patch",
        "wd",
        "w1",
        "--type",
        "json",
        "-p",
        '[{"op":"add","path":"/spec/tags","value":["a"]}]',
        version=version,
    )
    got = json.loads((await k("get", "widget", "w1", "-o", "json", version=version)).out)
    assert got["spec"] == {"size": 5, "color": "red", "tags": ["a"]}
    assert got["metadata"]["generation"] == 4
    wide = (await k("get", "widgets", "-o", "wide", version=version)).out.splitlines()
    assert wide[0].split() == ["NAME", "SIZE", "COLOR", "READY", "AGE"]
    assert wide[1].split()[:3] == ["w1", "5", "red"]
    # Built-in kinds; kubectl 1.33 sends these as protobuf.
    await k(
        "create", "secret", "generic", "bmc", "--from-literal=password=hunter2", version=version
    )
    await k("create", "configmap", "cfg", "--from-literal=a=b", version=version)
    await k("create", "namespace", "ns-" + version.replace(".", "-"), version=version)
    secret = json.loads((await k("get", "secret", "bmc", "-o", "json", version=version)).out)
    assert base64.b64decode(secret["data"]["password"]) == b"hunter2"
    await k("patch", "configmap", "cfg", "-p", '{"data":{"c":"d"}}', version=version)
    explain = (await k("explain", "widgets.spec.size", version=version)).out
    assert "How big the widget is." in explain
    await k("delete", "widget", "w1", version=version)
    await k("delete", "-f", "-", stdin=yaml.safe_dump(WIDGET_CRD), version=version)
    assert "No resources found" in (await k("get", "crd", version=version)).err


async def test_get_watch_sees_changes(widgets: Cluster) -> None:
    proc = await widgets.kubectl_background("get", "widgets", "-w", "--output-watch-events")
    assert proc.stdout is not None
    try:
        await asyncio.sleep(1.0)
        await widgets.api.post(WIDGETS, widget("w1"))
        await widgets.api.patch(f"{WIDGETS}/w1", {"spec": {"size": 2}})
        await widgets.api.delete(f"{WIDGETS}/w1")
        seen: list[str] = []
        async with asyncio.timeout(10):
            while len(seen) < 3:
                line = (await proc.stdout.readline()).decode()
                if line.split() and line.split()[0] in ("ADDED", "MODIFIED", "DELETED"):
                    seen.append(line.split()[0])
        assert seen == ["ADDED", "MODIFIED", "DELETED"]
    finally:
        proc.terminate()
        await proc.wait()


async def test_delete_waits_for_finalizers(widgets: Cluster) -> None:
    await widgets.api.post(WIDGETS, widget("held", finalizers=["example.arges.dev/hold"]))
    proc = await widgets.kubectl_background("delete", "widget", "held", "--timeout=30s")
    await asyncio.sleep(1.5)
    assert proc.returncode is None, "kubectl delete must wait while a finalizer remains"
    status, body = await widgets.api.get(f"{WIDGETS}/held")
    assert status == 200 and body["metadata"]["deletionTimestamp"]
    await widgets.api.patch(
        f"{WIDGETS}/held", [{"op": "remove", "path": "/metadata/finalizers"}], kind="json"
    )
    async with asyncio.timeout(10):
        assert await proc.wait() == 0
    assert (await widgets.api.get(f"{WIDGETS}/held"))[0] == 404


async def test_bad_objects_are_refused_readably(widgets: Cluster) -> None:
    bad = yaml.safe_dump(widget("bad", 0) | {"spec": {"size": 0, "color": "pink"}})
    out = await widgets.kubectl("apply", "-f", "-", stdin=bad, check=False)
    assert out.code == 1
    assert 'The Widget "bad" is invalid' in out.err
    assert (
        '* spec.color: Unsupported value: "pink": supported values: "blue", "red", "green"'
        in out.err
    )
    assert (
        "* spec.size: Invalid value: 0: spec.size in body should be greater than or equal to 1"
        in out.err
    )
    unknown = yaml.safe_dump(widget("bad2") | {"spec": {"size": 1, "bogus": True}})
    out = await widgets.kubectl("apply", "-f", "-", stdin=unknown, check=False)
    assert out.code == 1 and 'unknown field "spec.bogus"' in out.err
    out = await widgets.kubectl("create", "configmap", "Bad_Name", check=False)
    assert out.code == 1 and "RFC 1123 subdomain" in out.err


async def test_edit_and_wait(widgets: Cluster) -> None:
    await widgets.api.post(WIDGETS, widget("w1", 5))
    await widgets.kubectl("edit", "widget", "w1", env={"EDITOR": "sed -i s/size:\\ 5/size:\\ 7/"})
    assert (await widgets.api.get(f"{WIDGETS}/w1"))[1]["spec"]["size"] == 7
    waiter = await widgets.kubectl_background(
        "wait", "--for=condition=Ready", "widget/w1", "--timeout=20s"
    )
    await asyncio.sleep(1)
    status, _ = await widgets.api.patch(
        f"{WIDGETS}/w1/status", {"status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    )
    assert status == 200
    async with asyncio.timeout(15):
        assert await waiter.wait() == 0


async def test_describe_shows_events_about_the_object(widgets: Cluster) -> None:
    _, obj = await widgets.api.post(WIDGETS, widget("w1"))
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": "w1."},
        "involvedObject": {
            "apiVersion": "example.arges.dev/v1",
            "kind": "Widget",
            "name": "w1",
            "namespace": "default",
            "uid": obj["metadata"]["uid"],
        },
        "reason": "Polished",
        "message": "the widget shines",
        "type": "Normal",
        "source": {"component": "tester"},
        "firstTimestamp": obj["metadata"]["creationTimestamp"],
        "lastTimestamp": obj["metadata"]["creationTimestamp"],
        "count": 1,
    }
    status, body = await widgets.api.post("/api/v1/namespaces/default/events", event)
    assert status == 201, body
    described = (await widgets.kubectl("describe", "widget", "w1")).out
    assert "Polished" in described and "the widget shines" in described
    events = (await widgets.kubectl("get", "events")).out
    assert "widget/w1" in events


async def test_label_and_field_selectors_through_kubectl(widgets: Cluster) -> None:
    await widgets.api.post(WIDGETS, widget("a", labels={"tier": "gold"}))
    await widgets.api.post(WIDGETS, widget("b", labels={"tier": "silver"}))
    await widgets.api.patch(f"{WIDGETS}/b", {"spec": {"color": "green"}})
    names = (await widgets.kubectl("get", "wd", "-l", "tier in (gold)", "-o", "name")).out
    assert names.split() == ["widget.example.arges.dev/a"]
    names = (
        await widgets.kubectl("get", "wd", "--field-selector", "spec.color=green", "-o", "name")
    ).out
    assert names.split() == ["widget.example.arges.dev/b"]
    names = (await widgets.kubectl("get", "wd", "-A", "-l", "tier!=gold", "-o", "name")).out
    assert names.split() == ["widget.example.arges.dev/b"]
