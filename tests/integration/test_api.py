"""Kubernetes API semantics, checked over HTTP against a running server."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

from tests.integration.conftest import WIDGETS, Cluster, eventually, widget

CM = "/api/v1/namespaces/default/configmaps"
NS = "/api/v1/namespaces"
CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"


def configmap(name: str, **meta: object) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, **meta},
        "data": {"k": "v"},
    }


async def test_authentication_and_public_endpoints(cluster: Cluster) -> None:
    api = cluster.api
    for path in ("/readyz", "/livez", "/healthz"):
        async with api.session.get(api.base + path) as resp:
            assert (resp.status, await resp.text()) == (200, "ok")
    async with api.session.get(api.base + "/api/v1/namespaces") as resp:
        assert resp.status == 401
        body = await resp.json()
        assert (body["kind"], body["reason"], body["code"]) == ("Status", "Unauthorized", 401)
    async with api.session.get(
        api.base + "/api/v1/namespaces", headers={"Authorization": "Bearer wrong"}
    ) as resp:
        assert resp.status == 401
    status, version = await api.get("/version")
    assert status == 200 and version["major"] == "1"


async def test_discovery_legacy_and_aggregated(widgets: Cluster) -> None:
    api = widgets.api
    _, groups = await api.get("/apis")
    names = [g["name"] for g in groups["groups"]]
    assert "example.arges.dev" in names and "apiextensions.k8s.io" in names
    _, resources = await api.get("/apis/example.arges.dev/v1")
    assert {r["name"] for r in resources["resources"]} == {"widgets", "widgets/status"}
    _, core = await api.get("/api/v1")
    assert {"namespaces", "secrets", "configmaps", "events"} <= {
        r["name"] for r in core["resources"]
    }
    accept = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    async with api.session.get(api.base + "/apis", headers={**api.headers, "Accept": accept}) as r:
        assert r.headers["Content-Type"] == accept
        agg = await r.json()
    widget_group = next(i for i in agg["items"] if i["metadata"]["name"] == "example.arges.dev")
    res = widget_group["versions"][0]["resources"][0]
    assert (res["resource"], res["scope"], res["subresources"][0]["subresource"]) == (
        "widgets",
        "Namespaced",
        "status",
    )


async def test_create_fills_system_metadata(widgets: Cluster) -> None:
    status, obj = await widgets.api.post(
        WIDGETS, widget("", generateName="auto-") | {"metadata": {"generateName": "auto-"}}
    )
    assert status == 201
    meta = obj["metadata"]
    assert meta["name"].startswith("auto-") and len(meta["name"]) == len("auto-") + 5
    assert meta["uid"] and meta["creationTimestamp"].endswith("Z")
    assert meta["generation"] == 1 and int(meta["resourceVersion"]) > 0
    assert obj["spec"]["color"] == "blue", "schema defaults applied"
    status, err = await widgets.api.post(WIDGETS, widget(meta["name"]))
    assert (status, err["reason"]) == (409, "AlreadyExists")
    status, err = await widgets.api.post(
        WIDGETS, widget("x") | {"metadata": {"name": "x", "resourceVersion": "5"}}
    )
    assert status == 400


async def test_optimistic_concurrency_and_generation(widgets: Cluster) -> None:
    api = widgets.api
    _, obj = await api.post(WIDGETS, widget("w"))
    rv1 = obj["metadata"]["resourceVersion"]
    obj["spec"]["size"] = 2
    status, updated = await api.put(f"{WIDGETS}/w", obj)
    assert status == 200 and updated["metadata"]["generation"] == 2
    status, err = await api.put(f"{WIDGETS}/w", obj)
    assert (status, err["reason"]) == (409, "Conflict")
    assert "the object has been modified" in err["message"]
    del obj["metadata"]["resourceVersion"]
    status, err = await api.put(f"{WIDGETS}/w", obj)
    assert status == 422 and "must be specified for an update" in err["message"]
    status, same = await api.patch(f"{WIDGETS}/w", {"spec": {"size": 2}})
    assert same["metadata"]["resourceVersion"] == updated["metadata"]["resourceVersion"], (
        "a no-op update writes nothing"
    )
    status, labelled = await api.patch(f"{WIDGETS}/w", {"metadata": {"labels": {"a": "b"}}})
    assert labelled["metadata"]["generation"] == 2, "metadata changes do not bump generation"
    status, err = await api.patch(
        f"{WIDGETS}/w", {"metadata": {"resourceVersion": rv1}, "spec": {"size": 9}}
    )
    assert status == 409, "a patch that names a stale resourceVersion is a precondition"


async def test_status_is_a_subresource(widgets: Cluster) -> None:
    api = widgets.api
    obj = widget("w") | {"status": {"observedGeneration": 42}}
    _, created = await api.post(WIDGETS, obj)
    assert "status" not in created, "create cannot set status"
    _, s = await api.patch(
        f"{WIDGETS}/w/status", {"status": {"observedGeneration": 1}, "spec": {"size": 99}}
    )
    assert s["status"] == {"observedGeneration": 1} and s["spec"]["size"] == 1
    assert s["metadata"]["generation"] == 1
    _, main = await api.patch(f"{WIDGETS}/w", {"status": {"observedGeneration": 7}})
    assert main["status"] == {"observedGeneration": 1}, "main resource ignores status"
    status, full = await api.get(f"{WIDGETS}/w/status")
    assert status == 200 and full["status"]["observedGeneration"] == 1
    status, _ = await api.get("/api/v1/namespaces/default/configmaps/x/status")
    assert status == 404


async def test_validation_and_field_validation_modes(widgets: Cluster) -> None:
    api = widgets.api
    status, err = await api.post(WIDGETS, widget("w", 0))
    assert status == 422 and err["reason"] == "Invalid"
    assert err["details"]["causes"] == [
        {
            "reason": "FieldValueInvalid",
            "field": "spec.size",
            "message": "Invalid value: 0: spec.size in body should be greater than or equal to 1",
        }
    ]
    bogus = widget("w") | {"spec": {"size": 1, "bogus": 1}}
    status, err = await api.post(WIDGETS, bogus, params={"fieldValidation": "Strict"})
    assert status == 400 and 'unknown field "spec.bogus"' in err["message"]
    async with api.session.post(api.base + WIDGETS, json=bogus, headers=api.headers) as resp:
        assert resp.status == 201
        assert resp.headers.getall("Warning") == ['299 - "unknown field \\"spec.bogus\\""']
        assert "bogus" not in (await resp.json())["spec"]
    status, err = await api.post(WIDGETS, widget("Not_DNS"))
    assert status == 422 and "RFC 1123 subdomain" in err["message"]
    status, err = await api.post(
        CM, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}}
    )
    assert status == 400 and "does not match the expected kind" in err["message"]


async def test_dry_run_persists_nothing(widgets: Cluster) -> None:
    status, obj = await widgets.api.post(WIDGETS, widget("dry"), params={"dryRun": "All"})
    assert status == 201 and obj["metadata"]["uid"]
    assert (await widgets.api.get(f"{WIDGETS}/dry"))[0] == 404


async def test_finalizers_and_deletion_timestamp(widgets: Cluster) -> None:
    api = widgets.api
    await api.post(WIDGETS, widget("f", finalizers=["example.arges.dev/a"]))
    status, obj = await api.delete(f"{WIDGETS}/f")
    assert status == 200 and obj["metadata"]["deletionTimestamp"]
    assert obj["metadata"]["generation"] == 2
    status, err = await api.patch(
        f"{WIDGETS}/f", {"metadata": {"finalizers": ["example.arges.dev/a", "example.arges.dev/b"]}}
    )
    assert status == 422 and "no new finalizers" in err["message"]
    await api.patch(f"{WIDGETS}/f", {"metadata": {"finalizers": None}})
    assert (await api.get(f"{WIDGETS}/f"))[0] == 404
    _, obj = await api.post(WIDGETS, widget("p"))
    status, err = await api.delete(
        f"{WIDGETS}/p",
        {"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"uid": "not-the-uid"}},
    )
    assert status == 409 and "Precondition failed" in err["message"]


async def test_owner_references_background_foreground_orphan(cluster: Cluster) -> None:
    api = cluster.api

    async def make(name: str, owner: dict | None = None, block: bool = False) -> dict:
        meta: dict = {"name": name}
        if owner:
            meta["ownerReferences"] = [
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "name": owner["metadata"]["name"],
                    "uid": owner["metadata"]["uid"],
                    "blockOwnerDeletion": block,
                }
            ]
        status, obj = await api.post(
            CM, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta}
        )
        assert status == 201, obj
        return obj

    async def gone(name: str) -> bool:
        return (await api.get(f"{CM}/{name}"))[0] == 404

    owner = await make("bg-owner")
    await make("bg-child", owner)
    await api.delete(f"{CM}/bg-owner")
    await eventually(lambda: gone("bg-child"))

    owner = await make("fg-owner")
    await make("fg-child", owner, block=True)
    await api.put(
        f"{CM}/fg-child",
        {
            **(await api.get(f"{CM}/fg-child"))[1],
            "metadata": {
                **(await api.get(f"{CM}/fg-child"))[1]["metadata"],
                "finalizers": ["test/hold"],
            },
        },
    )
    _status, deleting = await api.delete(
        f"{CM}/fg-owner",
        {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Foreground"},
    )
    assert "foregroundDeletion" in deleting["metadata"]["finalizers"]
    await eventually(lambda: _deleting(api, f"{CM}/fg-child"))
    await asyncio.sleep(0.5)
    assert not await gone("fg-owner"), "the owner waits for its blocking dependent"
    await api.patch(f"{CM}/fg-child", {"metadata": {"finalizers": None}})
    await eventually(lambda: gone("fg-owner"))

    owner = await make("or-owner")
    await make("or-child", owner)
    await api.delete(f"{CM}/or-owner", params={"propagationPolicy": "Orphan"})
    await eventually(lambda: gone("or-owner"))
    _, child = await api.get(f"{CM}/or-child")
    assert "ownerReferences" not in child["metadata"]

    await make("dangling", {"metadata": {"name": "ghost", "uid": "no-such-uid"}})
    await eventually(lambda: gone("dangling"))


async def _deleting(api, path: str) -> bool:
    status, obj = await api.get(path)
    return status == 200 and bool(obj["metadata"].get("deletionTimestamp"))


async def test_label_selector_transitions_in_watch(widgets: Cluster) -> None:
    api = widgets.api
    _, listed = await api.get(WIDGETS)
    rv = listed["metadata"]["resourceVersion"]
    await api.post(WIDGETS, widget("w", labels={"tier": "gold"}))
    await api.patch(f"{WIDGETS}/w", {"metadata": {"labels": {"tier": "silver"}}})
    await api.patch(f"{WIDGETS}/w", {"metadata": {"labels": {"tier": "gold"}}})
    await api.patch(f"{WIDGETS}/w", {"spec": {"size": 3}})
    events = await api.watch(
        WIDGETS,
        {"resourceVersion": rv, "labelSelector": "tier=gold"},
        until=lambda ev: len(ev) >= 4,
    )
    assert [e["type"] for e in events] == ["ADDED", "DELETED", "ADDED", "MODIFIED"]


async def test_watch_bookmarks_and_initial_events(widgets: Cluster) -> None:
    api = widgets.api
    await api.post(WIDGETS, widget("a"))
    await api.post(WIDGETS, widget("b"))
    events = await api.watch(
        WIDGETS,
        {
            "sendInitialEvents": "true",
            "resourceVersionMatch": "NotOlderThan",
            "allowWatchBookmarks": "true",
        },
        until=lambda ev: ev[-1]["type"] == "BOOKMARK",
    )
    assert [e["type"] for e in events] == ["ADDED", "ADDED", "BOOKMARK"]
    assert events[-1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
    _, listed = await api.get(WIDGETS)
    quiet = await api.watch(
        WIDGETS,
        {"resourceVersion": listed["metadata"]["resourceVersion"], "allowWatchBookmarks": "true"},
        until=lambda ev: True,
    )
    assert quiet[0]["type"] == "BOOKMARK"
    assert (
        quiet[0]["object"]["metadata"]["resourceVersion"] == listed["metadata"]["resourceVersion"]
    )


async def test_a_watch_bookmarks_after_its_events_and_ends_at_its_timeout(widgets: Cluster) -> None:
    """The idle clock of ``allowWatchBookmarks`` restarts with each event sent, so the last
    bookmark carries the event's revision; ``timeoutSeconds`` ends the stream (the test
    server's bookmark interval is 0.5 s)."""
    api = widgets.api
    _, listed = await api.get(WIDGETS)
    watching = asyncio.create_task(
        api.watch(
            WIDGETS,
            {
                "resourceVersion": listed["metadata"]["resourceVersion"],
                "allowWatchBookmarks": "true",
                "timeoutSeconds": "2",
            },
            until=lambda ev: False,
        )
    )
    _, created = await api.post(WIDGETS, widget("a"))
    events = await watching
    types = [e["type"] for e in events]
    assert "ADDED" in types
    after = events[types.index("ADDED") + 1 :]
    assert after and {e["type"] for e in after} == {"BOOKMARK"}
    bookmarked = int(after[-1]["object"]["metadata"]["resourceVersion"])
    assert bookmarked >= int(created["metadata"]["resourceVersion"])


async def test_paging_is_consistent_across_concurrent_writes(widgets: Cluster) -> None:
    api = widgets.api
    for i in range(7):
        await api.post(WIDGETS, widget(f"w{i}"))
    status, page1 = await api.get(WIDGETS, params={"limit": "3"})
    assert [i["metadata"]["name"] for i in page1["items"]] == ["w0", "w1", "w2"]
    assert page1["metadata"]["remainingItemCount"] == 4
    await api.delete(f"{WIDGETS}/w4")
    await api.post(WIDGETS, widget("w5a"))
    await api.patch(f"{WIDGETS}/w6", {"spec": {"size": 9}})
    names, sizes, token = [], {}, page1["metadata"]["continue"]
    while token:
        status, page = await api.get(WIDGETS, params={"limit": "3", "continue": token})
        assert status == 200, page
        assert page["metadata"]["resourceVersion"] == page1["metadata"]["resourceVersion"]
        names += [i["metadata"]["name"] for i in page["items"]]
        sizes.update({i["metadata"]["name"]: i["spec"]["size"] for i in page["items"]})
        token = page["metadata"].get("continue")
    assert names == ["w3", "w4", "w5", "w6"], "later pages see the first page's revision"
    assert sizes["w6"] == 1
    status, _err = await api.get(WIDGETS, params={"limit": "3", "continue": "garbage!"})
    assert status == 400


async def test_namespaces_gate_and_cascade(cluster: Cluster) -> None:
    api = cluster.api
    status, err = await api.post("/api/v1/namespaces/nowhere/configmaps", configmap("c"))
    assert status == 404 and err["message"] == 'namespaces "nowhere" not found'
    await api.post(NS, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}})
    await api.post("/api/v1/namespaces/team/configmaps", configmap("c1"))
    await api.post("/api/v1/namespaces/team/configmaps", configmap("c2", finalizers=["test/hold"]))
    status, ns = await api.delete(f"{NS}/team")
    assert status == 200 and ns["status"]["phase"] == "Terminating"
    status, err = await api.post("/api/v1/namespaces/team/configmaps", configmap("c3"))
    assert status == 403 and "being terminated" in err["message"]
    await eventually(lambda: _gone(api, "/api/v1/namespaces/team/configmaps/c1"))
    assert (await api.get(f"{NS}/team"))[0] == 200, "held open by the finalizer on c2"
    await api.patch("/api/v1/namespaces/team/configmaps/c2", {"metadata": {"finalizers": None}})
    await eventually(lambda: _gone(api, f"{NS}/team"))


async def _gone(api, path: str) -> bool:
    return (await api.get(path))[0] == 404


async def test_crd_deletion_removes_its_objects(widgets: Cluster) -> None:
    api = widgets.api
    await api.post(WIDGETS, widget("a"))
    await api.post(WIDGETS, widget("held", finalizers=["test/hold"]))
    await api.delete(f"{CRDS}/widgets.example.arges.dev")
    await eventually(lambda: _gone(api, f"{WIDGETS}/a"))
    status, err = await api.post(WIDGETS, widget("new"))
    assert status == 405 and "terminating" in err["message"]
    await api.patch(f"{WIDGETS}/held", {"metadata": {"finalizers": None}})
    await eventually(lambda: _gone(api, f"{CRDS}/widgets.example.arges.dev"))
    assert (await api.get(WIDGETS))[0] == 404


async def test_tables_and_partial_metadata(widgets: Cluster) -> None:
    api = widgets.api
    await api.post(WIDGETS, widget("w", 4))
    table_accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
    _, table = await api.get(WIDGETS, headers={"Accept": table_accept})
    assert table["kind"] == "Table"
    assert [c["name"] for c in table["columnDefinitions"]] == [
        "Name",
        "Size",
        "Color",
        "Ready",
        "Age",
    ]
    assert table["rows"][0]["cells"][:3] == ["w", 4, "blue"]
    assert table["rows"][0]["object"]["kind"] == "PartialObjectMetadata"
    _, table = await api.get(
        f"{WIDGETS}/w", headers={"Accept": table_accept}, params={"includeObject": "Object"}
    )
    assert table["rows"][0]["object"]["spec"]["size"] == 4
    partial = "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io"
    _, meta_list = await api.get(WIDGETS, headers={"Accept": partial})
    assert meta_list["kind"] == "PartialObjectMetadataList"
    assert "spec" not in meta_list["items"][0]
    status, _err = await api.get(WIDGETS, headers={"Accept": "application/vnd.kubernetes.protobuf"})
    assert status == 406


async def test_a_metadata_only_watch_gets_partial_objects_and_bookmarks(cluster: Cluster) -> None:
    """client-go's metadata informers (Cluster API watches Secrets and ConfigMaps so) decode
    every watch event, bookmarks too, as PartialObjectMetadata."""
    api = cluster.api
    cm = "/api/v1/namespaces/default/configmaps"
    _, listed = await api.get(cm)
    accept = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json"
    events: list[dict] = []

    async def watch() -> None:
        async with api.session.get(
            api.base + cm,
            params={
                "watch": "true",
                "allowWatchBookmarks": "true",
                "resourceVersion": listed["metadata"]["resourceVersion"],
            },
            headers={**api.headers, "Accept": accept},
        ) as resp:
            async for line in resp.content:
                events.append(json.loads(line))
                if {e["type"] for e in events} >= {"ADDED", "BOOKMARK"}:
                    return

    watching = asyncio.create_task(watch())
    await api.post(cm, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "m"}})
    await asyncio.wait_for(watching, 10)
    for event in events:
        assert event["object"]["kind"] == "PartialObjectMetadata", event
        assert event["object"]["apiVersion"] == "meta.k8s.io/v1"


async def test_patch_formats(cluster: Cluster) -> None:
    api = cluster.api
    await api.post(CM, configmap("c", finalizers=["a/b"]))
    status, obj = await api.patch(
        f"{CM}/c", {"metadata": {"finalizers": ["c/d"]}, "data": {"x": "y"}}, kind="strategic"
    )
    assert status == 200
    assert obj["metadata"]["finalizers"] == ["a/b", "c/d"], "finalizers merge as a set"
    assert obj["data"] == {"k": "v", "x": "y"}
    status, _ = await api.request("PATCH", f"{CM}/c", {}, content_type="text/plain")
    assert status == 415
    await api.patch(f"{CM}/c", {"metadata": {"finalizers": None}})


async def test_secrets_fold_string_data_and_keep_types(cluster: Cluster) -> None:
    api = cluster.api
    path = "/api/v1/namespaces/default/secrets"
    status, secret = await api.post(
        path,
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "bmc"},
            "stringData": {"username": "admin", "password": "hunter2"},
        },
    )
    assert status == 201 and "stringData" not in secret and secret["type"] == "Opaque"
    assert base64.b64decode(secret["data"]["password"]) == b"hunter2"
    status, err = await api.patch(f"{path}/bmc", {"type": "kubernetes.io/tls"})
    assert status == 422 and "immutable" in err["message"]
    status, listed = await api.get(path, params={"fieldSelector": "type=Opaque"})
    assert [s["metadata"]["name"] for s in listed["items"]] == ["bmc"]
    status, err = await api.post(
        path,
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "b"}, "data": {"k": "%%%"}},
    )
    # kube-apiserver's decoder refuses it before validation: 400, Go's wording and offset.
    assert (status, err["reason"], err["message"]) == (
        400,
        "BadRequest",
        'Secret in version "v1" cannot be handled as a Secret: illegal base64 data at input byte 0',
    )


async def test_a_write_answers_the_object_as_a_read_then_finds_it(widgets: Cluster) -> None:
    # The same fields in the same order: the answer is the object as stored, at its new
    # resourceVersion, for each way of writing (kube-apiserver answers what it stored).
    api = widgets.api
    apply = "application/apply-patch+yaml"
    writes = [
        ("POST", CM, configmap("w"), "application/json", f"{CM}/w"),
        ("PATCH", f"{CM}/w", {"data": {"x": "y"}}, "application/merge-patch+json", f"{CM}/w"),
        ("PATCH", f"{CM}/w", [{"op": "add", "path": "/data/z", "value": "1"}], None, f"{CM}/w"),
        ("PUT", f"{CM}/w", None, "application/json", f"{CM}/w"),
        ("POST", WIDGETS, widget("w"), "application/json", f"{WIDGETS}/w"),
        (
            "PATCH",
            f"{WIDGETS}/w/status",
            {"status": {"conditions": [{"type": "Ready"}]}},
            "application/merge-patch+json",
            f"{WIDGETS}/w",
        ),
        (
            "PATCH",
            f"{WIDGETS}/w",
            {**widget("w", 2), "metadata": {"name": "w"}},
            apply,
            f"{WIDGETS}/w",
        ),
    ]
    for method, path, body, content_type, read in writes:
        if body is None:
            _, body = await api.get(read)
            body["data"]["k"] = "changed"
        status, answer = await api.request(
            method,
            path,
            body,
            content_type=content_type or "application/json-patch+json",
            params={"fieldManager": "test", "force": "true"} if content_type == apply else None,
        )
        assert status in (200, 201), answer
        status, found = await api.get(read)
        assert status == 200
        assert json.dumps(answer) == json.dumps(found), (method, path)


async def test_an_update_after_a_schema_change_prunes_and_defaults_what_it_left_alone(
    widgets: Cluster,
) -> None:
    # As kube-apiserver, which prunes and defaults what it reads from etcd: the stored spec
    # below is not walked again for an update that leaves it alone, unless the schema that
    # processed it changed since.
    api = widgets.api
    status, _ = await api.post(WIDGETS, {**widget("w"), "spec": {"size": 1, "tags": ["a"]}})
    assert status == 201
    for _ in range(2):  # the second time, the stored spec is as this schema left it
        status, obj = await api.patch(f"{WIDGETS}/w", {"metadata": {"labels": {"a": "b"}}})
        assert status == 200 and obj["spec"] == {"size": 1, "tags": ["a"], "color": "blue"}
    _, crd = await api.get(f"{CRDS}/widgets.example.arges.dev")
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    del spec["properties"]["tags"]
    spec["properties"]["shape"] = {"type": "string", "default": "round"}
    status, crd = await api.put(f"{CRDS}/widgets.example.arges.dev", crd)
    assert status == 200, crd

    async def labelled() -> Any:
        status, obj = await api.patch(f"{WIDGETS}/w", {"metadata": {"labels": {"c": "d"}}})
        return obj if status == 200 and "tags" not in obj["spec"] else None

    obj = await eventually(labelled, what="the update pruned under the new schema")
    assert obj["spec"] == {"size": 1, "color": "blue", "shape": "round"}
