"""Kubernetes REST semantics over the store: create, get, list, update, patch, delete.

This is kube-apiserver's generic registry (``k8s.io/apiserver/pkg/registry/generic/registry``)
for the kinds this server knows, in the order it works:

- decode and check the object (apiVersion and kind match the URL, name and namespace too);
- prune unknown fields (``fieldValidation``: Ignore, Warn (default) or Strict), apply defaults;
- fill system metadata (uid, creationTimestamp, generation) and apply the kind's strategy
  (status is a subresource; namespaces own their status; secrets fold stringData);
- record who owns which fields (``metadata.managedFields``, :mod:`~arges.apiserver.
  managedfields`), or merge an applied configuration (server-side apply,
  :mod:`~arges.apiserver.apply`);
- call the mutating admission webhooks (:mod:`~arges.apiserver.admission`) before validation
  and the validating ones after it;
- validate (metadata, schema, kind rules) and answer 422 with every cause;
- write through the store with optimistic concurrency: an update that names a
  resourceVersion other than the stored one gets 409; one that names none is retried on
  races (``GuaranteedUpdate``); an update that changes nothing writes nothing;
- deletion honours finalizers (``deletionTimestamp`` first, removal when they are gone),
  preconditions, and the propagation policies that the garbage collector then carries out.

Objects are stored at their resource's storage version and served at the version asked for,
converted by the CRD's conversion (:mod:`~arges.apiserver.conversion`): reads and writes at
another version than the stored one call a conversion webhook when the CRD has one (a list is
one call), and only relabel ``apiVersion`` otherwise.
"""

from __future__ import annotations

import base64
import binascii
import copy
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from arges.apiserver import apply as ssa
from arges.apiserver import codec
from arges.apiserver import managedfields as mf
from arges.apiserver.admission import ADMIN, Admission, Attributes, UserInfo, meta_options
from arges.apiserver.conversion import Converter
from arges.apiserver.decoding import decode_error, normalize_meta
from arges.apiserver.errors import (
    AlreadyExists,
    BadRequest,
    Cause,
    Conflict,
    Forbidden,
    Gone,
    Invalid,
    MethodNotAllowed,
    NotFound,
    StatusError,
    Timeout,
)
from arges.apiserver.objects import at_version, generate_name, metadata, now_rfc3339
from arges.apiserver.patch import APPLY_PATCH, apply_patch
from arges.apiserver.resources import Registry, ResourceType, Version
from arges.apiserver.selectors import FieldSelector
from arges.apiserver.store import (
    AlreadyStored,
    Entry,
    Expired,
    NotStored,
    Put,
    Remove,
    Stale,
    Store,
    make_entry,
    sort_entries,
)
from arges.apiserver.tables import evaluate
from arges.apiserver.validation import forbidden, invalid, object_meta_causes
from arges.apiserver.webhookclient import WebhookClient
from arges.selectors import LabelSelector

NAMESPACES = "namespaces"
FOREGROUND_FINALIZER = "foregroundDeletion"
ORPHAN_FINALIZER = "orphan"
NAMESPACE_FINALIZER = "kubernetes"
SYSTEM_FIELDS = (
    "uid",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
)
_RETRIES = 32


@dataclass
class WriteOptions:
    """Query parameters common to writes; ``warnings`` collects ``Warning`` headers.

    ``field_manager`` is the ``fieldManager`` parameter, ``user_agent`` the request's header
    (the manager when there is no parameter), ``force`` the apply parameter (None: absent);
    ``created`` is set when a PATCH (an apply) created the object. ``user`` is who webhooks
    are told makes the write; ``admission`` false skips the webhooks (the server's own
    bootstrap writes, which must not wait for webhooks that are not up yet).
    """

    dry_run: bool = False
    field_validation: str = "Warn"
    warnings: list[str] = field(default_factory=list)
    field_manager: str = ""
    user_agent: str = ""
    force: bool | None = None
    created: bool = False
    user: UserInfo = ADMIN
    admission: bool = True

    def review_options(self, kind: str) -> dict[str, Any]:
        """The ``CreateOptions`` or ``UpdateOptions`` admission webhooks are shown."""
        return meta_options(
            kind,
            dryRun=["All"] if self.dry_run else None,
            fieldManager=self.field_manager,
            fieldValidation=self.field_validation if self.field_validation != "Warn" else None,
        )

    @property
    def manager(self) -> str:
        """Who the write's fields belong to (kube-apiserver's ``managerOrUserAgent``)."""
        return self.field_manager or mf.manager_from_user_agent(self.user_agent)


@dataclass
class DeleteOptions:
    """``meta/v1 DeleteOptions`` as far as this server honours them; admission webhooks'
    warnings are appended to ``warnings``."""

    propagation: str | None = None
    uid: str | None = None
    resource_version: str | None = None
    dry_run: bool = False
    user: UserInfo = ADMIN
    admission: bool = True
    """False for deletions kube-apiserver makes without admission (a deleted CRD's objects,
    expired Events)."""
    warnings: list[str] = field(default_factory=list)

    def review_options(self) -> dict[str, Any]:
        """The ``DeleteOptions`` admission webhooks are shown."""
        preconditions = {
            k: v for k, v in (("uid", self.uid), ("resourceVersion", self.resource_version)) if v
        }
        return meta_options(
            "DeleteOptions",
            preconditions=preconditions,
            propagationPolicy=self.propagation,
            dryRun=["All"] if self.dry_run else None,
        )


@dataclass
class ListOptions:
    """``meta/v1 ListOptions`` for list and watch."""

    labels: LabelSelector = field(default_factory=LabelSelector)
    fields: FieldSelector = field(default_factory=FieldSelector)
    limit: int = 0
    continue_token: str = ""
    resource_version: str = ""
    resource_version_match: str = ""


@dataclass
class ListResult:
    """One page of a list: entries in key order, at revision ``rv``."""

    entries: list[Entry]
    rv: int
    continue_token: str = ""
    remaining: int | None = None


class Rest:
    """The REST operations of every resource (see the module docstring)."""

    def __init__(self, store: Store, registry: Registry) -> None:
        self.store = store
        self.registry = registry
        self.client = WebhookClient()
        self.converter = Converter(self.client)
        self.admission = Admission(store, self.converter, self.client)

    async def close(self) -> None:
        """Close the connections kept to webhooks."""
        await self.client.close()

    # Reading.

    def get(self, rt: ResourceType, namespace: str, name: str) -> Entry:
        """The stored object.

        Raises:
            NotFound: when there is none.
        """
        entry = self.store.get(rt.resource, namespace, name)
        if entry is None:
            raise NotFound.resource(rt.plural, rt.group, name)
        return entry

    async def read(self, rt: ResourceType, version: Version, namespace: str, name: str) -> Entry:
        """The stored object as an entry at ``version`` (see :meth:`entries_at`).

        Raises:
            NotFound: when there is none.
            ConversionFailed: the CRD's conversion webhook failed.
        """
        return (await self.entries_at(rt, version, [self.get(rt, namespace, name)]))[0]

    async def entries_at(
        self, rt: ResourceType, version: Version, entries: list[Entry], *, batch: bool = False
    ) -> list[Entry]:
        """``entries`` with those a conversion webhook must convert to ``version`` converted,
        in one call (``batch``: for a list or a watch, as kube-apiserver words its errors).

        Other entries are returned as they are: :meth:`render` relabels them.

        Raises:
            ConversionFailed: the CRD's conversion webhook failed.
        """
        if rt.conversion is None:
            return entries
        target = rt.api_version(version.name)
        todo = [e for e in entries if e.api_version != target]
        if not todo:
            return entries
        objects = await self.converter.convert(
            rt, [e.object() for e in todo], version.name, batch=batch
        )
        converted = {
            id(e): make_entry(e.resource, e.rv, codec.dumps(o), o)
            for e, o in zip(todo, objects, strict=True)
        }
        return [converted.get(id(e), e) for e in entries]

    async def object_at(self, rt: ResourceType, version: Version, entry: Entry) -> dict[str, Any]:
        """The entry's object, parsed, at ``version`` (converted when need be)."""
        return self.view((await self.entries_at(rt, version, [entry]))[0], rt, version)

    def render(self, entry: Entry, rt: ResourceType, version: Version) -> bytes:
        """The object's JSON at ``version`` (stored bytes as they are when no change is due).

        Entries of a resource with a conversion webhook must have been through
        :meth:`entries_at` first: here only ``apiVersion`` is relabelled.
        """
        if entry.api_version == rt.api_version(version.name):
            return entry.raw
        return codec.dumps(at_version(entry.object(), rt, version.name))

    def view(self, entry: Entry, rt: ResourceType, version: Version) -> dict[str, Any]:
        """The object parsed, at ``version``."""
        return at_version(entry.object(), rt, version.name)

    def fields_of(self, rt: ResourceType, version: Version, obj: dict[str, Any]) -> dict[str, str]:
        """Field-selector values of ``obj``."""
        meta = obj.get("metadata") or {}
        out = {
            "metadata.name": meta.get("name", ""),
            "metadata.namespace": meta.get("namespace", ""),
        }
        out.update(rt.strategy.fields(obj))
        for path in version.selectable_fields:
            value = evaluate(path, obj)
            out[path.lstrip(".")] = "" if value is None else _field_string(value)
        return out

    def matcher(
        self, rt: ResourceType, version: Version, opts: ListOptions
    ) -> Callable[[Entry], bool]:
        """A predicate for entries matching the label and field selectors of ``opts``."""
        labels = opts.labels
        fields = opts.fields
        meta_only = all(r.field.startswith("metadata.") for r in fields.requirements)

        def match(entry: Entry) -> bool:
            if not labels.matches(entry.labels):
                return False
            if not fields.requirements:
                return True
            if meta_only:
                values = {"metadata.name": entry.name, "metadata.namespace": entry.namespace}
            else:
                values = self.fields_of(rt, version, entry.object())
            return fields.matches(values)

        return match

    async def list_objects(
        self, rt: ResourceType, version: Version, namespace: str | None, opts: ListOptions
    ) -> ListResult:
        """A page of objects, as of the current revision or the one asked for.

        The entries are at ``version`` (:meth:`entries_at`; one conversion call for the page,
        or for every candidate when selectors must see the converted objects).

        Raises:
            BadRequest: malformed resourceVersion or continue token.
            Gone: the continue token's or the exact revision's history is compacted.
            Timeout: a resourceVersion newer than the store's.
            ConversionFailed: the CRD's conversion webhook failed.
        """
        start: tuple[str, str] | None = None
        exact: int | None = None
        if opts.continue_token:
            exact, start = _decode_continue(opts.continue_token)
        elif opts.resource_version_match == "Exact":
            exact = parse_rv(opts.resource_version)
        elif opts.resource_version_match not in ("", "NotOlderThan"):
            raise BadRequest(
                f'resourceVersionMatch: Unsupported value: "{opts.resource_version_match}": '
                'supported values: "Exact", "NotOlderThan"'
            )
        elif opts.resource_version not in ("", "0"):
            wanted = parse_rv(opts.resource_version)
            if wanted > self.store.rv:
                raise too_large(wanted, self.store.rv)
        if exact is not None:
            if exact > self.store.rv:
                raise too_large(exact, self.store.rv)
            try:
                snapshot, rv = await self.store.snapshot(rt.resource, exact)
            except Expired as exc:
                if opts.continue_token:
                    raise Gone(
                        "The provided continue parameter is too old to display a consistent "
                        "list result. You can start a new list without the continue parameter."
                    ) from exc
                raise Gone(f"too old resource version: {exc.requested} ({exc.oldest})") from exc
            candidates = list(snapshot.values())
        else:
            rv = self.store.rv
            candidates = self.store.items(rt.resource)
        if namespace is not None:
            candidates = [e for e in candidates if e.namespace == namespace]
        if opts.labels.requirements or opts.fields.requirements:
            # Selectors see the objects at the version asked for (labels and selectable
            # fields may differ between versions).
            candidates = await self.entries_at(rt, version, candidates, batch=True)
        match = self.matcher(rt, version, opts)
        entries = sort_entries(e for e in candidates if match(e))
        if start is not None:
            entries = [e for e in entries if (e.namespace, e.name) > start]
        limit = opts.limit if opts.resource_version != "0" or opts.continue_token else 0
        if limit and len(entries) > limit:
            page = await self.entries_at(rt, version, entries[:limit], batch=True)
            last = page[-1]
            token = _encode_continue(rv, (last.namespace, last.name))
            return ListResult(page, rv, token, len(entries) - limit)
        return ListResult(await self.entries_at(rt, version, entries, batch=True), rv)

    # Writing.

    def _check_namespace(self, rt: ResourceType, namespace: str, name: str) -> None:
        if not rt.namespaced:
            return
        ns = self.store.get(NAMESPACES, "", namespace)
        if ns is None:
            raise NotFound.resource("namespaces", "", namespace)
        if ns.deleting:
            # kube-apiserver's NamespaceLifecycle admission, cause included.
            details: dict[str, Any] = {"name": name, "kind": rt.plural}
            if rt.group:
                details["group"] = rt.group
            details["causes"] = [
                {
                    "reason": "NamespaceTerminating",
                    "message": f"namespace {namespace} is being terminated",
                    "field": "metadata.namespace",
                }
            ]
            raise Forbidden(
                f'{_qualified(rt)} "{name}" is forbidden: unable to create new content in '
                f"namespace {namespace} because it is being terminated",
                details=details,
            )

    def _decode(self, rt: ResourceType, version: Version, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise BadRequest(f"the body must be a {rt.kind} object")
        want = rt.api_version(version.name)
        got_version = body.get("apiVersion")
        got_kind = body.get("kind")
        if got_kind and got_kind != rt.kind:
            raise BadRequest(
                f"the kind in the data ({got_kind}) does not match the expected kind ({rt.kind})"
            )
        if got_version and got_version != want:
            raise BadRequest(
                f"the API version in the data ({got_version}) does not match the "
                f"expected API version ({want})"
            )
        # Its depth was measured when it was decoded (codec.decode_body; the protobuf kinds
        # are shallow): a second walk of a 3 MiB body cost the event loop 15 ms.
        self._check_decodes(rt, version, body, measure_depth=False)
        body["apiVersion"] = want
        body["kind"] = rt.kind
        metadata(body)
        return body

    def _check_decodes(
        self, rt: ResourceType, version: Version, obj: dict[str, Any], *, measure_depth: bool = True
    ) -> None:
        """Refuse what kube-apiserver's typed decoding refuses (:mod:`~arges.apiserver.
        decoding`), and drop metadata's nulls, which decode to absent fields. ``measure_depth``
        false skips the depth bound, for a body the decoder measured already."""
        schema = version.schema.raw if rt.crd is None and version.schema is not None else None
        error = decode_error(obj, rt.kind, schema)
        if error is None and measure_depth and codec.depth(obj) > codec.MAX_DEPTH:
            error = f"json: exceeded max depth of {codec.MAX_DEPTH}"
        if error is not None:
            raise BadRequest(
                f'{rt.kind} in version "{version.name}" cannot be handled as a {rt.kind}: {error}'
            )
        meta = obj.get("metadata")
        if isinstance(meta, dict):
            normalize_meta(meta)

    def _admit_fields(
        self, rt: ResourceType, version: Version, obj: dict[str, Any], opts: WriteOptions
    ) -> None:
        if version.schema is None:
            return
        dropped = version.schema.prune(obj)
        if dropped and opts.field_validation == "Strict":
            raise BadRequest(
                f'{rt.kind} in version "{version.name}" cannot be handled as a {rt.kind}: '
                "strict decoding error: " + ", ".join(f'unknown field "{d}"' for d in dropped)
            )
        if opts.field_validation != "Ignore":
            opts.warnings += [f'unknown field "{d}"' for d in dropped]
        version.schema.default(obj)
        if version.deprecated:
            opts.warnings.append(
                version.deprecation_warning
                or f"{rt.api_version(version.name)} {rt.kind} is deprecated"
            )

    def _validate(
        self,
        rt: ResourceType,
        version: Version,
        obj: dict[str, Any],
        old: dict[str, Any] | None = None,
    ) -> None:
        meta = obj["metadata"]
        causes = object_meta_causes(
            meta, namespaced=rt.namespaced, name_is_label=rt.strategy.name_is_label
        )
        if version.schema is not None:
            causes += version.schema.validate(obj)
        causes += rt.strategy.validate(rt, obj)
        if old is not None:
            causes += rt.strategy.validate_update(rt, obj, old)
        if version.rules is not None:
            causes += version.rules.validate(obj, old, causes)
        if causes:
            raise Invalid(rt.kind, rt.group, meta.get("name", ""), causes)

    def _admits(self, opts: WriteOptions, *, mutating: bool) -> bool:
        return opts.admission and bool(self.admission.hooks(mutating=mutating))

    def _attributes(
        self,
        rt: ResourceType,
        version: Version,
        operation: str,
        namespace: str,
        obj: dict[str, Any] | None,
        old: dict[str, Any] | None,
        opts: WriteOptions,
        subresource: str | None,
    ) -> Attributes:
        kind = "CreateOptions" if operation == "CREATE" else "UpdateOptions"
        meta = (obj or old or {}).get("metadata") or {}
        return Attributes(
            rt=rt,
            version=version.name,
            operation=operation,
            namespace=namespace if rt.namespaced else "",
            name=str(meta.get("name") or ""),
            subresource=subresource or "",
            obj=obj,
            old=old,
            dry_run=opts.dry_run,
            options=opts.review_options(kind),
            user=opts.user,
            warnings=opts.warnings,
        )

    async def _to_version(self, rt: ResourceType, obj: dict[str, Any], name: str) -> dict[str, Any]:
        """``obj`` at version ``name``: relabelled, or converted by the CRD's webhook."""
        if rt.conversion is None or obj.get("apiVersion") == rt.api_version(name):
            return at_version(obj, rt, name)
        return (await self.converter.convert(rt, [obj], name, batch=False))[0]

    async def create(
        self,
        rt: ResourceType,
        version: Version,
        namespace: str,
        body: Any,
        opts: WriteOptions,
        *,
        track: bool = True,
    ) -> dict[str, Any]:
        """Create an object (POST to the collection); returns it as stored.

        ``track`` false keeps the managedFields the caller computed (a create by apply).

        Raises:
            BadRequest, NotFound (namespace), Forbidden (terminating namespace),
            MethodNotAllowed (terminating CRD), Invalid, AlreadyExists; Denied, InternalError,
            Forbidden (admission webhooks); ConversionFailed.
        """
        if track:
            ssa.check_options("CreateOptions", opts.field_manager)
        obj = self._decode(rt, version, body)
        meta = obj["metadata"]
        if rt.namespaced:
            if meta.get("namespace") and meta["namespace"] != namespace:
                raise BadRequest(
                    "the namespace of the provided object does not match the namespace sent on "
                    "the request"
                )
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        if meta.get("resourceVersion"):
            raise BadRequest("resourceVersion should not be set on objects to be created")
        if rt.terminating:
            raise MethodNotAllowed(
                f"create not allowed while custom resource definition {rt.crd} is terminating"
            )
        self._admit_fields(rt, version, obj, opts)
        meta = obj["metadata"]
        if track:
            _set_managed(meta, mf.record(rt, version, None, obj, opts.manager))
        if self._admits(opts, mutating=True):
            attrs = self._attributes(rt, version, "CREATE", namespace, obj, None, opts, None)
            mutated = await self.admission.mutate(attrs)
            obj = mutated if mutated is not None else obj
            meta = metadata(obj)
        for key in ("deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"):
            meta.pop(key, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_rfc3339()
        if rt.strategy.generation:
            meta["generation"] = 1
        else:
            meta.pop("generation", None)
        generated = not meta.get("name") and bool(meta.get("generateName"))
        if generated:
            meta["name"] = generate_name(meta["generateName"])
        self._check_namespace(rt, namespace, meta.get("name") or meta.get("generateName", ""))
        rt.strategy.prepare_for_create(rt, obj)
        self._validate(rt, version, obj)
        if self._admits(opts, mutating=False):
            attrs = self._attributes(rt, version, "CREATE", namespace, obj, None, opts, None)
            await self.admission.validate(attrs)
        # Without a conversion webhook (the common case) versions are relabelled in place,
        # without awaiting: creates are the server's hottest write path.
        relabel = rt.conversion is None
        storage = rt.storage_version().name
        stored = (
            at_version(obj, rt, storage) if relabel else await self._to_version(rt, obj, storage)
        )
        if opts.dry_run:
            return await self._to_version(rt, stored, version.name)
        for _ in range(8):
            try:
                change = (await self.store.commit([Put(rt.resource, stored)]))[0]
            except AlreadyStored as exc:
                if not generated:
                    raise AlreadyExists.resource(rt.plural, rt.group, exc.name) from exc
                stored["metadata"]["name"] = generate_name(meta["generateName"])
                continue
            if relabel:
                return at_version(change.entry.object(), rt, version.name)
            return await self.object_at(rt, version, change.entry)
        raise AlreadyExists.resource(rt.plural, rt.group, stored["metadata"]["name"])

    async def update(
        self,
        rt: ResourceType,
        version: Version,
        namespace: str,
        name: str,
        body: Any,
        opts: WriteOptions,
        *,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        """Replace an object (PUT), or its status with ``subresource="status"``.

        Raises:
            BadRequest, NotFound, Conflict (stale resourceVersion), Invalid.
        """
        ssa.check_options("UpdateOptions", opts.field_manager)
        obj = self._decode(rt, version, body)
        meta = obj["metadata"]
        if meta.get("name") and meta["name"] != name:
            raise BadRequest(
                f"the name of the object ({meta['name']}) does not match the name on the URL "
                f"({name})"
            )
        if rt.namespaced and meta.get("namespace") and meta["namespace"] != namespace:
            raise BadRequest(
                "the namespace of the provided object does not match the namespace sent on the "
                "request"
            )
        if not meta.get("resourceVersion") and not rt.strategy.unconditional_update:
            # The object is looked up first: a PUT to a missing custom resource is 404.
            self.get(rt, namespace, name)
            raise Invalid(
                rt.kind,
                rt.group,
                name,
                [invalid("metadata.resourceVersion", "0x0", "must be specified for an update")],
            )

        def produce(old: dict[str, Any]) -> dict[str, Any]:
            new = copy.deepcopy(obj)
            new_meta = new["metadata"]
            new_meta["name"] = name
            if rt.namespaced:
                new_meta["namespace"] = namespace
            return new

        return await self._guaranteed_update(
            rt, version, namespace, name, produce, opts, subresource
        )

    async def patch(
        self,
        rt: ResourceType,
        version: Version,
        namespace: str,
        name: str,
        content_type: str,
        patch: Any,
        opts: WriteOptions,
        *,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        """Patch an object (or its status) with a JSON, merge or strategic merge patch, or
        apply a configuration (server-side apply: creates the object when it is missing).

        Raises:
            UnsupportedMediaType, BadRequest, NotFound, Conflict (stale resourceVersion or
            apply conflicts), Invalid.
        """
        is_apply = content_type == APPLY_PATCH
        ssa.check_options("PatchOptions", opts.field_manager, apply=is_apply, force=opts.force)
        if is_apply:
            return await self._apply(rt, version, namespace, name, patch, opts, subresource)

        def produce(old: dict[str, Any]) -> dict[str, Any]:
            return apply_patch(
                content_type,
                old,
                patch,
                strategic=rt.strategy.strategic,
                kind=rt.kind,
                group=rt.group,
                name=name,
            )

        return await self._guaranteed_update(
            rt, version, namespace, name, produce, opts, subresource
        )

    async def _apply(
        self,
        rt: ResourceType,
        version: Version,
        namespace: str,
        name: str,
        body: Any,
        opts: WriteOptions,
        subresource: str | None,
    ) -> dict[str, Any]:
        config = ssa.decode_config(body)
        force = bool(opts.force)

        def produce(old: dict[str, Any]) -> dict[str, Any]:
            target = mf.target_of(rt, version, subresource, old, config)
            return ssa.apply(target, old, config, opts.manager, force=force, time=mf.now())

        for _ in range(_RETRIES):
            if self.store.get(rt.resource, namespace, name) is not None or subresource:
                return await self._guaranteed_update(
                    rt, version, namespace, name, produce, opts, subresource, track=False
                )
            obj = produce(mf.empty_object(rt, version))
            given = obj["metadata"].get("name")
            if given and given != name:
                raise BadRequest(
                    f"the name of the object ({given}) does not match the name on the URL ({name})"
                )
            try:
                out = await self.create(rt, version, namespace, obj, opts, track=False)
            except AlreadyExists:
                continue
            opts.created = True
            return out
        raise Conflict.modified(rt.plural, rt.group, name, "too many concurrent updates")

    async def _guaranteed_update(
        self,
        rt: ResourceType,
        version: Version,
        namespace: str,
        name: str,
        produce: Callable[[dict[str, Any]], dict[str, Any]],
        opts: WriteOptions,
        subresource: str | None,
        *,
        track: bool = True,
    ) -> dict[str, Any]:
        storage = rt.storage_version().name
        for _ in range(_RETRIES):
            entry = self.get(rt, namespace, name)
            old = await self.object_at(rt, version, entry)
            attempt_opts = WriteOptions(
                opts.dry_run,
                opts.field_validation,
                field_manager=opts.field_manager,
                user_agent=opts.user_agent,
                user=opts.user,
                admission=opts.admission,
            )
            new = produce(copy.deepcopy(old))
            if not isinstance(new, dict):
                raise BadRequest(f"the result must be a {rt.kind} object")
            self._check_decodes(rt, version, new)
            meta = metadata(new)
            given = meta.get("resourceVersion")
            if given and given != str(entry.rv):
                raise Conflict.modified(rt.plural, rt.group, name)
            meta["resourceVersion"] = str(entry.rv)
            final = await self._admit_update(
                rt, version, namespace, new, old, attempt_opts, subresource, track
            )
            opts.warnings[:] = attempt_opts.warnings
            stored = await self._to_version(rt, final, storage)
            current = entry.object()
            if rt.conversion is None:
                # An object stored at an earlier storage version is the same object.
                at_version(current, rt, storage)
            if stored == current:
                return old
            if opts.dry_run:
                return await self._to_version(rt, stored, version.name)
            final_meta = stored["metadata"]
            if final_meta.get("deletionTimestamp") and not final_meta.get("finalizers"):
                op: Put | Remove = Remove(rt.resource, namespace, name, entry.rv, stored)
            else:
                op = Put(rt.resource, stored, expect_rv=entry.rv)
            try:
                change = (await self.store.commit([op]))[0]
            except Stale:
                continue
            except NotStored as exc:
                raise NotFound.resource(rt.plural, rt.group, name) from exc
            return await self.object_at(rt, version, change.entry)
        raise Conflict.modified(rt.plural, rt.group, name, "too many concurrent updates")

    async def _admit_update(
        self,
        rt: ResourceType,
        version: Version,
        namespace: str,
        new: dict[str, Any],
        old: dict[str, Any],
        opts: WriteOptions,
        subresource: str | None,
        track: bool,
    ) -> dict[str, Any]:
        """The object an update stores, at ``version``: fields admitted, managed fields
        recorded, mutating webhooks called, the strategy's rules applied, validated, and
        passed by the validating webhooks."""
        name = old["metadata"]["name"]
        if new.get("kind") != rt.kind or new.get("apiVersion") != rt.api_version(version.name):
            raise BadRequest(
                f"the result must keep apiVersion {rt.api_version(version.name)} and kind {rt.kind}"
            )
        meta = new["metadata"]
        old_meta = old["metadata"]
        causes: list[Cause] = []
        for key in ("name", "namespace", "uid"):
            if meta.get(key) and meta.get(key) != old_meta.get(key):
                causes.append(invalid(f"metadata.{key}", meta[key], "field is immutable"))
        if causes:
            raise Invalid(rt.kind, rt.group, name, causes)
        self._admit_fields(rt, version, new, opts)
        if track:
            _set_managed(
                new["metadata"], mf.record(rt, version, old, new, opts.manager, subresource)
            )
        if self._admits(opts, mutating=True):
            attrs = self._attributes(rt, version, "UPDATE", namespace, new, old, opts, subresource)
            mutated = await self.admission.mutate(attrs)
            new = mutated if mutated is not None else new
        meta = metadata(new)
        managed = meta.get("managedFields")
        if subresource == "status":
            status = new.get("status")
            new = copy.deepcopy(old)
            if status is None:
                new.pop("status", None)
            else:
                new["status"] = status
            meta = new["metadata"]
        else:
            for key in ("namespace", "name"):
                if key in old_meta:
                    meta[key] = old_meta[key]
            for key in SYSTEM_FIELDS:
                if key in old_meta:
                    meta[key] = old_meta[key]
                else:
                    meta.pop(key, None)
            rt.strategy.prepare_for_update(rt, new, old)
        _set_managed(meta, managed)
        if old_meta.get("deletionTimestamp"):
            added = set(meta.get("finalizers") or []) - set(old_meta.get("finalizers") or [])
            if added:
                raise Invalid(
                    rt.kind,
                    rt.group,
                    name,
                    [
                        forbidden(
                            "metadata.finalizers",
                            "no new finalizers can be added if the object is being deleted, "
                            f"found new finalizers {sorted(added)}",
                        )
                    ],
                )
        if rt.strategy.generation and _spec_changed(new, old, version.status):
            meta["generation"] = int(old_meta.get("generation") or 0) + 1
        self._validate(rt, version, new, old)
        if self._admits(opts, mutating=False):
            attrs = self._attributes(rt, version, "UPDATE", namespace, new, old, opts, subresource)
            await self.admission.validate(attrs)
        return new

    # Deleting.

    async def delete(
        self,
        rt: ResourceType,
        version: Version,
        namespace: str,
        name: str,
        opts: DeleteOptions,
    ) -> tuple[dict[str, Any], bool]:
        """Delete an object, or mark it deleting while finalizers remain.

        Returns the object (its final state, or with ``deletionTimestamp`` set) and whether it
        is gone now.

        Raises:
            NotFound, Conflict (failed precondition), BadRequest (bad propagation policy);
            Denied, InternalError, Forbidden (admission webhooks); ConversionFailed.
        """
        if opts.propagation not in (None, "Orphan", "Background", "Foreground"):
            raise BadRequest(
                f'propagationPolicy: Unsupported value: "{opts.propagation}": supported values: '
                '"Foreground", "Background", "Orphan"'
            )
        for _ in range(_RETRIES):
            entry = self.get(rt, namespace, name)
            # The deletion only touches metadata: it is made on the stored object, which is
            # converted to the version asked for when shown (to webhooks, in the answer).
            obj = entry.object()
            meta = obj["metadata"]
            if opts.uid and opts.uid != meta.get("uid"):
                raise Conflict.modified(
                    rt.plural,
                    rt.group,
                    name,
                    f"Precondition failed: UID in precondition: {opts.uid}, UID in object meta: "
                    f"{meta.get('uid')}",
                )
            if opts.resource_version and opts.resource_version != meta.get("resourceVersion"):
                raise Conflict.modified(
                    rt.plural,
                    rt.group,
                    name,
                    "Precondition failed: ResourceVersion in precondition: "
                    f"{opts.resource_version}, ResourceVersion in object meta: "
                    f"{meta.get('resourceVersion')}",
                )
            await self._admit_delete(rt, version, namespace, name, entry, opts)
            if not meta.get("deletionTimestamp"):
                rt.strategy.begin_deletion(rt, obj)
            finalizers = list(meta.get("finalizers") or [])
            if opts.propagation == "Foreground":
                finalizers = [f for f in finalizers if f != ORPHAN_FINALIZER]
                if FOREGROUND_FINALIZER not in finalizers:
                    finalizers.append(FOREGROUND_FINALIZER)
            elif opts.propagation == "Orphan":
                finalizers = [f for f in finalizers if f != FOREGROUND_FINALIZER]
                if ORPHAN_FINALIZER not in finalizers:
                    finalizers.append(ORPHAN_FINALIZER)
            namespace_pending = (
                rt.plural == NAMESPACES
                and not rt.group
                and bool((obj.get("spec") or {}).get("finalizers"))
            )
            if not finalizers and not namespace_pending:
                if opts.dry_run:
                    return await self.object_at(rt, version, entry), True
                try:
                    change = (
                        await self.store.commit([Remove(rt.resource, namespace, name, entry.rv)])
                    )[0]
                except Stale:
                    continue
                except NotStored as exc:
                    raise NotFound.resource(rt.plural, rt.group, name) from exc
                return await self.object_at(rt, version, change.entry), True
            if meta.get("deletionTimestamp") and finalizers == list(meta.get("finalizers") or []):
                return await self.object_at(rt, version, entry), False
            if not meta.get("deletionTimestamp"):
                meta["deletionTimestamp"] = now_rfc3339()
                meta["deletionGracePeriodSeconds"] = 0
                if meta.get("generation"):
                    meta["generation"] = int(meta["generation"]) + 1
            if finalizers:
                meta["finalizers"] = finalizers
            if namespace_pending:
                obj.setdefault("status", {})["phase"] = "Terminating"
            if opts.dry_run:
                return await self._to_version(rt, obj, version.name), False
            stored = await self._to_version(rt, obj, rt.storage_version().name)
            try:
                change = (await self.store.commit([Put(rt.resource, stored, expect_rv=entry.rv)]))[
                    0
                ]
            except Stale:
                continue
            except NotStored as exc:
                raise NotFound.resource(rt.plural, rt.group, name) from exc
            return await self.object_at(rt, version, change.entry), False
        raise Conflict.modified(rt.plural, rt.group, name, "too many concurrent updates")

    async def _admit_delete(
        self,
        rt: ResourceType,
        version: Version,
        namespace: str,
        name: str,
        entry: Entry,
        opts: DeleteOptions,
    ) -> None:
        """Call the mutating, then the validating webhooks for a DELETE: no object, the old
        one as stored, at the version asked for (``AdmissionToValidateObjectDeleteFunc``)."""
        mutating = opts.admission and bool(self.admission.hooks(mutating=True))
        validating = opts.admission and bool(self.admission.hooks(mutating=False))
        if not (mutating or validating):
            return
        attrs = Attributes(
            rt=rt,
            version=version.name,
            operation="DELETE",
            namespace=namespace if rt.namespaced else "",
            name=name,
            subresource="",
            obj=None,
            old=await self.object_at(rt, version, entry),
            dry_run=opts.dry_run,
            options=opts.review_options(),
            user=opts.user,
            warnings=opts.warnings,
        )
        if mutating:
            await self.admission.mutate(attrs)
        if validating:
            await self.admission.validate(attrs)

    async def delete_collection(
        self,
        rt: ResourceType,
        version: Version,
        namespace: str | None,
        list_opts: ListOptions,
        opts: DeleteOptions,
    ) -> list[dict[str, Any]]:
        """Delete every object matching the selectors; returns them as ``delete`` did."""
        page = await self.list_objects(
            rt, version, namespace, ListOptions(list_opts.labels, list_opts.fields)
        )
        out = []
        for entry in page.entries:
            try:
                obj, _ = await self.delete(rt, version, entry.namespace, entry.name, opts)
            except NotFound:
                continue
            out.append(obj)
        return out

    async def finalize_namespace(self, name: str) -> None:
        """Drop the ``kubernetes`` finalizer of a namespace whose content is gone.

        The namespace is removed once no finalizer (spec or metadata) is left.
        """
        rt = self.registry.get("", NAMESPACES)
        assert rt is not None
        version = rt.storage_version()
        for _ in range(_RETRIES):
            entry = self.store.get(NAMESPACES, "", name)
            if entry is None or not entry.deleting:
                return
            obj = entry.object()
            spec = obj.setdefault("spec", {})
            spec["finalizers"] = [
                f for f in spec.get("finalizers") or [] if f != NAMESPACE_FINALIZER
            ]
            op: Put | Remove
            if not spec["finalizers"] and not obj["metadata"].get("finalizers"):
                op = Remove(NAMESPACES, "", name, entry.rv, obj)
            else:
                op = Put(NAMESPACES, at_version(obj, rt, version.name), expect_rv=entry.rv)
            try:
                await self.store.commit([op])
            except (Stale, NotStored):
                continue
            return


def _set_managed(meta: dict[str, Any], managed: list[dict[str, Any]] | None) -> None:
    if managed:
        meta["managedFields"] = managed
    else:
        meta.pop("managedFields", None)


def _qualified(rt: ResourceType) -> str:
    return f"{rt.plural}.{rt.group}" if rt.group else rt.plural


def _spec_changed(new: dict[str, Any], old: dict[str, Any], status_subresource: bool) -> bool:
    skip = {"metadata", "apiVersion", "kind"} | ({"status"} if status_subresource else set())
    return {k: v for k, v in new.items() if k not in skip} != {
        k: v for k, v in old.items() if k not in skip
    }


def _field_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def parse_rv(text: str) -> int:
    """A ``resourceVersion`` query parameter as an integer.

    Raises:
        BadRequest: when it is not a non-negative integer.
    """
    try:
        value = int(text)
    except ValueError:
        raise BadRequest(f'resourceVersion: Invalid value: "{text}": must be an integer') from None
    if value < 0:
        raise BadRequest(f'resourceVersion: Invalid value: "{text}": must be non-negative')
    return value


def too_large(wanted: int, current: int) -> StatusError:
    """The 504 kube-apiserver answers for a resourceVersion from the future."""
    return Timeout(
        f"Too large resource version: {wanted}, current: {current}",
        details={
            "causes": [
                {
                    "reason": "ResourceVersionTooLarge",
                    "message": "Too large resource version",
                }
            ],
            "retryAfterSeconds": 1,
        },
    )


def _encode_continue(rv: int, last: tuple[str, str]) -> str:
    raw = codec.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": list(last)})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_continue(token: str) -> tuple[int, tuple[str, str]]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = codec.loads(raw)
        if data.get("v") != "meta.k8s.io/v1":
            raise ValueError("unknown version")
        ns, name = data["start"]
        return int(data["rv"]), (str(ns), str(name))
    except (binascii.Error, ValueError, KeyError, TypeError) as exc:
        raise BadRequest(f"continue key is not valid: {exc}") from exc
