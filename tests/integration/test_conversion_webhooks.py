"""CRD conversion webhooks, called as kube-apiserver calls them (real kubectl and raw HTTP).

A test webhook server (HTTPS, CA made in the test) converts Gadgets between v1 (stored) and
v1alpha1, which name ``spec.size``/``spec.color`` ``spec.length``/``spec.colour``.
"""

from __future__ import annotations

import json

import pytest
import yaml

from tests.integration.conftest import Cluster, eventually
from tests.integration.webhook_server import GROUP, WebhookServer, gadget, gadget_crd, make_pki

CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
V1 = f"/apis/{GROUP}/v1/namespaces/default/gadgets"
V1ALPHA1 = f"/apis/{GROUP}/v1alpha1/namespaces/default/gadgets"


@pytest.fixture
async def gadgets(cluster: Cluster, webhook: WebhookServer) -> Cluster:
    status, body = await cluster.api.post(CRDS, gadget_crd(webhook))
    assert status == 201, body
    await eventually(lambda: cluster.api.get(V1), what="gadgets served")
    return cluster


def conversions(webhook: WebhookServer) -> list[dict]:
    return [r["request"] for r in webhook.received("/convert")]


async def test_reads_lists_and_watches_convert_at_another_version(
    gadgets: Cluster, webhook: WebhookServer
) -> None:
    api = gadgets.api
    for i in range(3):
        status, body = await api.post(V1, gadget(f"g{i}", size=i + 1, color="red"))
        assert status == 201, body
    assert conversions(webhook) == [], "the storage version needs no conversion"

    status, obj = await api.get(f"{V1ALPHA1}/g0")
    assert status == 200, obj
    assert obj["apiVersion"] == f"{GROUP}/v1alpha1"
    assert obj["spec"] == {"length": 1, "colour": "red"}
    assert obj["metadata"]["labels"] == {"converted-to": "v1alpha1"}, "labels may change"
    [review] = webhook.received("/convert")
    assert review["apiVersion"] == "apiextensions.k8s.io/v1"
    assert review["kind"] == "ConversionReview"
    assert review["query"] == {"timeout": "30s"}
    assert review["request"]["desiredAPIVersion"] == f"{GROUP}/v1alpha1"
    assert review["request"]["uid"]
    assert [o["metadata"]["name"] for o in review["request"]["objects"]] == ["g0"]

    # A list is one review with every object.
    status, listed = await api.get(V1ALPHA1)
    assert status == 200
    assert listed["apiVersion"] == f"{GROUP}/v1alpha1"
    assert [i["spec"]["length"] for i in listed["items"]] == [1, 2, 3]
    assert len(conversions(webhook)) == 2
    assert len(conversions(webhook)[-1]["objects"]) == 3

    # Selectors see the converted objects: v1alpha1's selectable field is spec.colour.
    status, listed = await api.get(V1ALPHA1, params={"fieldSelector": "spec.colour=red"})
    assert status == 200, listed
    assert len(listed["items"]) == 3

    # kubectl reads at the version asked for.
    out = await gadgets.kubectl("get", f"gadgets.v1alpha1.{GROUP}", "g1", "-o", "json")
    assert json.loads(out.out)["spec"] == {"length": 2, "colour": "red"}
    out = await gadgets.kubectl("get", f"gadgets.v1.{GROUP}", "g1", "-o", "json")
    assert json.loads(out.out)["spec"] == {"size": 2, "color": "red"}

    # A watch at v1alpha1 sees converted objects, then converted changes.
    before = len(conversions(webhook))

    async def bump() -> None:
        await api.patch(f"{V1}/g2", {"spec": {"size": 30}})

    events: list[dict] = []

    async def watch() -> None:
        events.extend(
            await api.watch(
                V1ALPHA1,
                {},
                until=lambda evs: any(e["type"] == "MODIFIED" for e in evs),
            )
        )

    import asyncio

    watcher = asyncio.create_task(watch())
    await eventually(lambda: len(conversions(webhook)) > before, what="initial events")
    await bump()
    await watcher
    assert [e["type"] for e in events] == ["ADDED", "ADDED", "ADDED", "MODIFIED"]
    assert events[-1]["object"]["spec"]["length"] == 30
    assert all(e["object"]["apiVersion"] == f"{GROUP}/v1alpha1" for e in events)


async def test_writes_at_another_version_are_stored_converted(
    gadgets: Cluster, webhook: WebhookServer
) -> None:
    api = gadgets.api
    status, created = await api.post(V1ALPHA1, gadget("alpha", "v1alpha1", length=4))
    assert status == 201, created
    assert created["apiVersion"] == f"{GROUP}/v1alpha1"
    assert created["spec"] == {"length": 4}
    # To the storage version, then back for the answer.
    assert [c["desiredAPIVersion"] for c in conversions(webhook)] == [
        f"{GROUP}/v1",
        f"{GROUP}/v1alpha1",
    ]
    status, stored = await api.get(f"{V1}/alpha")
    assert stored["spec"] == {"size": 4}
    assert stored["metadata"]["uid"] == created["metadata"]["uid"]

    status, patched = await api.patch(f"{V1ALPHA1}/alpha", {"spec": {"colour": "blue"}})
    assert status == 200, patched
    assert patched["spec"] == {"length": 4, "colour": "blue"}
    assert (await api.get(f"{V1}/alpha"))[1]["spec"] == {"size": 4, "color": "blue"}

    # kubectl apply at v1alpha1, then an update through it.
    manifest = gadget("applied", "v1alpha1", length=2, colour="green")
    manifest["metadata"]["namespace"] = "default"
    await gadgets.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(manifest))
    manifest["spec"]["length"] = 3
    await gadgets.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(manifest))
    assert (await api.get(f"{V1}/applied"))[1]["spec"] == {"size": 3, "color": "green"}

    # Status writes at v1alpha1 reach the stored object too.
    status, body = await api.patch(f"{V1ALPHA1}/applied/status", {"status": {"phase": "Ready"}})
    assert status == 200, body
    assert (await api.get(f"{V1}/applied"))[1]["status"] == {"phase": "Ready"}

    # Dry run converts both ways and stores nothing.
    status, body = await api.post(
        V1ALPHA1, gadget("dry", "v1alpha1", length=1), params={"dryRun": "All"}
    )
    assert status == 201 and body["spec"] == {"length": 1}
    assert (await api.get(f"{V1}/dry"))[0] == 404

    status, body = await api.delete(f"{V1ALPHA1}/alpha")
    assert status == 200 and body["kind"] == "Status", body
    assert (await api.get(f"{V1}/alpha"))[0] == 404


async def test_conversion_failures_answer_as_kube_apiserver(
    gadgets: Cluster, webhook: WebhookServer
) -> None:
    api = gadgets.api
    await api.post(V1, gadget("g", size=1))
    gvk = f"{GROUP}/v1, Kind=Gadget"

    webhook.conversion_mode = "bad-uid"
    status, body = await api.get(f"{V1ALPHA1}/g")
    uid = conversions(webhook)[-1]["uid"]
    assert status == 500
    assert body == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": f'conversion webhook for {gvk} failed: expected response.uid="{uid}", '
        'got "not-the-uid"',
        "code": 500,
    }

    webhook.conversion_mode = "failure"
    status, body = await api.get(V1ALPHA1)
    assert (status, body["message"]) == (
        500,
        f"conversion webhook for {gvk} failed: cannot convert gadgets today",
    )

    webhook.conversion_mode = "rename"
    status, body = await api.get(f"{V1ALPHA1}/g")
    assert body["message"] == (
        f"conversion webhook for {gvk} returned invalid object: must have the same name: "
        "g != someone-else"
    )
    status, body = await api.get(V1ALPHA1)
    assert body["message"] == (
        f"conversion webhook for {gvk} returned invalid converted object at index 0: must "
        "have the same name: g != someone-else"
    )

    webhook.conversion_mode = "ok"
    await webhook.stop()
    status, body = await api.get(f"{V1ALPHA1}/g")
    assert status == 500
    assert body["message"] == (
        f'conversion webhook for {gvk} failed: Post "{webhook.url}/convert?timeout=30s": dial '
        f"tcp 127.0.0.1:{webhook.port}: connect: connection refused"
    )
    assert "reason" not in body
    failed = await gadgets.kubectl("get", f"gadgets.v1alpha1.{GROUP}", "g", check=False)
    assert failed.code == 1
    assert f"Error from server: conversion webhook for {gvk} failed: Post" in failed.err
    # The storage version needs no webhook.
    assert (await api.get(f"{V1}/g"))[0] == 200
    # A write at the other version fails as the read does, and stores nothing.
    status, body = await api.post(V1ALPHA1, gadget("new", "v1alpha1", length=1))
    assert status == 500 and body["message"].startswith(
        f"conversion webhook for {GROUP}/v1alpha1, Kind=Gadget failed: Post"
    )
    assert (await api.get(f"{V1}/new"))[0] == 404


async def test_a_watch_ends_with_an_error_when_conversion_fails(
    gadgets: Cluster, webhook: WebhookServer
) -> None:
    await gadgets.api.post(V1, gadget("g", size=1))
    webhook.conversion_mode = "failure"
    events = await gadgets.api.watch(V1ALPHA1, {}, until=lambda evs: bool(evs))
    assert events[0]["type"] == "ERROR"
    assert events[0]["object"]["code"] == 500
    assert events[0]["object"]["message"].endswith("failed: cannot convert gadgets today")


async def test_untrusted_certificates_and_services_fail_the_call(
    cluster: Cluster, webhook: WebhookServer
) -> None:
    api = cluster.api
    crd = gadget_crd(webhook)
    # A caBundle of another CA: the server's certificate is not trusted.
    crd["spec"]["conversion"]["webhook"]["clientConfig"]["caBundle"] = make_pki("other").ca_bundle
    assert (await api.post(CRDS, crd))[0] == 201
    await eventually(lambda: api.get(V1), what="gadgets served")
    await api.post(V1, gadget("g", size=1))
    status, body = await api.get(f"{V1ALPHA1}/g")
    assert (status, body["message"]) == (
        500,
        f'conversion webhook for {GROUP}/v1, Kind=Gadget failed: Post "{webhook.url}/convert?'
        'timeout=30s": tls: failed to verify certificate: x509: certificate signed by unknown '
        "authority",
    )

    # A Service cannot be resolved without a cluster network.
    status, current = await api.get(f"{CRDS}/gadgets.{GROUP}")
    current["spec"]["conversion"]["webhook"]["clientConfig"] = {
        "service": {"namespace": "capi-system", "name": "webhook-service", "path": "/convert"}
    }
    status, updated = await api.put(f"{CRDS}/gadgets.{GROUP}", current)
    assert status == 200, updated
    assert updated["spec"]["conversion"]["webhook"]["clientConfig"]["service"]["port"] == 443

    async def refused() -> dict | None:
        status, body = await api.get(f"{V1ALPHA1}/g")
        return body if status == 500 and "service" in body["message"] else None

    body = await eventually(refused, what="the new client config in use")
    assert body["message"] == (
        f"conversion webhook for {GROUP}/v1, Kind=Gadget failed: Post "
        '"https://webhook-service.capi-system.svc:443/convert?timeout=30s": no endpoints '
        'available for service "webhook-service"'
    )


@pytest.mark.parametrize(
    ("conversion", "code", "message"),
    [
        (
            {"strategy": "Webhook"},
            422,
            "[spec.conversion.webhookClientConfig: Required value: required when strategy is "
            "set to Webhook, spec.conversion.conversionReviewVersions: Required value]",
        ),
        (
            {
                "strategy": "Webhook",
                "webhook": {
                    "conversionReviewVersions": ["v2"],
                    "clientConfig": {"url": "http://127.0.0.1/convert?x=1"},
                },
            },
            422,
            "[spec.conversion.webhookClientConfig.url: Invalid value: \"http\": 'https' is the "
            "only allowed URL scheme; desired format: https://host[/path], "
            'spec.conversion.webhookClientConfig.url: Invalid value: "x=1": query parameters '
            "are not permitted in the URL, spec.conversion.conversionReviewVersions: Invalid "
            'value: []string{"v2"}: must include at least one of v1, v1beta1]',
        ),
        (
            {
                "strategy": "Webhook",
                "webhook": {
                    "conversionReviewVersions": ["v1"],
                    "clientConfig": {
                        "url": "https://127.0.0.1/convert",
                        "service": {"namespace": "x", "name": "y"},
                    },
                },
            },
            422,
            "spec.conversion.webhookClientConfig: Required value: exactly one of url or "
            "service is required",
        ),
        (
            {
                "strategy": "Webhook",
                "webhook": {
                    "conversionReviewVersions": ["v1"],
                    "clientConfig": {"url": "https://127.0.0.1/convert", "caBundle": "bm9wZQ=="},
                },
            },
            422,
            "spec.conversion.webhookClientConfig.caBundle: Invalid value: []byte{0x6e, 0x6f, "
            "0x70, 0x65}: unable to load root certificates: unable to parse bytes as PEM block",
        ),
        (
            {
                "strategy": "Webhook",
                "webhook": {
                    "conversionReviewVersions": ["v1"],
                    "clientConfig": {"url": "https://127.0.0.1/convert", "caBundle": "n*pe"},
                },
            },
            400,
            'CustomResourceDefinition in version "v1" cannot be handled as a '
            "CustomResourceDefinition: illegal base64 data at input byte 1",
        ),
        (
            {"strategy": "None", "webhook": {"conversionReviewVersions": ["v1"]}},
            422,
            "spec.conversion.conversionReviewVersions: Forbidden: should not be set when "
            "strategy is not set to Webhook",
        ),
    ],
)
async def test_invalid_conversion_configs_are_refused(
    cluster: Cluster, conversion: dict, code: int, message: str
) -> None:
    crd = gadget_crd(None)
    crd["spec"]["conversion"] = conversion
    status, body = await cluster.api.post(CRDS, crd)
    assert status == code, body
    prefix = (
        'CustomResourceDefinition.apiextensions.k8s.io "gadgets.example.arges.dev" is invalid: '
    )
    assert body["message"] == (prefix + message if code == 422 else message)
