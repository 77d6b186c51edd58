"""Writing: create, update (PUT), patch and server-side apply.

Writes go through the store with optimistic concurrency: an update that names a
resourceVersion other than the stored one gets 409; one that names none is retried on races
(kube-apiserver's ``GuaranteedUpdate``); an update that changes nothing writes nothing. A
patch is a JSON, merge or strategic merge patch (:mod:`~arges.apiserver.patch`), or an
applied configuration merged by server-side apply (:mod:`~arges.apiserver.apply`), which
creates the object when it is missing. What the object goes through before it is stored is
:mod:`~arges.apiserver.rest.checks`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from arges.apiserver import apply as ssa
from arges.apiserver import codec
from arges.apiserver import managedfields as mf
from arges.apiserver.entries import Put, Remove
from arges.apiserver.errors import (
    AlreadyExists,
    BadRequest,
    Conflict,
    Invalid,
    MethodNotAllowed,
    NotFound,
)
from arges.apiserver.objects import at_version, generate_name, metadata, now_rfc3339
from arges.apiserver.patch import APPLY_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH, apply_patch
from arges.apiserver.resources import ResourceType, Version
from arges.apiserver.rest.checks import WriteChecks, set_managed
from arges.apiserver.rest.options import WriteOptions
from arges.apiserver.rest.reads import RETRIES
from arges.apiserver.store import AlreadyStored, NotStored, Stale
from arges.apiserver.validation import invalid


class Writes(WriteChecks):
    """Create, update, patch and apply (see the module docstring)."""

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
            set_managed(meta, mf.record(rt, version, None, obj, opts.manager))
        mutating = self._admits(opts, mutating=True)
        if mutating:
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
            self.processed.wrote(rt, version, change.entry, whole=not mutating)
            if relabel:
                # The object as stored (the store set its resourceVersion), not parsed back
                # from the stored bytes: the same JSON, a decode fewer per write.
                return at_version(stored, rt, version.name)
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
            new: dict[str, Any] = codec.clone(obj)
            new_meta = new["metadata"]
            new_meta["name"] = name
            if rt.namespaced:
                new_meta["namespace"] = namespace
            return new

        # The body is the object, and its depth was bounded when it was decoded.
        return await self._guaranteed_update(
            rt, version, namespace, name, produce, opts, subresource, measured=True
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

        # A merge (RFC 7386, or strategic) puts each value of the patch where the patch has it
        # and keeps the rest of the stored object where it was: the result nests no deeper
        # than the deeper of the two, both bounded already (the stored object when it was
        # written, the patch when it was decoded). A JSON Patch can copy a subtree into
        # itself, and is measured.
        merged = content_type in (MERGE_PATCH, STRATEGIC_MERGE_PATCH)
        return await self._guaranteed_update(
            rt, version, namespace, name, produce, opts, subresource, measured=merged
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

        for _ in range(RETRIES):
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
        measured: bool = False,
    ) -> dict[str, Any]:
        """Write ``produce(old)`` over the stored object, read again on a conflicting write.
        ``measured``: the result nests no deeper than the stored object or the request's
        body, whose depths were bounded already (:data:`codec.MAX_DEPTH`), so it is not
        walked to measure it again (a walk of the whole object on every write)."""
        storage_version = rt.storage_version()
        storage = storage_version.name
        for _ in range(RETRIES):
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
            new = produce(codec.clone(old))
            if not isinstance(new, dict):
                raise BadRequest(f"the result must be a {rt.kind} object")
            self._check_decodes(rt, version, new, measure_depth=not measured)
            meta = metadata(new)
            given = meta.get("resourceVersion")
            if given and given != str(entry.rv):
                raise Conflict.modified(rt.plural, rt.group, name)
            meta["resourceVersion"] = str(entry.rv)
            known = self.processed.known(rt, version, entry)
            mutating = self._admits(attempt_opts, mutating=True)
            final = await self._admit_update(
                rt, version, namespace, new, old, attempt_opts, subresource, track, known
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
            # What the update took from the stored object unchanged (its status, or all but
            # its status) went through this schema only if that object had.
            whole = (known or not storage_version.status) and not mutating
            self.processed.wrote(rt, version, change.entry, whole=whole)
            if rt.conversion is None:
                # As a create's: the object as stored, not parsed back.
                return at_version(stored, rt, version.name)
            return await self.object_at(rt, version, change.entry)
        raise Conflict.modified(rt.plural, rt.group, name, "too many concurrent updates")
