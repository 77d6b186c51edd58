"""Admission webhooks: kube-apiserver's MutatingAdmissionWebhook and ValidatingAdmissionWebhook.

Every create, update (status subresource included) and delete passes here twice, as in
kube-apiserver's admission chain (``k8s.io/apiserver/pkg/admission/plugin/webhook``):

1. :meth:`Admission.mutate`, before the object is validated: the MutatingWebhookConfigurations'
   webhooks (configurations by name, webhooks in order) that the request selects
   (:mod:`~arges.apiserver.webhookmatch`) are called one after the other with an
   ``AdmissionReview``; each ``JSONPatch`` answer is applied and the schema's defaults
   re-applied. If any webhook changed the object, those with ``reinvocationPolicy: IfNeeded``
   that ran before the change are called once more.
2. :meth:`Admission.validate`, after validation, just before the write: the validating
   webhooks are called concurrently; the first refusal (in configuration order) wins.

A webhook registered for another version of the resource (``matchPolicy: Equivalent``) sees
the object converted to that version (:mod:`~arges.apiserver.conversion`), and its patch is
converted back. A refusal is the webhook's own Status prefixed with ``admission webhook
"<name>" denied the request``; a webhook that cannot be called, times out or answers
nonsense fails the request with ``Internal error occurred: failed calling webhook "<name>":
...``, unless its ``failurePolicy`` is ``Ignore``. The configurations themselves are exempt,
so a broken webhook can always be removed.

Nothing here holds the store: webhooks are awaited before the write is queued, and a write
that then meets a newer revision is retried with admission run again, as kube-apiserver does.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jsonpatch
import jsonpointer

from arges.apiserver import codec
from arges.apiserver.admissionregistration import EXEMPT, GROUP, MUTATING, VALIDATING
from arges.apiserver.conversion import ConversionFailed, Converter, gvk
from arges.apiserver.decoding import base64_error_offset
from arges.apiserver.entries import Change
from arges.apiserver.errors import Forbidden, InternalError, NotFound, StatusError, qualified
from arges.apiserver.resources import ResourceType
from arges.apiserver.store import Store
from arges.apiserver.webhookclient import CallError, ConfigError, WebhookClient
from arges.apiserver.webhookmatch import Hook, hooks_of, rule_matches
from arges.errors import ArgesError

log = logging.getLogger(__name__)

MUTATING_RESOURCE = f"{MUTATING}.{GROUP}"
VALIDATING_RESOURCE = f"{VALIDATING}.{GROUP}"
REVIEW_GROUP = "admission.k8s.io"


@dataclass(frozen=True)
class UserInfo:
    """Who makes a request, as webhooks are told (``authentication/v1 UserInfo``)."""

    username: str
    groups: tuple[str, ...] = ()

    def review(self) -> dict[str, Any]:
        """An AdmissionReview request's ``userInfo``: ``username``, and ``groups`` when any."""
        out: dict[str, Any] = {"username": self.username}
        if self.groups:
            out["groups"] = list(self.groups)
        return out


ADMIN = UserInfo("admin", ("system:masters", "system:authenticated"))
"""The holder of the admin token, the one identity Arges authenticates."""
SYSTEM = UserInfo("system:apiserver", ("system:masters", "system:authenticated"))
"""The API server's own controllers (garbage collector, namespace and CRD lifecycle)."""


def meta_options(kind: str, **values: Any) -> dict[str, Any]:
    """A ``meta.k8s.io/v1`` options object (``CreateOptions``...) without its empty fields."""
    return {
        "kind": kind,
        "apiVersion": "meta.k8s.io/v1",
        **{k: v for k, v in values.items() if v not in (None, "", [], {})},
    }


@dataclass
class Attributes:
    """One write as admission sees it (``admission.Attributes``).

    ``version`` is the version the request was made at; ``obj`` and ``old`` are at that
    version (``obj`` is None for DELETE, ``old`` for CREATE). Webhooks' warnings are appended
    to ``warnings``.
    """

    rt: ResourceType
    version: str
    operation: str
    namespace: str
    name: str
    subresource: str
    obj: dict[str, Any] | None
    old: dict[str, Any] | None
    dry_run: bool
    options: dict[str, Any]
    user: UserInfo
    warnings: list[str] = field(default_factory=list)

    @property
    def is_namespace(self) -> bool:
        return self.rt.plural == "namespaces" and not self.rt.group

    @property
    def request_namespace(self) -> str:
        """The namespace webhooks are told: a Namespace's own name for a Namespace."""
        return self.name if self.is_namespace else self.namespace


class Denied(StatusError):
    """A webhook's refusal: its Status, with kube-apiserver's prefix (``ToStatusErr``)."""

    def __init__(self, webhook: str, result: Any) -> None:
        result = result if isinstance(result, Mapping) else {}
        denied = f'admission webhook "{webhook}" denied the request'
        if result.get("message"):
            message = f"{denied}: {result['message']}"
        elif result.get("reason"):
            message = f"{denied}: {result['reason']}"
        else:
            message = f"{denied} without explanation"
        details = result.get("details")
        super().__init__(message, details=details if isinstance(details, dict) else None)
        code = result.get("code")
        self.code = code if isinstance(code, int) and code >= 400 else 400
        self.reason = str(result.get("reason") or "")


def internal_error(text: str) -> InternalError:
    """kube-apiserver's ``NewInternalError``: 500, the text as its one cause."""
    return InternalError(
        f"Internal error occurred: {text}", details={"causes": [{"message": text}]}
    )


class _CallFailed(ArgesError):
    """kube-apiserver's ``ErrCallingWebhook``: subject to the webhook's failure policy."""


@dataclass
class _Invocation:
    """A webhook to call, at ``version`` of the resource, with the objects at that version."""

    hook: Hook
    version: str
    obj: dict[str, Any] | None
    old: dict[str, Any] | None


class _Views:
    """The request's objects at each version webhooks asked for, converted on demand.

    After a mutation only the mutated version is current; others are converted from it.
    """

    def __init__(self, converter: Converter, a: Attributes) -> None:
        self.converter = converter
        self.rt = a.rt
        self.current = a.version
        self.views: dict[str, tuple[dict[str, Any] | None, dict[str, Any] | None]] = {
            a.version: (a.obj, a.old)
        }

    async def at(self, version: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """The (object, old object) at ``version``.

        Raises:
            InternalError: the conversion failed (kube-apiserver wraps it twice).
        """
        if version not in self.views:
            obj, old = self.views[self.current]
            present = [copy.deepcopy(o) for o in (obj, old) if o is not None]
            try:
                converted = await self.converter.convert(self.rt, present, version, batch=False)
            except ConversionFailed as exc:
                raise internal_error(f"Internal error occurred: {exc.message}") from exc
            it = iter(converted)
            self.views[version] = (
                next(it) if obj is not None else None,
                next(it) if old is not None else None,
            )
        return self.views[version]

    def mutated(self, version: str, obj: dict[str, Any]) -> None:
        old = self.views[version][1]
        self.views = {version: (obj, old)}
        self.current = version


class Admission:
    """The webhook admission plugins over one store (see the module docstring).

    The configurations are read from the store and compiled again only after they change (a
    store observer drops the compiled hooks), so a request with no webhook configured costs
    one attribute check.
    """

    def __init__(self, store: Store, converter: Converter, client: WebhookClient) -> None:
        self.store = store
        self.converter = converter
        self.client = client
        self._hooks: tuple[list[Hook], list[Hook]] | None = None
        store.observe(self._observe)

    def _observe(self, change: Change) -> None:
        if change.entry.resource in (MUTATING_RESOURCE, VALIDATING_RESOURCE):
            self._hooks = None

    def hooks(self, *, mutating: bool) -> list[Hook]:
        """The webhooks configured now: configurations by name, their webhooks in order."""
        if self._hooks is None:
            self._hooks = (
                self._load(MUTATING_RESOURCE, True),
                self._load(VALIDATING_RESOURCE, False),
            )
        return self._hooks[0] if mutating else self._hooks[1]

    def _load(self, resource: str, mutating: bool) -> list[Hook]:
        entries = sorted(self.store.items(resource), key=lambda e: e.name)
        return [h for e in entries for h in hooks_of(e.object(), mutating=mutating)]

    @staticmethod
    def _exempt(rt: ResourceType) -> bool:
        return rt.group == GROUP and rt.plural in EXEMPT

    # Mutating.

    async def mutate(self, a: Attributes) -> dict[str, Any] | None:
        """The object after the mutating webhooks (``a.obj`` itself when none applies).

        Raises:
            Denied: a webhook refused the request.
            InternalError: a webhook failed under ``failurePolicy: Fail``, its patch did not
                apply, or a conversion failed.
            NotFound: a webhook selects namespaces and the request's does not exist.
            Forbidden: match conditions could not be evaluated.
        """
        hooks = self.hooks(mutating=True)
        if not hooks or self._exempt(a.rt):
            return a.obj
        views = _Views(self.converter, a)
        invoked: set[str] = set()
        reinvoke: set[str] = set()
        changed_any = False
        for again in (False, True):
            if again and not changed_any:
                break
            for hook in hooks:
                invocation = await self._invocation(hook, a, views)
                if invocation is None or (again and hook.uid not in reinvoke):
                    continue
                if await self._call_mutating(invocation, a, views):
                    # Webhooks that already ran may want to see what this one changed.
                    reinvoke |= invoked
                    invoked = set()
                    changed_any = True
                if hook.reinvoke:
                    invoked.add(hook.uid)
        obj, _ = await views.at(a.version)
        return obj

    async def _call_mutating(self, inv: _Invocation, a: Attributes, views: _Views) -> bool:
        hook = inv.hook
        try:
            response = await self._review(inv, a)
            if not response.get("allowed"):
                raise Denied(hook.name, response.get("status"))
            ops = _patch_of(response, hook.review_version)
        except _CallFailed as exc:
            if hook.fail:
                log.warning("Failed calling webhook, failing closed %s: %s", hook.name, exc)
                raise internal_error(f'failed calling webhook "{hook.name}": {exc}') from None
            log.warning("Failed calling webhook, failing open %s: %s", hook.name, exc)
            return False
        if not ops:
            return False
        if inv.obj is None:
            raise internal_error(
                f'admission webhook "{hook.name}" attempted to modify the object, which is not '
                "supported for this operation"
            )
        try:
            patched = jsonpatch.JsonPatch(ops).apply(inv.obj)
        except (
            jsonpatch.JsonPatchException,
            jsonpointer.JsonPointerException,
            TypeError,
            AttributeError,
        ) as exc:
            raise internal_error(str(exc)) from exc
        if not isinstance(patched, dict):
            raise internal_error("the patched object is not a JSON object")
        schema = next(v.schema for v in a.rt.versions if v.name == inv.version)
        if schema is not None:
            schema.default(patched)
        changed = bool(patched != inv.obj)
        views.mutated(inv.version, patched)
        return changed

    # Validating.

    async def validate(self, a: Attributes) -> None:
        """Call the validating webhooks the request selects, concurrently.

        Raises:
            Denied, InternalError, NotFound, Forbidden: as :meth:`mutate`, the first in
                configuration order when several webhooks fail.
        """
        hooks = self.hooks(mutating=False)
        if not hooks or self._exempt(a.rt):
            return
        views = _Views(self.converter, a)
        invocations = []
        for hook in hooks:
            invocation = await self._invocation(hook, a, views)
            if invocation is not None:
                invocations.append(invocation)
        results = await asyncio.gather(
            *(self._call_validating(inv, a) for inv in invocations), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def _call_validating(self, inv: _Invocation, a: Attributes) -> None:
        hook = inv.hook
        try:
            response = await self._review(inv, a)
        except _CallFailed as exc:
            if hook.fail:
                log.warning("Failed calling webhook, failing closed %s: %s", hook.name, exc)
                raise internal_error(f'failed calling webhook "{hook.name}": {exc}') from None
            log.warning("Failed calling webhook, failing open %s: %s", hook.name, exc)
            return
        if not response.get("allowed"):
            raise Denied(hook.name, response.get("status"))

    # Matching (ShouldCallHook).

    async def _invocation(self, hook: Hook, a: Attributes, views: _Views) -> _Invocation | None:
        rt = a.rt
        namespace = a.request_namespace
        labels: Mapping[str, str] | None = None
        missing: StatusError | None = None
        if hook.namespace_selector.requirements and (namespace or a.is_namespace):
            if a.is_namespace and not a.subresource and a.operation in ("CREATE", "UPDATE"):
                labels = ((a.obj or {}).get("metadata") or {}).get("labels") or {}
            else:
                entry = self.store.get("namespaces", "", namespace)
                if entry is None:
                    missing = NotFound.resource("namespaces", "", namespace)
                    labels = {}
                else:
                    labels = entry.labels
        if missing is None and not hook.namespace_matches(labels):
            return None
        if not hook.object_matches(a.obj, a.old):
            return None
        version = self._matched_version(hook, a, namespace)
        if version is None:
            return None
        if missing is not None:
            raise missing
        obj, old = await views.at(version)
        invocation = _Invocation(hook, version, obj, old)
        if hook.conditions:
            variables = {
                "object": obj,
                "oldObject": old,
                "request": self._request(invocation, a, ""),
            }
            holds, errors = hook.conditions_hold(variables)
            if errors and hook.fail:
                text = errors[0] if len(errors) == 1 else "[" + ", ".join(errors) + "]"
                details: dict[str, Any] = {"name": a.name, "kind": rt.plural}
                if rt.group:
                    details["group"] = rt.group
                raise Forbidden(
                    f'{qualified(rt.plural, rt.group)} "{a.name}" is forbidden: {text}',
                    details=details,
                )
            if not holds:
                return None
        return invocation

    @staticmethod
    def _matched_version(hook: Hook, a: Attributes, namespace: str) -> str | None:
        rt = a.rt

        def matches(version: str) -> bool:
            return any(
                rule_matches(
                    rule, a.operation, rt.group, version, rt.plural, a.subresource, namespace
                )
                for rule in hook.rules
            )

        if matches(a.version):
            return a.version
        if hook.equivalent:
            # Earlier rules first, then the resource's other versions (EquivalentResourcesFor).
            for rule in hook.rules:
                for version in rt.served():
                    if version.name != a.version and rule_matches(
                        rule,
                        a.operation,
                        rt.group,
                        version.name,
                        rt.plural,
                        a.subresource,
                        namespace,
                    ):
                        return version.name
        return None

    # Calling.

    def _request(self, inv: _Invocation, a: Attributes, uid: str) -> dict[str, Any]:
        """An ``AdmissionRequest`` (v1 and v1beta1 have the same fields), in Go's field order."""
        rt = a.rt
        request: dict[str, Any] = {"uid": uid} if uid else {}
        request["kind"] = {"group": rt.group, "version": inv.version, "kind": rt.kind}
        request["resource"] = {"group": rt.group, "version": inv.version, "resource": rt.plural}
        if a.subresource:
            request["subResource"] = a.subresource
        request["requestKind"] = {"group": rt.group, "version": a.version, "kind": rt.kind}
        request["requestResource"] = {
            "group": rt.group,
            "version": a.version,
            "resource": rt.plural,
        }
        if a.subresource:
            request["requestSubResource"] = a.subresource
        if a.name:
            request["name"] = a.name
        if a.request_namespace:
            request["namespace"] = a.request_namespace
        request["operation"] = a.operation
        request["userInfo"] = a.user.review()
        if uid:
            request["object"] = inv.obj
            request["oldObject"] = inv.old
        request["dryRun"] = a.dry_run
        request["options"] = a.options
        return request

    async def _review(self, inv: _Invocation, a: Attributes) -> dict[str, Any]:
        """Call ``inv``'s webhook; its verified ``response``, warnings collected.

        Raises:
            _CallFailed: the call failed or the answer is not a valid AdmissionReview.
        """
        hook = inv.hook
        uid = str(uuid.uuid4())
        api_version = f"{REVIEW_GROUP}/{hook.review_version}"
        review = {
            "kind": "AdmissionReview",
            "apiVersion": api_version,
            "request": self._request(inv, a, uid),
        }
        try:
            answer = await self.client.post(hook.client, review, hook.timeout)
        except ConfigError as exc:
            raise _CallFailed(f"could not get REST client: {exc}") from exc
        except CallError as exc:
            raise _CallFailed(f"failed to call webhook: {exc}") from exc
        try:
            response = _verify(answer, api_version, uid, mutating=hook.mutating)
        except ValueError as exc:
            raise _CallFailed(f"received invalid webhook response: {exc}") from exc
        a.warnings += [str(w) for w in response.get("warnings") or []]
        return response


def _verify(answer: Any, api_version: str, uid: str, *, mutating: bool) -> dict[str, Any]:
    """``VerifyAdmissionResponse``: the ``response`` of a well-formed answer.

    Raises:
        ValueError: with kube-apiserver's reason for refusing the answer.
    """
    response = answer.get("response") if isinstance(answer, dict) else None
    if not isinstance(response, dict):
        raise ValueError("webhook response was absent")
    if not api_version.endswith("/v1"):
        # v1beta1 answers were never checked for their uid, kind or patch type.
        return response
    if response.get("uid", "") != uid:
        raise ValueError(f'expected response.uid="{uid}", got "{response.get("uid", "")}"')
    got = gvk(str(answer.get("apiVersion", "")), str(answer.get("kind", "")))
    if got != gvk(api_version, "AdmissionReview"):
        raise ValueError(
            f"expected webhook response of {gvk(api_version, 'AdmissionReview')}, got {got}"
        )
    patch, patch_type = response.get("patch"), response.get("patchType")
    if mutating:
        if patch and patch_type is None:
            raise ValueError("webhook returned response.patch but not response.patchType")
        if not patch and patch_type is not None:
            raise ValueError("webhook returned response.patchType but not response.patch")
        if patch_type == "":
            raise ValueError('webhook returned invalid response.patchType of ""')
    elif patch:
        raise ValueError("validating webhook may not return response.patch")
    elif patch_type is not None:
        raise ValueError("validating webhook may not return response.patchType")
    return response


def _patch_of(response: dict[str, Any], review_version: str) -> list[Any]:
    """The JSON Patch operations of a mutating webhook's answer (empty when none).

    Raises:
        _CallFailed: the patch is no base64, of another type, or no list of operations.
    """
    encoded = response.get("patch")
    if not encoded:
        return []
    at = base64_error_offset(encoded) if isinstance(encoded, str) else 0
    if at is not None:
        raise _CallFailed(f"failed to call webhook: illegal base64 data at input byte {at}")
    patch_type = response.get("patchType") if review_version == "v1" else "JSONPatch"
    if patch_type != "JSONPatch":
        raise _CallFailed(f'unsupported patch type "{patch_type}"')
    try:
        ops = codec.loads(base64.b64decode(encoded))
    except ValueError as exc:
        raise _CallFailed(f"received undecodable patch in webhook response: {exc}") from exc
    if not isinstance(ops, list):
        raise _CallFailed(
            "received undecodable patch in webhook response: json: cannot unmarshal "
            f"{type(ops).__name__} into Go value of type jsonpatch.Patch"
        )
    return ops
