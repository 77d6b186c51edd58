"""Custom resources changing version, as kube-apiserver's CRD converters change them.

A CRD's ``spec.conversion.strategy`` decides: with ``None`` only ``apiVersion`` changes; with
``Webhook`` the objects go to the CRD's conversion webhook in a ``ConversionReview``
(``apiextensions-apiserver/pkg/apiserver/conversion/webhook_converter.go``):

- every object that is not already at the desired version goes in one review (a list, or a
  watch's batch of events, is one call), with a fresh ``uid`` and ``desiredAPIVersion``;
- the answer must be a ``ConversionReview`` of the version sent, echo the ``uid``, say
  ``Success``, and hold one object per object sent, each at the desired version, of the same
  kind, name, namespace and uid; the webhook may change labels and annotations (which must
  stay valid) but no other metadata: the rest is restored from the original;
- converted objects are pruned by the schema of their new version, as kube-apiserver's
  schema-coercing converter does.

A failure is a 500 with no reason and kube-apiserver's message (``conversion webhook for
example.com/v1, Kind=Widget failed: Post "https://...": ...``). Calls are bounded by 30 seconds,
client-go's default for webhooks.
"""

from __future__ import annotations

import copy
import uuid
from typing import Any

from arges.apiserver.errors import ServerError
from arges.apiserver.objects import at_version
from arges.apiserver.resources import ConversionWebhook, ResourceType
from arges.apiserver.validation import annotations_causes, labels_causes
from arges.apiserver.webhookclient import CallError, ConfigError, WebhookClient

TIMEOUT = 30.0
"""Seconds a conversion call may take (client-go's default timeout for webhook clients)."""
GROUP = "apiextensions.k8s.io"


class ConversionFailed(ServerError):
    """A conversion webhook could not convert (500, no reason, kube-apiserver's message)."""


def gvk(api_version: str, kind: str) -> str:
    """Go's ``GroupVersionKind.String()``: ``example.com/v1, Kind=Widget``."""
    group, _, version = api_version.rpartition("/")
    return f"{group}/{version}, Kind={kind}"


class Converter:
    """Changes objects' versions through their CRD's conversion (see the module docstring)."""

    def __init__(self, client: WebhookClient) -> None:
        self.client = client

    async def convert(
        self, rt: ResourceType, objects: list[dict[str, Any]], version: str, *, batch: bool
    ) -> list[dict[str, Any]]:
        """``objects`` (of any versions of ``rt``) at ``version``, in the same order.

        ``batch`` says whether they answer one request for several objects (a list or a watch),
        which words kube-apiserver's messages as for a list (``at index N``).

        Raises:
            ConversionFailed: the webhook could not be called or gave an unusable answer.
        """
        if rt.conversion is None:
            return [at_version(obj, rt, version) for obj in objects]
        target = rt.api_version(version)
        todo = [i for i, obj in enumerate(objects) if obj.get("apiVersion") != target]
        out = list(objects)
        if not todo:
            return out
        sent = [objects[i] for i in todo]
        converted = await self._call(rt, rt.conversion, sent, target, batch)
        schema = next(v.schema for v in rt.versions if v.name == version)
        for i, obj in zip(todo, converted, strict=True):
            if schema is not None:
                schema.prune(obj)
            out[i] = obj
        return out

    async def _call(
        self,
        rt: ResourceType,
        webhook: ConversionWebhook,
        objects: list[dict[str, Any]],
        target: str,
        batch: bool,
    ) -> list[dict[str, Any]]:
        what = gvk(str(objects[0].get("apiVersion", "")), rt.kind)
        review_api = f"{GROUP}/{webhook.review_version}"
        uid = str(uuid.uuid4())
        review = {
            "kind": "ConversionReview",
            "apiVersion": review_api,
            "request": {"uid": uid, "desiredAPIVersion": target, "objects": objects},
        }
        try:
            answer = await self.client.post(webhook.client, review, TIMEOUT)
            converted = _converted_objects(answer, review_api, uid)
        except (CallError, ConfigError) as exc:
            raise ConversionFailed(f"conversion webhook for {what} failed: {exc}") from exc
        if len(converted) != len(objects):
            raise ConversionFailed(
                f"conversion webhook for {what} returned {len(converted)} objects, expected "
                f"{len(objects)}"
            )
        return [
            _checked(what, original, result, target, i, batch)
            for i, (original, result) in enumerate(zip(objects, converted, strict=True))
        ]


def _converted_objects(answer: Any, review_api: str, uid: str) -> list[Any]:
    """``response.convertedObjects`` of a well-formed, successful answer.

    Raises:
        CallError: with kube-apiserver's reason the answer is refused.
    """
    if not isinstance(answer, dict):
        raise CallError("couldn't get version/kind; json parse error: not an object")
    strict = review_api.endswith("/v1")
    got = gvk(str(answer.get("apiVersion", "")), str(answer.get("kind", "")))
    if strict and got != gvk(review_api, "ConversionReview"):
        raise CallError(
            f"expected webhook response of {gvk(review_api, 'ConversionReview')}, got {got}"
        )
    response = answer.get("response")
    if not isinstance(response, dict):
        raise CallError("no response provided")
    if strict and response.get("uid", "") != uid:
        raise CallError(f'expected response.uid="{uid}", got "{response.get("uid", "")}"')
    result = response.get("result") or {}
    if result.get("status") != "Success":
        if result.get("message"):
            raise CallError(str(result["message"]))
        raise CallError(f"response.result.status was '{result.get('status', '')}', not 'Success'")
    converted = response.get("convertedObjects") or []
    return converted if isinstance(converted, list) else []


def _checked(
    what: str,
    original: dict[str, Any],
    result: Any,
    target: str,
    index: int,
    batch: bool,
) -> dict[str, Any]:
    """``result`` with ``original``'s metadata but its own labels and annotations.

    Raises:
        ConversionFailed: with kube-apiserver's wording for what the webhook got wrong.
    """
    # kube-apiserver's list path counts the object before checking its version and kind, so
    # those two messages name the next index there.
    shown = index + 1 if batch else index
    prefix = (
        f"conversion webhook for {what} returned invalid converted object at index"
        if batch
        else f"conversion webhook for {what} returned invalid object at index"
    )
    if not isinstance(result, dict):
        raise ConversionFailed(f"{prefix} {index}: converted object is not a JSON object")
    expected_gv = target
    received_gv = str(result.get("apiVersion", ""))
    if received_gv != expected_gv:
        raise ConversionFailed(
            f"{prefix} {shown}: invalid groupVersion (expected {expected_gv}, received "
            f"{received_gv})"
        )
    if result.get("kind") != original.get("kind"):
        raise ConversionFailed(
            f"{prefix} {shown}: invalid kind (expected {original.get('kind')}, received "
            f"{result.get('kind', '')})"
        )
    invalid_object = (
        f"{prefix} {index}" if batch else f"conversion webhook for {what} returned invalid object"
    )
    meta = original.get("metadata") or {}
    new_meta = result.get("metadata")
    got = new_meta if isinstance(new_meta, dict) else {}
    for key, label in (("name", "name"), ("namespace", "namespace"), ("uid", "UID")):
        if (meta.get(key) or "") != (got.get(key) or ""):
            raise ConversionFailed(
                f"{invalid_object}: must have the same {label}: {meta.get(key) or ''} != "
                f"{got.get(key) or ''}"
            )
    invalid_meta = (
        f"conversion webhook for {what} returned invalid metadata in object at index {index}"
        if batch
        else f"conversion webhook for {what} returned invalid metadata"
    )
    if not isinstance(new_meta, dict):
        raise ConversionFailed(f"{invalid_meta}: missing metadata in converted object")
    restored = copy.deepcopy(meta)
    for key in ("labels", "annotations"):
        value = new_meta.get(key)
        if value is None:
            restored.pop(key, None)
            continue
        if not isinstance(value, dict):
            raise ConversionFailed(
                f"{invalid_meta}: invalid metadata.{key} of type {type(value).__name__} in "
                "converted object"
            )
        for k, v in value.items():
            if not isinstance(v, str):
                raise ConversionFailed(
                    f"{invalid_meta}: metadata.{key}[{k}] must be a string, but is "
                    f"{type(v).__name__} in converted object"
                )
        if value != (meta.get(key) or {}):
            causes = (
                labels_causes(value, "metadata.labels")
                if key == "labels"
                else annotations_causes(value)
            )
            if causes:
                rendered = [c.render() for c in causes]
                text = rendered[0] if len(rendered) == 1 else "[" + ", ".join(rendered) + "]"
                raise ConversionFailed(f"{invalid_meta}: {text}")
        restored[key] = value
    result["metadata"] = restored
    return result
