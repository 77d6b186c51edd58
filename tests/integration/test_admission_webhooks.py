"""Admission webhooks: Mutating- and ValidatingWebhookConfigurations, served and called as
kube-apiserver serves and calls them (real kubectl and raw HTTP, a test webhook server)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import yaml

from tests.integration.conftest import KUBECTL_VERSIONS, Cluster, eventually
from tests.integration.webhook_server import GROUP, WebhookServer, gadget, gadget_crd

CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
ADMISSION = "/apis/admissionregistration.k8s.io/v1"
MUTATING = f"{ADMISSION}/mutatingwebhookconfigurations"
VALIDATING = f"{ADMISSION}/validatingwebhookconfigurations"
V1 = f"/apis/{GROUP}/v1/namespaces/default/gadgets"
V1ALPHA1 = f"/apis/{GROUP}/v1alpha1/namespaces/default/gadgets"


@pytest.fixture
async def gadgets(cluster: Cluster) -> Cluster:
    status, body = await cluster.api.post(CRDS, gadget_crd(None))
    assert status == 201, body
    await eventually(lambda: cluster.api.get(V1), what="gadgets served")
    return cluster


def hook(
    server: WebhookServer,
    name: str,
    path: str,
    *,
    resources: tuple[str, ...] = ("gadgets",),
    versions: tuple[str, ...] = ("*",),
    operations: tuple[str, ...] = ("CREATE", "UPDATE"),
    **extra: Any,
) -> dict[str, Any]:
    return {
        "name": name,
        "admissionReviewVersions": ["v1"],
        "sideEffects": "None",
        "clientConfig": {"url": f"{server.url}{path}", "caBundle": server.pki.ca_bundle},
        "rules": [
            {
                "apiGroups": [GROUP],
                "apiVersions": list(versions),
                "operations": list(operations),
                "resources": list(resources),
            }
        ],
        **extra,
    }


def configuration(kind: str, name: str, *hooks: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": kind,
        "metadata": {"name": name},
        "webhooks": list(hooks),
    }


async def install(cluster: Cluster, kind: str, name: str, *hooks: dict[str, Any]) -> dict:
    path = MUTATING if kind == "MutatingWebhookConfiguration" else VALIDATING
    status, body = await cluster.api.post(path, configuration(kind, name, *hooks))
    assert status == 201, body
    return body  # type: ignore[no-any-return]


def requests(server: WebhookServer, path: str) -> list[dict[str, Any]]:
    return [r["request"] for r in server.received(path)]


async def test_webhook_configurations_are_built_in_kinds_kubectl_knows(
    cluster: Cluster, webhook: WebhookServer
) -> None:
    out = await cluster.kubectl("api-resources", "--api-group", "admissionregistration.k8s.io")
    assert "mutatingwebhookconfigurations" in out.out
    assert "validatingwebhookconfigurations" in out.out
    manifest = configuration(
        "MutatingWebhookConfiguration",
        "defaults",
        hook(webhook, "m.example.arges.dev", "/mutate"),
        hook(webhook, "n.example.arges.dev", "/mutate"),
    )
    await cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(manifest))
    out = await cluster.kubectl("get", "mutatingwebhookconfigurations")
    assert out.out.split("\n")[0].split() == ["NAME", "WEBHOOKS", "AGE"]
    assert out.out.split("\n")[1].split()[:2] == ["defaults", "2"]
    stored = json.loads(
        (await cluster.kubectl("get", "mutatingwebhookconfiguration", "defaults", "-o", "json")).out
    )
    first = stored["webhooks"][0]
    assert first["failurePolicy"] == "Fail"
    assert first["matchPolicy"] == "Equivalent"
    assert first["timeoutSeconds"] == 10
    assert first["namespaceSelector"] == {} and first["objectSelector"] == {}
    assert first["reinvocationPolicy"] == "Never"
    assert first["rules"][0]["scope"] == "*"
    assert stored["metadata"]["generation"] == 1
    # Changing a webhook moves the generation; kubectl apply merges webhooks by name.
    manifest["webhooks"][1]["timeoutSeconds"] = 5
    await cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(manifest))
    stored = json.loads(
        (await cluster.kubectl("get", "mutatingwebhookconfiguration", "defaults", "-o", "json")).out
    )
    assert [w["timeoutSeconds"] for w in stored["webhooks"]] == [10, 5]
    assert stored["metadata"]["generation"] == 2
    out = await cluster.kubectl("explain", "validatingwebhookconfiguration.webhooks.clientConfig")
    assert "caBundle" in out.out
    # Server-side apply merges webhooks by name too.
    manifest["metadata"]["name"] = "applied"
    await cluster.kubectl("apply", "--server-side", "-f", "-", stdin=yaml.safe_dump(manifest))
    manifest["webhooks"] = manifest["webhooks"][1:]
    await cluster.kubectl("apply", "--server-side", "-f", "-", stdin=yaml.safe_dump(manifest))
    applied = (await cluster.api.get(f"{MUTATING}/applied"))[1]
    assert [w["name"] for w in applied["webhooks"]] == ["n.example.arges.dev"]
    await cluster.kubectl("delete", "mutatingwebhookconfiguration", "defaults", "applied")


@pytest.mark.parametrize("version", KUBECTL_VERSIONS)
async def test_every_kubectl_applies_and_lists_webhook_configurations(
    cluster: Cluster, webhook: WebhookServer, version: str
) -> None:
    manifest = configuration(
        "ValidatingWebhookConfiguration", "k", hook(webhook, "k.example.arges.dev", "/validate")
    )
    await cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(manifest), version=version)
    manifest["webhooks"][0]["timeoutSeconds"] = 3
    await cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(manifest), version=version)
    out = await cluster.kubectl("get", "validatingwebhookconfigurations", version=version)
    assert out.out.split("\n")[1].split()[:2] == ["k", "1"]
    assert (await cluster.api.get(f"{VALIDATING}/k"))[1]["webhooks"][0]["timeoutSeconds"] == 3


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"sideEffects": "Some"},
            'webhooks[0].sideEffects: Unsupported value: "Some": supported values: "None", '
            '"NoneOnDryRun"',
        ),
        (
            {"timeoutSeconds": 31},
            "webhooks[0].timeoutSeconds: Invalid value: 31: the timeout value must be between 1 "
            "and 30 seconds",
        ),
        (
            {"name": "short.name"},
            'webhooks[0].name: Invalid value: "short.name": should be a domain with at least '
            "three segments separated by dots",
        ),
        (
            {"admissionReviewVersions": []},
            "webhooks[0].admissionReviewVersions: Required value: must specify one of v1, v1beta1",
        ),
        (
            {"failurePolicy": "Sometimes"},
            'webhooks[0].failurePolicy: Unsupported value: "Sometimes": supported values: '
            '"Fail", "Ignore"',
        ),
        (
            {"clientConfig": {"url": "https://127.0.0.1/x#frag"}},
            'webhooks[0].clientConfig.url: Invalid value: "frag": fragments are not permitted '
            "in the URL",
        ),
        (
            {
                "rules": [
                    {
                        "apiGroups": ["*"],
                        "apiVersions": ["*"],
                        "operations": ["*", "CREATE"],
                        "resources": ["*", "gadgets"],
                    }
                ]
            },
            '[webhooks[0].rules[0].operations: Invalid value: []string{"*", "CREATE"}: if \'*\' '
            "is present, must not specify other operations, webhooks[0].rules[0].resources: "
            'Invalid value: []string{"*", "gadgets"}: if \'*\' is present, must not specify '
            "other resources without subresources]",
        ),
        (
            {"matchConditions": [{"name": "c", "expression": "object.metadata.name"}]},
            'webhooks[0].matchConditions[0].expression: Invalid value: "object.metadata.name": '
            "must evaluate to bool",
        ),
        (
            {"matchConditions": [{"name": "c", "expression": "object.metadata.name =="}]},
            'webhooks[0].matchConditions[0].expression: Invalid value: "object.metadata.name '
            '==": compilation failed: ERROR: <input>:1:',
        ),
        (
            {
                "matchConditions": [
                    {
                        "name": "c",
                        "expression": "authorizer.group('').resource('pods').check('get').allowed()",
                    }
                ]
            },
            "webhooks[0].matchConditions[0].expression: Invalid value: \"authorizer.group('')"
            ".resource('pods').check('get').allowed()\": the authorizer variable is not "
            "supported by the Arges API server",
        ),
    ],
)
async def test_invalid_webhook_configurations_are_refused(
    cluster: Cluster, webhook: WebhookServer, change: dict, message: str
) -> None:
    spec = {**hook(webhook, "v.example.arges.dev", "/validate"), **change}
    status, body = await cluster.api.post(
        VALIDATING, configuration("ValidatingWebhookConfiguration", "bad", spec)
    )
    assert status == 422, body
    prefix = 'ValidatingWebhookConfiguration.admissionregistration.k8s.io "bad" is invalid: '
    assert body["message"].startswith(prefix + message), body["message"]


async def test_mutations_are_stored_and_reviews_carry_what_kube_sends(
    gadgets: Cluster, webhook: WebhookServer
) -> None:
    webhook.mutation_patch = [
        {"op": "add", "path": "/metadata/labels", "value": {"mutated": "yes"}},
        {"op": "add", "path": "/spec/color", "value": "purple"},
    ]
    await install(
        gadgets,
        "MutatingWebhookConfiguration",
        "m",
        hook(webhook, "m.example.arges.dev", "/mutate"),
    )
    manifest = gadget("g", size=2)
    manifest["metadata"]["namespace"] = "default"
    await gadgets.kubectl("create", "-f", "-", stdin=yaml.safe_dump(manifest))
    status, stored = await gadgets.api.get(f"{V1}/g")
    assert stored["metadata"]["labels"] == {"mutated": "yes"}
    assert stored["spec"] == {"size": 2, "color": "purple"}
    [review] = webhook.received("/mutate")
    assert review["apiVersion"] == "admission.k8s.io/v1" and review["kind"] == "AdmissionReview"
    assert review["query"] == {"timeout": "10s"}
    request = review["request"]
    assert list(request) == [
        "uid",
        "kind",
        "resource",
        "requestKind",
        "requestResource",
        "name",
        "namespace",
        "operation",
        "userInfo",
        "object",
        "oldObject",
        "dryRun",
        "options",
    ]
    assert request["kind"] == {"group": GROUP, "version": "v1", "kind": "Gadget"}
    assert request["resource"] == {"group": GROUP, "version": "v1", "resource": "gadgets"}
    assert request["requestKind"] == request["kind"]
    assert request["requestResource"] == request["resource"]
    assert (request["name"], request["namespace"], request["operation"]) == (
        "g",
        "default",
        "CREATE",
    )
    assert request["userInfo"] == {
        "username": "admin",
        "groups": ["system:masters", "system:authenticated"],
    }
    assert request["object"]["spec"] == {"size": 2}
    assert request["oldObject"] is None and request["dryRun"] is False
    assert request["options"]["kind"] == "CreateOptions"
    assert request["options"]["fieldManager"] == "kubectl-create"

    # An update is reviewed with the old object; the patch applies again.
    status, body = await gadgets.api.patch(f"{V1}/g", {"spec": {"size": 3, "color": "red"}})
    assert status == 200 and body["spec"]["color"] == "purple"
    update = requests(webhook, "/mutate")[-1]
    assert update["operation"] == "UPDATE"
    assert update["oldObject"]["spec"] == {"size": 2, "color": "purple"}
    assert update["object"]["spec"] == {"size": 3, "color": "red"}
    assert update["options"]["kind"] == "UpdateOptions"

    # A patch that does not apply fails the request, whatever the failure policy.
    webhook.mutation_patch = [{"op": "replace", "path": "/spec/missing/x", "value": 1}]
    status, body = await gadgets.api.post(V1, gadget("h", size=1))
    assert status == 500 and body["reason"] == "InternalError", body
    assert body["message"].startswith("Internal error occurred: ")


async def test_denials_carry_the_webhooks_status(gadgets: Cluster, webhook: WebhookServer) -> None:
    await install(
        gadgets,
        "ValidatingWebhookConfiguration",
        "v",
        hook(webhook, "size.example.arges.dev", "/validate"),
    )
    manifest = gadget("big", size=11)
    manifest["metadata"]["namespace"] = "default"
    refused = await gadgets.kubectl(
        "create", "-f", "-", stdin=yaml.safe_dump(manifest), check=False
    )
    assert refused.code == 1
    assert refused.err.strip() == (
        'Error from server (Forbidden): error when creating "STDIN": admission webhook '
        '"size.example.arges.dev" denied the request: size too big'
    )
    status, body = await gadgets.api.post(V1, gadget("big", size=11))
    assert (status, body) == (
        403,
        {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": 'admission webhook "size.example.arges.dev" denied the request: size too big',
            "reason": "Forbidden",
            "code": 403,
        },
    )
    assert (await gadgets.api.get(f"{V1}/big"))[0] == 404
    # A refusal without a status is a 400 "without explanation".
    denied = gadget("quiet", size=1)
    denied["metadata"]["annotations"] = {"deny": "yes"}
    status, body = await gadgets.api.post(V1, denied)
    assert (status, body["message"]) == (
        400,
        'admission webhook "size.example.arges.dev" denied the request without explanation',
    )
    # Updates are validated too; the validating webhook sees the final object.
    await gadgets.api.post(V1, gadget("small", size=1))
    status, body = await gadgets.api.patch(f"{V1}/small", {"spec": {"size": 12}})
    assert status == 403
    assert requests(webhook, "/validate")[-1]["object"]["metadata"]["uid"]


async def test_webhook_failures_follow_the_failure_policy(
    gadgets: Cluster, webhook: WebhookServer
) -> None:
    url = webhook.url
    await install(
        gadgets,
        "ValidatingWebhookConfiguration",
        "v",
        hook(webhook, "v.example.arges.dev", "/validate"),
    )
    await webhook.stop()
    status, body = await gadgets.api.post(V1, gadget("g", size=1))
    text = (
        'failed calling webhook "v.example.arges.dev": failed to call webhook: Post '
        f'"{url}/validate?timeout=10s": dial tcp 127.0.0.1:{webhook.port}: connect: connection '
        "refused"
    )
    assert (status, body) == (
        500,
        {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": f"Internal error occurred: {text}",
            "reason": "InternalError",
            "details": {"causes": [{"message": text}]},
            "code": 500,
        },
    )
    failed = await gadgets.kubectl(
        "apply",
        "-f",
        "-",
        stdin=yaml.safe_dump(
            {**gadget("g", size=1), "metadata": {"name": "g", "namespace": "default"}}
        ),
        check=False,
    )
    assert "Internal error occurred: failed calling webhook" in failed.err
    # The configuration itself is exempt: a broken webhook can always be changed.
    status, current = await gadgets.api.get(f"{VALIDATING}/v")
    current["webhooks"][0]["failurePolicy"] = "Ignore"
    status, body = await gadgets.api.put(f"{VALIDATING}/v", current)
    assert status == 200, body
    status, body = await gadgets.api.post(V1, gadget("g", size=1))
    assert status == 201, body


async def test_timeouts_bound_the_call(gadgets: Cluster, webhook: WebhookServer) -> None:
    await install(
        gadgets,
        "ValidatingWebhookConfiguration",
        "slow",
        hook(webhook, "slow.example.arges.dev", "/validate", timeoutSeconds=1),
    )
    webhook.delay = 3
    started = time.monotonic()
    status, body = await gadgets.api.post(V1, gadget("g", size=1))
    took = time.monotonic() - started
    assert status == 500
    assert body["message"] == (
        'Internal error occurred: failed calling webhook "slow.example.arges.dev": failed to call '
        f'webhook: Post "{webhook.url}/validate?timeout=1s": context deadline exceeded'
    )
    assert 0.9 < took < 2.5, took
    # Meanwhile the server answers other requests: the call does not block it.
    webhook.delay = 2
    import asyncio

    slow = asyncio.create_task(gadgets.api.post(V1, gadget("h", size=1)))
    await asyncio.sleep(0.2)
    started = time.monotonic()
    assert (await gadgets.api.get(V1))[0] == 200
    assert time.monotonic() - started < 0.5
    assert (await slow)[0] == 500


async def test_dry_run_reaches_webhooks_without_side_effects(
    gadgets: Cluster, webhook: WebhookServer
) -> None:
    await install(
        gadgets,
        "ValidatingWebhookConfiguration",
        "v",
        hook(webhook, "v.example.arges.dev", "/validate", sideEffects="NoneOnDryRun"),
    )
    manifest = {**gadget("dry", size=1), "metadata": {"name": "dry", "namespace": "default"}}
    await gadgets.kubectl("create", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump(manifest))
    [request] = requests(webhook, "/validate")
    assert request["dryRun"] is True
    assert request["options"]["dryRun"] == ["All"]
    assert (await gadgets.api.get(f"{V1}/dry"))[0] == 404


async def test_namespace_and_object_selectors(cluster: Cluster, webhook: WebhookServer) -> None:
    api = cluster.api
    await api.post(
        "/api/v1/namespaces", {"metadata": {"name": "watched", "labels": {"env": "test"}}}
    )
    await install(
        cluster,
        "ValidatingWebhookConfiguration",
        "selective",
        hook(
            webhook,
            "ns.example.arges.dev",
            "/validate",
            resources=("configmaps",),
            namespaceSelector={"matchLabels": {"env": "test"}},
        )
        | {
            "rules": [
                {
                    "apiGroups": [""],
                    "apiVersions": ["v1"],
                    "operations": ["CREATE"],
                    "resources": ["configmaps"],
                }
            ]
        },
        hook(
            webhook,
            "obj.example.arges.dev",
            "/validate-objects",
            objectSelector={"matchExpressions": [{"key": "checked", "operator": "Exists"}]},
        )
        | {
            "rules": [
                {
                    "apiGroups": [""],
                    "apiVersions": ["v1"],
                    "operations": ["CREATE", "DELETE"],
                    "resources": ["configmaps"],
                }
            ]
        },
    )
    for namespace in ("default", "watched"):
        status, _ = await api.post(
            f"/api/v1/namespaces/{namespace}/configmaps", {"metadata": {"name": "c"}}
        )
        assert status == 201
    assert [r["namespace"] for r in requests(webhook, "/validate")] == ["watched"]
    assert requests(webhook, "/validate-objects") == []
    await api.post(
        "/api/v1/namespaces/default/configmaps",
        {"metadata": {"name": "d", "labels": {"checked": "yes"}}},
    )
    # DELETE is matched on the old object's labels; it has no object.
    await api.delete("/api/v1/namespaces/default/configmaps/d")
    create, delete = requests(webhook, "/validate-objects")
    assert create["kind"] == {"group": "", "version": "v1", "kind": "ConfigMap"}
    assert (delete["operation"], delete["object"]) == ("DELETE", None)
    assert delete["oldObject"]["metadata"]["labels"] == {"checked": "yes"}
    assert delete["options"]["kind"] == "DeleteOptions"
    # A namespace the selector needs that does not exist is a 404.
    status, body = await api.post(
        "/api/v1/namespaces/nowhere/configmaps", {"metadata": {"name": "c"}}
    )
    assert (status, body["message"]) == (404, 'namespaces "nowhere" not found')


async def test_status_subresource_writes_match_status_rules(
    gadgets: Cluster, webhook: WebhookServer
) -> None:
    await install(
        gadgets,
        "ValidatingWebhookConfiguration",
        "v",
        hook(webhook, "main.example.arges.dev", "/validate-main", operations=("UPDATE",)),
        hook(
            webhook,
            "status.example.arges.dev",
            "/validate-status",
            resources=("gadgets/status",),
            operations=("UPDATE",),
        ),
    )
    await gadgets.api.post(V1, gadget("g", size=1))
    status, body = await gadgets.api.patch(f"{V1}/g/status", {"status": {"phase": "Ready"}})
    assert status == 200, body
    assert requests(webhook, "/validate-main") == []
    [request] = requests(webhook, "/validate-status")
    assert request["subResource"] == "status" and request["requestSubResource"] == "status"
    assert request["object"]["status"] == {"phase": "Ready"}
    await gadgets.api.patch(f"{V1}/g", {"spec": {"size": 2}})
    assert len(requests(webhook, "/validate-main")) == 1
    assert len(requests(webhook, "/validate-status")) == 1


async def test_equivalent_versions_are_converted_for_the_webhook(
    cluster: Cluster, webhook: WebhookServer
) -> None:
    status, body = await cluster.api.post(CRDS, gadget_crd(webhook))
    assert status == 201, body
    await eventually(lambda: cluster.api.get(V1), what="gadgets served")
    webhook.mutation_patch = [{"op": "add", "path": "/spec/owner", "value": "webhook"}]
    await install(
        cluster,
        "MutatingWebhookConfiguration",
        "equivalent",
        hook(webhook, "eq.example.arges.dev", "/mutate", versions=("v1",)),
    )
    await install(
        cluster,
        "ValidatingWebhookConfiguration",
        "exact",
        hook(
            webhook, "exact.example.arges.dev", "/validate", versions=("v1",), matchPolicy="Exact"
        ),
    )
    status, body = await cluster.api.post(V1ALPHA1, gadget("g", "v1alpha1", length=3))
    assert status == 201, body
    assert body["spec"] == {"length": 3, "owner": "webhook"}
    [request] = requests(webhook, "/mutate")
    assert request["kind"]["version"] == "v1" and request["requestKind"]["version"] == "v1alpha1"
    assert request["resource"]["version"] == "v1"
    assert request["object"]["apiVersion"] == f"{GROUP}/v1"
    assert request["object"]["spec"] == {"size": 3}
    assert requests(webhook, "/validate") == [], "Exact does not match another version"
    assert (await cluster.api.get(f"{V1}/g"))[1]["spec"] == {"size": 3, "owner": "webhook"}


async def test_reinvocation_when_a_later_webhook_changes_the_object(
    gadgets: Cluster, webhook: WebhookServer
) -> None:
    webhook.mutation_patch = [{"op": "add", "path": "/spec/owner", "value": "b"}]
    await install(
        gadgets,
        "MutatingWebhookConfiguration",
        "a-first",
        hook(webhook, "a.example.arges.dev", "/watch-a", reinvocationPolicy="IfNeeded"),
    )
    await install(
        gadgets,
        "MutatingWebhookConfiguration",
        "b-second",
        hook(webhook, "b.example.arges.dev", "/mutate"),
    )
    await gadgets.api.post(V1, gadget("g", size=1))
    a_calls = requests(webhook, "/watch-a")
    assert len(a_calls) == 2 and len(requests(webhook, "/mutate")) == 1
    assert "owner" not in a_calls[0]["object"]["spec"]
    assert a_calls[1]["object"]["spec"]["owner"] == "b"


async def test_match_conditions_select_requests(gadgets: Cluster, webhook: WebhookServer) -> None:
    await install(
        gadgets,
        "ValidatingWebhookConfiguration",
        "conditional",
        hook(
            webhook,
            "cond.example.arges.dev",
            "/validate",
            matchConditions=[
                {"name": "not-skipped", "expression": "object.metadata.name != 'skip-me'"},
                {"name": "creates", "expression": "request.operation == 'CREATE'"},
            ],
        ),
    )
    await gadgets.api.post(V1, gadget("skip-me", size=50))
    assert requests(webhook, "/validate") == []
    status, _ = await gadgets.api.post(V1, gadget("checked", size=50))
    assert status == 403


async def test_warnings_are_passed_on(gadgets: Cluster, webhook: WebhookServer) -> None:
    webhook.warnings = ["gadgets are deprecated"]
    await install(
        gadgets,
        "ValidatingWebhookConfiguration",
        "w",
        hook(
            webhook, "w.example.arges.dev", "/validate", operations=("CREATE", "UPDATE", "DELETE")
        ),
    )
    manifest = {**gadget("g", size=1), "metadata": {"name": "g", "namespace": "default"}}
    out = await gadgets.kubectl("create", "-f", "-", stdin=yaml.safe_dump(manifest))
    assert "Warning: gadgets are deprecated" in out.err
    out = await gadgets.kubectl("delete", f"gadgets.{GROUP}", "g")
    assert "Warning: gadgets are deprecated" in out.err


async def test_a_deleted_crds_objects_go_whatever_the_webhooks_say(
    gadgets: Cluster, webhook: WebhookServer
) -> None:
    await install(
        gadgets,
        "ValidatingWebhookConfiguration",
        "deletes",
        hook(webhook, "del.example.arges.dev", "/validate", operations=("DELETE",)),
    )
    await gadgets.api.post(V1, gadget("g", size=1))
    await webhook.stop()
    status, body = await gadgets.api.delete(f"{V1}/g")
    assert status == 500 and "failed calling webhook" in body["message"]
    # The CRD's cleanup deletes its objects without admission, as kube-apiserver's does.
    status, _ = await gadgets.api.delete(f"{CRDS}/gadgets.{GROUP}")
    assert status == 200

    async def gone() -> bool:
        return (await gadgets.api.get(f"{CRDS}/gadgets.{GROUP}"))[0] == 404

    await eventually(gone, what="the CRD and its objects gone")
