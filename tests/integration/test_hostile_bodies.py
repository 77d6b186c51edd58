"""Bodies of the wrong shape get kube-apiserver's 400s, never a 500 or a stored oddity (#23).

kube-apiserver decodes metadata into ``metav1.ObjectMeta`` (built-in kinds: the whole body
into its Go struct) before anything else, so a wrong JSON type is a decoding error: 400
``<Kind> in version "<v>" cannot be handled as a <Kind>: json: cannot unmarshal ...``.
"""

from __future__ import annotations

import gc
import json
import logging
from typing import Any

import pytest
import yaml

from tests.integration.conftest import WIDGETS, Cluster, widget

SECRETS = "/api/v1/namespaces/default/secrets"
CANNOT = 'Widget in version "v1" cannot be handled as a Widget: json: cannot unmarshal '


def _secret(**fields: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, **fields}


@pytest.mark.parametrize(
    ("meta", "message"),
    [
        ({"name": 5}, "number into Go struct field ObjectMeta.name of type string"),
        (
            {"name": "w", "labels": "x"},
            "string into Go struct field ObjectMeta.labels of type map[string]string",
        ),
        (
            {"name": "w", "labels": {"a": 1}},
            "number into Go struct field ObjectMeta.labels of type string",
        ),
        (
            {"name": "w", "annotations": {"a": 1}},
            "number into Go struct field ObjectMeta.annotations of type string",
        ),
        (
            {"name": "w", "finalizers": "abc"},
            "string into Go struct field ObjectMeta.finalizers of type []string",
        ),
        (
            {"name": "w", "finalizers": [1]},
            "number into Go struct field ObjectMeta.finalizers of type string",
        ),
        (
            {"name": "w", "generation": "1"},
            "string into Go struct field ObjectMeta.generation of type int64",
        ),
        (
            {"name": "w", "ownerReferences": {}},
            "object into Go struct field ObjectMeta.ownerReferences of type []v1.OwnerReference",
        ),
        (
            {"name": "w", "ownerReferences": [{"name": 1}]},
            "number into Go struct field OwnerReference.ownerReferences.name of type string",
        ),
        (
            {"name": "w", "ownerReferences": [{"controller": "yes"}]},
            "string into Go struct field OwnerReference.ownerReferences.controller of type bool",
        ),
    ],
)
async def test_custom_resource_metadata_of_the_wrong_type_is_a_bad_request(
    widgets: Cluster, meta: dict[str, Any], message: str
) -> None:
    body = {**widget("w"), "metadata": meta}
    status, err = await widgets.api.post(WIDGETS, body)
    assert (status, err["kind"], err["reason"], err["message"]) == (
        400,
        "Status",
        "BadRequest",
        CANNOT + message,
    )
    assert (await widgets.api.get(f"{WIDGETS}/w"))[0] == 404


async def test_metadata_that_is_not_an_object_is_a_bad_request(widgets: Cluster) -> None:
    status, err = await widgets.api.post(WIDGETS, {**widget("w"), "metadata": "w"})
    assert (status, err["message"]) == (
        400,
        'Widget in version "v1" cannot be handled as a Widget: json: cannot unmarshal string '
        "into Go value of type v1.ObjectMeta",
    )


async def test_a_patch_cannot_turn_finalizers_into_a_string(widgets: Cluster) -> None:
    api = widgets.api
    assert (await api.post(WIDGETS, widget("w")))[0] == 201
    status, err = await api.patch(f"{WIDGETS}/w", {"metadata": {"finalizers": "abc"}})
    assert (status, err["reason"]) == (400, "BadRequest")
    assert "ObjectMeta.finalizers of type []string" in err["message"]
    # The object is unchanged and goes away when deleted.
    assert "finalizers" not in (await api.get(f"{WIDGETS}/w"))[1]["metadata"]
    assert (await api.delete(f"{WIDGETS}/w"))[0] == 200
    assert (await api.get(f"{WIDGETS}/w"))[0] == 404


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            _secret(metadata={"name": 5}),
            "json: cannot unmarshal number into Go struct field ObjectMeta.metadata.name of type string",
        ),
        (
            _secret(metadata={"name": "s", "labels": "x"}),
            "json: cannot unmarshal string into Go struct field ObjectMeta.metadata.labels of type map[string]string",
        ),
        (
            _secret(data={"k": 1}),
            "json: cannot unmarshal number into Go struct field Secret.data of type []uint8",
        ),
        (
            _secret(data=["a"]),
            "json: cannot unmarshal array into Go struct field Secret.data of type map[string][]uint8",
        ),
        (
            _secret(stringData={"k": True}),
            "json: cannot unmarshal bool into Go struct field Secret.stringData of type string",
        ),
        (
            _secret(immutable="yes"),
            "json: cannot unmarshal string into Go struct field Secret.immutable of type bool",
        ),
    ],
)
async def test_built_in_bodies_of_the_wrong_type_are_bad_requests(
    cluster: Cluster, body: dict[str, Any], message: str
) -> None:
    status, err = await cluster.api.post(SECRETS, body)
    assert (status, err["reason"], err["message"]) == (
        400,
        "BadRequest",
        f'Secret in version "v1" cannot be handled as a Secret: {message}',
    )


async def test_null_metadata_fields_are_absent_fields(widgets: Cluster) -> None:
    body = {**widget("w"), "metadata": {"name": "w", "labels": None, "finalizers": None}}
    status, created = await widgets.api.post(WIDGETS, body)
    assert status == 201, created
    assert "labels" not in created["metadata"]
    assert "finalizers" not in created["metadata"]


async def test_a_deep_document_is_a_bad_request(widgets: Cluster) -> None:
    deep: Any = "x"
    for _ in range(20_000):
        deep = [deep]
    yaml_body = ("spec:\n  size: 1\n  deep: " + "[" * 20_000 + "]" * 20_000 + "\n").encode()
    for raw, ctype in (
        (yaml_body, "application/yaml"),
        (b'{"spec":{"deep":' + b"[" * 500 + b"]" * 500 + b"}}", "application/json"),
        (b'{"spec":{"deep":' + b"[" * 20_000 + b"]" * 20_000 + b"}}", "application/json"),
    ):
        status, err = await widgets.api.post(WIDGETS, raw, content_type=ctype)
        assert (status, err["reason"]) == (400, "BadRequest"), err
        assert "max depth" in err["message"]
    # The server still serves.
    assert (await widgets.api.post(WIDGETS, widget("w")))[0] == 201


ALIAS_BOMB = b"""apiVersion: example.arges.dev/v1
kind: Widget
metadata: {name: bomb}
spec:
  size: 1
  a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
  b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
  c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
  d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
  e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
  f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
  g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
"""


async def test_a_yaml_alias_bomb_is_refused(widgets: Cluster) -> None:
    assert len(ALIAS_BOMB) < 600
    status, err = await widgets.api.post(WIDGETS, ALIAS_BOMB, content_type="application/yaml")
    assert (status, err["reason"]) == (400, "BadRequest")
    assert err["message"].startswith(
        "the object provided is unrecognized (must be of type Widget): "
        "yaml: document contains excessive aliasing ("
    )
    assert (await widgets.api.get(f"{WIDGETS}/bomb"))[0] == 404


async def test_a_few_aliases_are_fine(widgets: Cluster) -> None:
    body = b"""apiVersion: example.arges.dev/v1
kind: Widget
metadata: {name: aliased, labels: &l {a: b}, annotations: *l}
spec: {size: 1}
"""
    status, created = await widgets.api.post(WIDGETS, body, content_type="application/yaml")
    assert status == 201, created
    assert created["metadata"]["annotations"] == {"a": "b"}


async def test_an_alias_of_a_long_string_is_refused_by_size(widgets: Cluster) -> None:
    long = "x" * 100_000
    body = (f"spec:\n  size: 1\n  a: &a {long}\n  b: [" + ",".join(["*a"] * 100) + "]\n").encode()
    status, err = await widgets.api.post(WIDGETS, body, content_type="application/yaml")
    assert (status, err["reason"]) == (413, "RequestEntityTooLarge"), err


async def test_no_traceback_is_logged_for_bad_bodies(
    widgets: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    await widgets.api.post(WIDGETS, {**widget("w"), "metadata": {"name": 5}})
    await widgets.api.post(SECRETS, _secret(data={"k": 1}))
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_an_applied_configuration_with_null_metadata_is_no_crash(cluster: Cluster) -> None:
    # Found by the fuzz run: a 500 (the merged object had "metadata": null).
    config = b'{"apiVersion": "v1", "kind": "Secret", "metadata": null}'
    for _ in range(2):
        status, answer = await cluster.api.request(
            "PATCH",
            f"{SECRETS}/fz",
            config,
            content_type="application/apply-patch+yaml",
            params={"fieldManager": "fz"},
        )
        assert (status, answer["reason"]) == (422, "Invalid"), answer


CONFIGMAPS = "/api/v1/namespaces/default/configmaps"
LARGE = 200 * 1024
"""Larger than the API server decodes inline (64 KiB): such bodies decode in a thread."""


def _large_configmap(name: str, **meta: Any) -> dict[str, Any]:
    data = {f"k{i}": f"v{i}-" + "x" * 1000 for i in range(LARGE // 1000)}
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, **meta},
        "data": data,
    }


async def test_large_bodies_are_decoded_as_small_ones_are(cluster: Cluster) -> None:
    sent = _large_configmap("big-json")
    status, created = await cluster.api.post(CONFIGMAPS, sent)
    assert status == 201, created
    assert created["data"] == sent["data"]
    as_yaml = yaml.safe_dump(_large_configmap("big-yaml")).encode()
    assert len(as_yaml) > LARGE
    status, created = await cluster.api.post(CONFIGMAPS, as_yaml, content_type="application/yaml")
    assert status == 201, created
    assert created["data"] == sent["data"]
    patch = {"data": {"k0": "y" * LARGE}}
    status, patched = await cluster.api.patch(f"{CONFIGMAPS}/big-json", patch)
    assert (status, patched["data"]["k0"]) == (200, "y" * LARGE)
    patched["data"]["k1"] = "z"
    status, replaced = await cluster.api.put(f"{CONFIGMAPS}/big-json", patched)
    assert (status, replaced["data"]["k1"]) == (200, "z")
    status, stored = await cluster.api.get(f"{CONFIGMAPS}/big-yaml")
    assert (status, stored["data"]) == (200, sent["data"])
    # The collector, paused while a thread decodes, runs again.
    assert gc.isenabled()


async def test_a_large_answer_arrives_whole_with_its_headers(cluster: Cluster) -> None:
    # Answers over 256 KiB are written in slices (the event loop serves others between
    # them); the client sees one body, its length declared, and the write's warnings.
    sent = _large_configmap("big-answer")
    sent["data"] = {f"k{i}": "x" * 1000 for i in range(600)}
    raw = json.dumps({**sent, "unknownTopLevel": 1}).encode()
    assert len(raw) > 600_000
    session, base = cluster.api.session, cluster.api.base
    headers = {**cluster.api.headers, "Content-Type": "application/json"}
    async with session.post(base + CONFIGMAPS, data=raw, headers=headers) as resp:
        body = await resp.read()
        assert resp.status == 201, body[:200]
        assert resp.headers["Content-Length"] == str(len(body))
        assert resp.headers["Content-Type"].startswith("application/json")
        assert 'unknown field \\"unknownTopLevel\\"' in resp.headers.get("Warning", "")
    assert json.loads(body)["data"] == sent["data"]
    async with session.get(f"{base}{CONFIGMAPS}/big-answer", headers=headers) as resp:
        body = await resp.read()
        assert (resp.status, resp.headers["Content-Length"]) == (200, str(len(body)))
    assert len(body) > 600_000 and json.loads(body)["data"] == sent["data"]


def _status_shape(status: int, body: Any, code: int, reason: str) -> None:
    assert status == code, body
    assert isinstance(body, dict), body
    assert (body["kind"], body["apiVersion"], body["status"]) == ("Status", "v1", "Failure")
    assert (body["code"], body["reason"]) == (code, reason), body


async def test_large_bad_bodies_get_kubes_answers(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    # Not JSON.
    raw = json.dumps(_large_configmap("broken")).encode()[:-1]
    status, err = await cluster.api.post(CONFIGMAPS, raw)
    _status_shape(status, err, 400, "BadRequest")
    assert err["message"].startswith("the request body is not valid JSON")
    # Not YAML.
    raw = yaml.safe_dump(_large_configmap("broken")).encode() + b"\n  - : ]["
    status, err = await cluster.api.post(CONFIGMAPS, raw, content_type="application/yaml")
    _status_shape(status, err, 400, "BadRequest")
    # Of the wrong type.
    status, err = await cluster.api.post(
        CONFIGMAPS, {**_large_configmap("x"), "metadata": {"name": 5}}
    )
    _status_shape(status, err, 400, "BadRequest")
    assert err["message"].endswith("into Go struct field ObjectMeta.metadata.name of type string")
    # Invalid: a key kube-apiserver refuses.
    body = _large_configmap("invalid")
    body["data"]["bad key"] = "v"
    status, err = await cluster.api.post(CONFIGMAPS, body)
    _status_shape(status, err, 422, "Invalid")
    assert err["details"]["causes"][0]["field"] == "data[bad key]"
    # Over kube-apiserver's 3 MiB.
    status, err = await cluster.api.post(CONFIGMAPS, {"data": {"k": "x" * (3 << 20)}})
    _status_shape(status, err, 413, "RequestEntityTooLarge")
    # The server still answers, and nothing was logged as a crash.
    assert (await cluster.api.post(CONFIGMAPS, _large_configmap("after")))[0] == 201
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
