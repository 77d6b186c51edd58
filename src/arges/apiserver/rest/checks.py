"""What a write's object goes through before it is stored.

kube-apiserver's generic registry, for creates and updates: the body is decoded and checked
(apiVersion and kind match the URL; what typed decoding refuses is refused), unknown fields
are pruned (``fieldValidation``: Ignore, Warn (default) or Strict) and defaults applied, the
namespace must exist and not be terminating, managed fields are recorded
(:mod:`~arges.apiserver.managedfields`), the mutating admission webhooks
(:mod:`~arges.apiserver.admission`) are called before validation and the validating ones
after it, and validation (metadata, schema, kind rules) answers 422 with every cause.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from arges.apiserver import codec
from arges.apiserver import managedfields as mf
from arges.apiserver.admission import Attributes
from arges.apiserver.decoding import decode_error, normalize_meta
from arges.apiserver.entries import Entry
from arges.apiserver.errors import BadRequest, Cause, Forbidden, Invalid, NotFound
from arges.apiserver.objects import metadata
from arges.apiserver.resources import Registry, ResourceType, Version
from arges.apiserver.rest.options import WriteOptions
from arges.apiserver.rest.reads import NAMESPACES, Reads
from arges.apiserver.schema import Schema
from arges.apiserver.store import Store
from arges.apiserver.validation import forbidden, invalid, object_meta_causes

SYSTEM_FIELDS = (
    "uid",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
)


PROCESSED_KEPT = 16384
"""Custom resources whose last write :class:`Processed` remembers (the most recent kept)."""


class Processed:
    """Which schema pruned and defaulted each custom resource as this process last wrote it:
    an update of such an object, through the same schema, prunes and defaults only what it
    changes (:meth:`~arges.apiserver.schema.Schema.prune`), not again the values it left as
    they were (a Server's status update, its inventory).

    kube-apiserver prunes and defaults on every read from etcd as well, so what an object was
    written under never shows. Here an object is known only when its whole stored state went
    through the schema in this process: created, or updated from a known state; not one
    stored before the process started or its CRD's schema changed, nor one a mutating webhook
    changed, one read through a conversion webhook, or one written around the write path
    (the garbage collector's finalizer removals). Those are walked whole, as every write was.
    """

    def __init__(self, size: int = PROCESSED_KEPT) -> None:
        self.size = size
        self._by_key: OrderedDict[tuple[str, str, str], tuple[int, Schema]] = OrderedDict()

    def known(self, rt: ResourceType, version: Version, entry: Entry) -> bool:
        """Whether ``entry`` is as a write through ``version``'s schema left it."""
        held = self._by_key.get((rt.resource, entry.namespace, entry.name))
        return held is not None and held[0] == entry.rv and held[1] is version.schema

    def wrote(self, rt: ResourceType, version: Version, entry: Entry, *, whole: bool) -> None:
        """Record the write of ``entry`` through ``version``'s schema; ``whole``: all of it
        went through the schema (else it is forgotten)."""
        key = (rt.resource, entry.namespace, entry.name)
        schema = version.schema
        if not whole or schema is None or rt.crd is None or rt.conversion is not None:
            self._by_key.pop(key, None)
            return
        self._by_key[key] = (entry.rv, schema)
        self._by_key.move_to_end(key)
        if len(self._by_key) > self.size:
            self._by_key.popitem(last=False)


class WriteChecks(Reads):
    """The checks and admission of creates and updates (see the module docstring)."""

    def __init__(self, store: Store, registry: Registry) -> None:
        super().__init__(store, registry)
        self.processed = Processed()

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
        self,
        rt: ResourceType,
        version: Version,
        obj: dict[str, Any],
        opts: WriteOptions,
        processed: dict[str, Any] | None = None,
    ) -> None:
        """Prune and default ``obj``; ``processed``: the stored object it updates, when it
        went through this schema already (see :class:`Processed`)."""
        if version.schema is None:
            return
        dropped = version.schema.prune(obj, processed)
        if dropped and opts.field_validation == "Strict":
            raise BadRequest(
                f'{rt.kind} in version "{version.name}" cannot be handled as a {rt.kind}: '
                "strict decoding error: " + ", ".join(f'unknown field "{d}"' for d in dropped)
            )
        if opts.field_validation != "Ignore":
            opts.warnings += [f'unknown field "{d}"' for d in dropped]
        version.schema.default(obj, processed)
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
        warnings: list[str] | None = None,
    ) -> None:
        """Refuse ``obj`` (``old``: the stored object of an update) with every cause found.

        A custom resource's update is ratcheted (:mod:`~arges.apiserver.ratcheting`): what
        its schema and validation rules find wrong in unchanged parts is let through, the
        rules' findings as ``warnings``, as kube-apiserver does; built-in kinds are not.
        """
        meta = obj["metadata"]
        causes = object_meta_causes(
            meta, namespaced=rt.namespaced, name_is_label=rt.strategy.name_is_label
        )
        ratchet_from = old if rt.crd is not None else None
        if version.schema is not None:
            causes += version.schema.validate(obj, ratchet_from)
        causes += rt.strategy.validate(rt, obj)
        if old is not None:
            causes += rt.strategy.validate_update(rt, obj, old)
        if version.rules is not None:
            causes += version.rules.validate(
                obj, old, causes, ratchet=ratchet_from is not None, warnings=warnings
            )
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
        known: bool = False,
    ) -> dict[str, Any]:
        """The object an update stores, at ``version``: fields admitted, managed fields
        recorded, mutating webhooks called, the strategy's rules applied, validated, and
        passed by the validating webhooks. ``known``: ``old`` is as a write through this
        version's schema left it (:class:`Processed`)."""
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
        self._admit_fields(rt, version, new, opts, old if known else None)
        if track:
            set_managed(
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
            # The stored object with the new status, in its place: the stored status is not
            # copied only to be replaced (a Server's holds its whole inventory).
            new = codec.clone({k: None if k == "status" else v for k, v in old.items()})
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
        set_managed(meta, managed)
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
        if rt.strategy.generation and spec_changed(new, old, version.status):
            meta["generation"] = int(old_meta.get("generation") or 0) + 1
        self._validate(rt, version, new, old, opts.warnings)
        if self._admits(opts, mutating=False):
            attrs = self._attributes(rt, version, "UPDATE", namespace, new, old, opts, subresource)
            await self.admission.validate(attrs)
        return new


def set_managed(meta: dict[str, Any], managed: list[dict[str, Any]] | None) -> None:
    """Set ``metadata.managedFields`` to ``managed``, or drop it when there is none."""
    if managed:
        meta["managedFields"] = managed
    else:
        meta.pop("managedFields", None)


def _qualified(rt: ResourceType) -> str:
    return f"{rt.plural}.{rt.group}" if rt.group else rt.plural


def spec_changed(new: dict[str, Any], old: dict[str, Any], status_subresource: bool) -> bool:
    """Whether anything but metadata (and status, when it is a subresource) changed: what
    bumps ``metadata.generation``."""
    skip = {"metadata", "apiVersion", "kind"} | ({"status"} if status_subresource else set())
    return {k: v for k, v in new.items() if k not in skip} != {
        k: v for k, v in old.items() if k not in skip
    }
