"""Server-side apply and managedFields, driven by kubectl, kubernetes-asyncio and raw HTTP."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

from tests.integration.conftest import KUBECTL_VERSIONS, WIDGETS, Cluster, widget

CM = "/api/v1/namespaces/default/configmaps"
APPLY = "application/apply-patch+yaml"

W1 = """
apiVersion: example.arges.dev/v1
kind: Widget
metadata:
  name: w1
spec:
  size: 3
  tags: [a, b]
"""


def managers(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Manager/operation to FieldsV1."""
    return {
        f"{e['manager']}/{e['operation']}": e["fieldsV1"]
        for e in obj["metadata"].get("managedFields", [])
    }


async def get(cluster: Cluster, path: str) -> dict[str, Any]:
    status, obj = await cluster.api.get(path)
    assert status == 200, obj
    return obj


@pytest.mark.parametrize("version", KUBECTL_VERSIONS)
async def test_kubectl_server_side_apply_on_a_custom_resource(
    widgets: Cluster, version: str
) -> None:
    k = widgets.kubectl
    out = await k("apply", "--server-side", "-f", "-", stdin=W1, version=version)
    assert out.out.strip() == "widget.example.arges.dev/w1 serverside-applied"
    obj = await get(widgets, f"{WIDGETS}/w1")
    assert obj["spec"] == {"size": 3, "tags": ["a", "b"], "color": "blue"}
    assert managers(obj) == {
        "kubectl/Apply": {"f:spec": {"f:size": {}, "f:tags": {}}},
    }, "defaults belong to no one; the atomic list is owned whole"

    # Another manager takes spec.size: a conflict kubectl explains, then a forced move.
    other = W1.replace("size: 3", "size: 5").replace("  tags: [a, b]\n", "")
    out = await k(
        "apply", "--server-side", "--field-manager=ops", "-f", "-",
        stdin=other, version=version, check=False,
    )  # fmt: skip
    assert out.code != 0
    assert 'Apply failed with 1 conflict: conflict with "kubectl": .spec.size' in out.err
    assert "--force-conflicts" in out.err
    await k(
        "apply", "--server-side", "--field-manager=ops", "--force-conflicts", "-f", "-",
        stdin=other, version=version,
    )  # fmt: skip
    obj = await get(widgets, f"{WIDGETS}/w1")
    assert obj["spec"]["size"] == 5
    assert managers(obj) == {
        "kubectl/Apply": {"f:spec": {"f:tags": {}}},
        "ops/Apply": {"f:spec": {"f:size": {}}},
    }
    shown = yaml.safe_load(
        (await k("get", "widget", "w1", "-o", "yaml", "--show-managed-fields", version=version)).out
    )
    assert [e["manager"] for e in shown["metadata"]["managedFields"]] == ["kubectl", "ops"]
    hidden = yaml.safe_load((await k("get", "widget", "w1", "-o", "yaml", version=version)).out)
    assert "managedFields" not in hidden["metadata"], "kubectl hides them by default"

    # kubectl drops tags from its configuration: nobody else owns them, so they go.
    await k(
        "apply", "--server-side", "-f", "-",
        stdin=W1.replace("  tags: [a, b]\n", "").replace("size: 3", "size: 5"), version=version,
    )  # fmt: skip
    obj = await get(widgets, f"{WIDGETS}/w1")
    assert "tags" not in obj["spec"]
    assert managers(obj)["kubectl/Apply"] == {"f:spec": {"f:size": {}}}, "co-owned at 5"


async def test_kubectl_server_side_apply_on_configmaps_and_secrets(cluster: Cluster) -> None:
    k = cluster.kubectl
    cm = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "c", "labels": {"app": "x"}},
        "data": {"a": "1", "b": "2"},
    }
    await k("apply", "--server-side", "-f", "-", stdin=json.dumps(cm))
    obj = await get(cluster, f"{CM}/c")
    assert managers(obj) == {
        "kubectl/Apply": {
            "f:data": {"f:a": {}, "f:b": {}},
            "f:metadata": {"f:labels": {"f:app": {}}},
        }
    }
    # An Update (kubectl edit's patch) takes the field it changes from the applier.
    await k("patch", "configmap", "c", "--type=merge", "-p", '{"data":{"a":"9"}}')
    obj = await get(cluster, f"{CM}/c")
    assert managers(obj)["kubectl-patch/Update"] == {"f:data": {"f:a": {}}}
    assert managers(obj)["kubectl/Apply"] == {
        "f:data": {"f:b": {}},
        "f:metadata": {"f:labels": {"f:app": {}}},
    }
    out = await k("apply", "--server-side", "-f", "-", stdin=json.dumps(cm), check=False)
    assert out.code != 0
    assert (
        'Apply failed with 1 conflict: conflict with "kubectl-patch" using v1: .data.a' in out.err
    )
    # Removing b from the configuration removes it from the object.
    del cm["data"]["b"]  # type: ignore[attr-defined]
    await k("apply", "--server-side", "--force-conflicts", "-f", "-", stdin=json.dumps(cm))
    obj = await get(cluster, f"{CM}/c")
    assert obj["data"] == {"a": "1"}
    assert "kubectl-patch/Update" not in managers(obj)

    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s"},
        "stringData": {"user": "admin"},
    }
    out = await k("apply", "--server-side", "-f", "-", stdin=json.dumps(secret))
    assert out.out.strip() == "secret/s serverside-applied"
    obj = await get(cluster, "/api/v1/namespaces/default/secrets/s")
    assert obj["data"] == {"user": "YWRtaW4="} and obj["type"] == "Opaque"
    secret["stringData"] = {"user": "root"}
    await k("apply", "--server-side", "-f", "-", stdin=json.dumps(secret))
    obj = await get(cluster, "/api/v1/namespaces/default/secrets/s")
    assert obj["data"] == {"user": "cm9vdA=="}


async def test_client_side_apply_then_server_side_apply(widgets: Cluster) -> None:
    k = widgets.kubectl
    await k("apply", "-f", "-", stdin=W1)
    obj = await get(widgets, f"{WIDGETS}/w1")
    assert set(managers(obj)) == {"kubectl-client-side-apply/Update"}
    # kubectl upgrades from client-side apply: its fields move to the "kubectl" applier
    # without a conflict, and the last-applied annotation follows what was applied.
    await k("apply", "--server-side", "-f", "-", stdin=W1.replace("size: 3", "size: 4"))
    obj = await get(widgets, f"{WIDGETS}/w1")
    assert obj["spec"]["size"] == 4
    assert managers(obj)["kubectl/Apply"]["f:spec"] == {"f:size": {}, "f:tags": {}}
    last = json.loads(
        obj["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
    )
    assert last["spec"]["size"] == 4
    # And client-side apply still works afterwards.
    await k("apply", "-f", "-", stdin=W1.replace("size: 3", "size: 6"))
    assert (await get(widgets, f"{WIDGETS}/w1"))["spec"]["size"] == 6


async def test_apply_over_http(widgets: Cluster) -> None:
    api = widgets.api
    body = json.dumps(widget("w2", 2)).encode()
    status, err = await api.request("PATCH", f"{WIDGETS}/w2", body, content_type=APPLY)
    assert (status, err["reason"], err["message"]) == (
        422,
        "Invalid",
        'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required '
        "for apply patch",
    )
    params = {"fieldManager": "me"}
    status, obj = await api.request(
        "PATCH", f"{WIDGETS}/w2", body, content_type=APPLY, params=params
    )
    assert status == 201, obj
    status, obj = await api.request(
        "PATCH", f"{WIDGETS}/w2", body, content_type=APPLY, params=params
    )
    assert status == 200 and obj["metadata"]["resourceVersion"], "a no-op apply"
    status, err = await api.patch(f"{WIDGETS}/w2", {"spec": {"size": 3}}, params={"force": "true"})
    assert (
        status == 422
        and "force: Forbidden: may not be specified for non-apply patch" in (err["message"])
    )
    status, err = await api.request(
        "PATCH",
        f"{WIDGETS}/w2",
        b"apiVersion: example.arges.dev/v1\nkind: Widget\nspec: {size: 1, shape: round}\n",
        content_type=APPLY,
        params={"fieldManager": "x"},
    )
    assert (status, err["message"]) == (
        400,
        "failed to create typed patch object (/; example.arges.dev/v1, Kind=Widget): "
        ".spec.shape: field not declared in schema",
    )
    # Status writes are owned separately, as the status subresource.
    status, obj = await api.patch(
        f"{WIDGETS}/w2/status",
        {"status": {"observedGeneration": 1}},
        headers={"User-Agent": "my-controller/1.0"},
    )
    assert status == 200, obj
    [entry] = [e for e in obj["metadata"]["managedFields"] if e["manager"] == "my-controller"]
    assert entry["subresource"] == "status" and entry["operation"] == "Update"
    assert entry["fieldsV1"] == {"f:status": {".": {}, "f:observedGeneration": {}}}
    # Sending [] resets them; updates of an object without any add none.
    status, obj = await api.patch(f"{WIDGETS}/w2", {"metadata": {"managedFields": []}})
    assert status == 200 and "managedFields" not in obj["metadata"]
    status, obj = await api.patch(f"{WIDGETS}/w2", {"spec": {"size": 9}})
    assert "managedFields" not in obj["metadata"]


async def test_kubernetes_asyncio_server_side_apply(widgets: Cluster) -> None:
    cfg = client.Configuration()
    await config.load_kube_config(
        config_file=str(widgets.server.kubeconfig_path), client_configuration=cfg
    )
    async with client.ApiClient(cfg) as api:
        objects = client.CustomObjectsApi(api)
        args = ("example.arges.dev", "v1", "default", "widgets", "w3")
        # A create by apply answers 201, for which the generated client returns no body.
        await objects.patch_namespaced_custom_object(
            *args, widget("w3", 2), field_manager="controller", _content_type=APPLY
        )
        obj = await objects.get_namespaced_custom_object(*args)
        assert managers(obj) == {"controller/Apply": {"f:spec": {"f:size": {}}}}
        with pytest.raises(ApiException) as err:
            await objects.patch_namespaced_custom_object(
                *args, widget("w3", 7), field_manager="other", _content_type=APPLY
            )
        assert err.value.status == 409
        status = json.loads(err.value.body)
        assert status["details"]["causes"] == [
            {
                "reason": "FieldManagerConflict",
                "message": 'conflict with "controller"',
                "field": ".spec.size",
            }
        ]
        obj = await objects.patch_namespaced_custom_object(
            *args, widget("w3", 7), field_manager="other", force=True, _content_type=APPLY
        )
        assert obj["spec"]["size"] == 7
        assert set(managers(obj)) == {"other/Apply"}, "the forced field moved; none left"
        core = client.CoreV1Api(api)
        body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}
        for data in ({"k": "x"}, {"k": "v"}):
            cm = await core.patch_namespaced_config_map(
                "c", "default", {**body, "data": data}, field_manager="ctl", _content_type=APPLY
            )
        assert cm.data == {"k": "v"}
        assert cm.metadata.managed_fields[0].manager == "ctl"
