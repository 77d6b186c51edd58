"""Webhook client configs and conversion webhooks' answers, as kube-apiserver validates and
checks them (``util/webhook/validation.go``, ``conversion/webhook_converter.go``)."""

from __future__ import annotations

from typing import Any

import pytest

from arges.apiserver.conversion import ConversionFailed, Converter
from arges.apiserver.resources import ConversionWebhook, ResourceType, Strategy, Version
from arges.apiserver.webhookclient import (
    ClientConfig,
    ServiceRef,
    WebhookClient,
    ca_bundle_error,
    client_config_causes,
)


def rendered(causes: list) -> list[str]:
    return [c.render() for c in causes]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"url": "https://127.0.0.1:9443/convert"}, []),
        (
            {"url": "http://h/x"},
            [
                "c.url: Invalid value: \"http\": 'https' is the only allowed URL scheme; desired "
                "format: https://host[/path]"
            ],
        ),
        (
            {"url": "https:///x"},
            [
                'c.url: Invalid value: "": host must be provided; desired format: https://host[/path]'
            ],
        ),
        (
            {"url": "https://u:p@h/x?q=1#f"},
            [
                'c.url: Invalid value: "u:p": user information is not permitted in the URL',
                'c.url: Invalid value: "f": fragments are not permitted in the URL',
                'c.url: Invalid value: "q=1": query parameters are not permitted in the URL',
            ],
        ),
        ({}, ["c: Required value: exactly one of url or service is required"]),
        (
            {"service": {"port": 0, "path": "x//Y"}},
            [
                "c.service.name: Required value: service name is required",
                "c.service.namespace: Required value: service namespace is required",
                "c.service.port: Invalid value: 0: port is not valid: must be between 1 and "
                "65535, inclusive",
                "c.service.path: Invalid value: \"x//Y\": must start with a '/'",
                'c.service.path: Invalid value: "x//Y": segment[0] may not be empty',
                'c.service.path: Invalid value: "x//Y": segment[1] may not be empty',
            ],
        ),
    ],
)
def test_client_configs_are_validated_as_kube_does(spec: dict, expected: list[str]) -> None:
    got = rendered(client_config_causes(spec, "c"))
    assert got[: len(expected)] == expected
    if not expected:
        assert got == []


def test_service_paths_are_dns_segments_and_services_have_an_address() -> None:
    spec = {"service": {"namespace": "ns", "name": "svc", "path": "/Convert"}}
    [cause] = client_config_causes(spec, "c")
    assert cause.message.startswith('Invalid value: "/Convert": segment[0]: a lowercase RFC 1123')
    config = ClientConfig.parse({"service": {"namespace": "system", "name": "hook"}})
    assert config.service == ServiceRef("system", "hook", "", 443)
    assert config.location() == "https://hook.system.svc:443"


def test_ca_bundles_must_hold_certificates() -> None:
    assert ca_bundle_error(b"") is None
    assert ca_bundle_error(b"nope") == (
        "unable to load root certificates: unable to parse bytes as PEM block"
    )
    broken = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    assert (ca_bundle_error(broken) or "").startswith(
        "unable to load root certificates: failed to parse certificate"
    )


class FakeClient(WebhookClient):
    """Answers every review with what ``answer`` makes of it."""

    def __init__(self, answer: Any) -> None:
        super().__init__()
        self.answer = answer

    async def post(self, config: ClientConfig, body: Any, seconds: float) -> Any:
        return self.answer(body)


GADGETS = ResourceType(
    group="example.com",
    plural="gadgets",
    singular="gadget",
    kind="Gadget",
    namespaced=True,
    versions=(Version("v1", None, storage=True), Version("v2", None)),
    strategy=Strategy(),
    conversion=ConversionWebhook(ClientConfig(url="https://h/convert"), "v1"),
)


def stored(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "example.com/v1",
        "kind": "Gadget",
        "metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}", "labels": {"a": "b"}},
    }


def answered(convert: Any) -> Any:
    def answer(review: dict[str, Any]) -> dict[str, Any]:
        req = review["request"]
        return {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "ConversionReview",
            "response": {
                "uid": req["uid"],
                "result": {"status": "Success"},
                "convertedObjects": [convert(o, req["desiredAPIVersion"]) for o in req["objects"]],
            },
        }

    return answer


async def test_converted_metadata_is_restored_but_labels_follow_the_webhook() -> None:
    def convert(obj: dict[str, Any], to: str) -> dict[str, Any]:
        meta = {**obj["metadata"], "labels": {"c": "d"}, "resourceVersion": "forged"}
        return {**obj, "apiVersion": to, "metadata": meta}

    converter = Converter(FakeClient(answered(convert)))
    [out] = await converter.convert(GADGETS, [stored("g")], "v2", batch=False)
    assert out["apiVersion"] == "example.com/v2"
    assert out["metadata"] == {"name": "g", "namespace": "ns", "uid": "uid-g", "labels": {"c": "d"}}


@pytest.mark.parametrize(
    ("convert", "batch", "message"),
    [
        (
            lambda o, to: {**o, "apiVersion": "example.com/v9"},
            True,
            # kube-apiserver's list path counts the object before this check: index 0 shows as 1.
            "conversion webhook for example.com/v1, Kind=Gadget returned invalid converted object "
            "at index 1: invalid groupVersion (expected example.com/v2, received example.com/v9)",
        ),
        (
            lambda o, to: {**o, "apiVersion": to, "kind": "Widget"},
            False,
            "conversion webhook for example.com/v1, Kind=Gadget returned invalid object at index "
            "0: invalid kind (expected Gadget, received Widget)",
        ),
        (
            lambda o, to: {**o, "apiVersion": to, "metadata": {**o["metadata"], "uid": "x"}},
            False,
            "conversion webhook for example.com/v1, Kind=Gadget returned invalid object: must "
            "have the same UID: uid-g != x",
        ),
        (
            lambda o, to: {
                **o,
                "apiVersion": to,
                "metadata": {**o["metadata"], "labels": {"bad key!": "v"}},
            },
            False,
            "conversion webhook for example.com/v1, Kind=Gadget returned invalid metadata: "
            'metadata.labels: Invalid value: "bad key!": name part must consist of',
        ),
    ],
)
async def test_bad_conversions_are_refused_in_kube_apiservers_words(
    convert: Any, batch: bool, message: str
) -> None:
    converter = Converter(FakeClient(answered(convert)))
    objects = [stored("g"), stored("h")] if batch else [stored("g")]
    with pytest.raises(ConversionFailed) as caught:
        await converter.convert(GADGETS, objects, "v2", batch=batch)
    assert caught.value.message.startswith(message)
    status = caught.value.status()
    assert status["code"] == 500 and "reason" not in status


async def test_a_short_answer_is_refused() -> None:
    def short(review: dict[str, Any]) -> dict[str, Any]:
        answer = answered(lambda o, to: {**o, "apiVersion": to})(review)
        answer["response"]["convertedObjects"] = []
        return answer

    converter = Converter(FakeClient(short))
    with pytest.raises(ConversionFailed) as caught:
        await converter.convert(GADGETS, [stored("g")], "v2", batch=False)
    assert caught.value.message == (
        "conversion webhook for example.com/v1, Kind=Gadget returned 0 objects, expected 1"
    )
