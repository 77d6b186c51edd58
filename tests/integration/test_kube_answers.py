"""Requests whose answers once differed from kube-apiserver's: same code, same shape now."""

from __future__ import annotations

from typing import Any

from tests.integration.conftest import WIDGET_CRD, WIDGETS, Cluster, eventually, widget

CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
NS = "/api/v1/namespaces"


async def test_put_of_a_missing_custom_resource_is_not_found(widgets: Cluster) -> None:
    status, err = await widgets.api.put(f"{WIDGETS}/ghost", widget("ghost"))
    assert (status, err["reason"], err["message"]) == (
        404,
        "NotFound",
        'widgets.example.arges.dev "ghost" not found',
    )


async def test_secret_data_that_is_not_base64_is_a_bad_request(cluster: Cluster) -> None:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "plain"},
        "data": {"user": "YWRtaW4=", "password": "admin"},
    }
    status, err = await cluster.api.post("/api/v1/namespaces/default/secrets", secret)
    assert (status, err["reason"], err["message"]) == (
        400,
        "BadRequest",
        'Secret in version "v1" cannot be handled as a Secret: illegal base64 data at input byte 4',
    )


async def test_delete_answers_a_status_except_for_namespaces(widgets: Cluster) -> None:
    api = widgets.api
    created = (await api.post(WIDGETS, widget("w")))[1]
    status, body = await api.delete(f"{WIDGETS}/w")
    assert (status, body) == (
        200,
        {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": {
                "name": "w",
                "group": "example.arges.dev",
                "kind": "widgets",
                "uid": created["metadata"]["uid"],
            },
        },
    )
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}
    created = (await api.post("/api/v1/namespaces/default/configmaps", cm))[1]
    status, body = await api.delete("/api/v1/namespaces/default/configmaps/c")
    assert status == 200 and body["details"] == {
        "name": "c",
        "kind": "configmaps",
        "uid": created["metadata"]["uid"],
    }, "no group key for the core group"
    # An object held by a finalizer is answered with itself, marked for deletion.
    await api.post(WIDGETS, widget("held", finalizers=["test/hold"]))
    status, body = await api.delete(f"{WIDGETS}/held")
    assert status == 200 and body["kind"] == "Widget" and body["metadata"]["deletionTimestamp"]
    await api.patch(f"{WIDGETS}/held", {"metadata": {"finalizers": None}})
    # Namespaces are the kind whose registry returns the deleted object.
    await api.post(NS, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "gone"}})
    status, body = await api.delete(f"{NS}/gone")
    assert status == 200 and body["kind"] == "Namespace"
    # kubectl prints its usual line from either answer.
    out = await widgets.kubectl("delete", "configmap", "-n", "default", "--ignore-not-found", "x")
    assert out.code == 0
    await api.post(WIDGETS, widget("k"))
    out = await widgets.kubectl("delete", "widget", "k")
    assert out.out.strip() == 'widget.example.arges.dev "k" deleted'


async def test_a_crd_is_established_after_its_creation_and_finalized_at_deletion(
    cluster: Cluster,
) -> None:
    api = cluster.api
    status, crd = await api.post(CRDS, WIDGET_CRD)
    assert status == 201
    assert crd["status"] == {
        "conditions": None,
        "acceptedNames": {"plural": "", "kind": ""},
        "storedVersions": ["v1"],
    }, "nothing is accepted or established in the create response"
    assert crd["spec"]["conversion"] == {"strategy": "None"}
    assert "finalizers" not in crd["metadata"]

    async def established() -> dict[str, Any] | None:
        got = (await api.get(f"{CRDS}/widgets.example.arges.dev"))[1]
        conditions = {c["type"]: c for c in got["status"].get("conditions") or []}
        return got if conditions.get("Established", {}).get("status") == "True" else None

    got = await eventually(established, what="the CRD established")
    conditions = {c["type"]: c for c in got["status"]["conditions"]}
    assert conditions["NamesAccepted"]["reason"] == "NoConflicts"
    assert conditions["Established"]["reason"] == "InitialNamesAccepted"
    assert got["status"]["acceptedNames"]["kind"] == "Widget"

    await api.post(WIDGETS, widget("w", finalizers=["test/hold"]))
    status, deleting = await api.delete(f"{CRDS}/widgets.example.arges.dev")
    assert status == 200 and deleting["metadata"]["deletionTimestamp"]
    assert deleting["metadata"]["finalizers"] == ["customresourcecleanup.apiextensions.k8s.io"]
    terminating = {c["type"]: c for c in deleting["status"]["conditions"]}["Terminating"]
    assert (terminating["status"], terminating["reason"]) == ("True", "InstanceDeletionPending")
    await api.patch(f"{WIDGETS}/w", {"metadata": {"finalizers": None}})
    await eventually(
        lambda: _status_of(api, f"{CRDS}/widgets.example.arges.dev", 404), what="CRD gone"
    )


async def test_a_deleted_namespace_is_terminating_until_its_content_is_gone(
    cluster: Cluster,
) -> None:
    api = cluster.api
    await api.post(NS, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}})
    held = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "held", "finalizers": ["test/hold"]},
    }
    await api.post(f"{NS}/team/configmaps", held)
    status, ns = await api.delete(f"{NS}/team")
    assert status == 200
    assert ns["status"]["phase"] == "Terminating" and ns["metadata"]["deletionTimestamp"]
    assert ns["spec"]["finalizers"] == ["kubernetes"]
    status, err = await api.post(
        f"{NS}/team/configmaps",
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "new"}},
    )
    assert (status, err["reason"], err["message"], err["details"]) == (
        403,
        "Forbidden",
        'configmaps "new" is forbidden: unable to create new content in namespace team because '
        "it is being terminated",
        {
            "name": "new",
            "kind": "configmaps",
            "causes": [
                {
                    "reason": "NamespaceTerminating",
                    "message": "namespace team is being terminated",
                    "field": "metadata.namespace",
                }
            ],
        },
    )
    still = (await api.get(f"{NS}/team"))[1]
    assert still["status"]["phase"] == "Terminating", "held open by the finalizer on its content"
    await api.patch(f"{NS}/team/configmaps/held", {"metadata": {"finalizers": None}})
    await eventually(lambda: _status_of(api, f"{NS}/team", 404), what="namespace gone")


async def _status_of(api: Any, path: str, code: int) -> bool:
    return (await api.get(path))[0] == code
