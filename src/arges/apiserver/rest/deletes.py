"""Deleting: one object, a collection, and a namespace's last finalizer.

Deletion honours finalizers (``deletionTimestamp`` first, removal when they are gone),
preconditions (uid, resourceVersion), and the propagation policies (Orphan, Background,
Foreground) that the garbage collector (:mod:`~arges.apiserver.lifecycle`) then carries out
through the ``orphan`` and ``foregroundDeletion`` finalizers. The admission webhooks see a
DELETE with the old object as stored, at the version asked for.
"""

from __future__ import annotations

from typing import Any

from arges.apiserver.admission import Attributes
from arges.apiserver.entries import Entry, Put, Remove
from arges.apiserver.errors import BadRequest, Conflict, NotFound
from arges.apiserver.objects import at_version, now_rfc3339
from arges.apiserver.resources import ResourceType, Version
from arges.apiserver.rest.options import DeleteOptions, ListOptions
from arges.apiserver.rest.reads import NAMESPACES, RETRIES, Reads
from arges.apiserver.store import NotStored, Stale

FOREGROUND_FINALIZER = "foregroundDeletion"
ORPHAN_FINALIZER = "orphan"
NAMESPACE_FINALIZER = "kubernetes"


class Deletes(Reads):
    """Delete, delete a collection, finalize a namespace (see the module docstring)."""

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
        for _ in range(RETRIES):
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
        for _ in range(RETRIES):
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
