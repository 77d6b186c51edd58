"""Reading: get, list with selectors and continue tokens, and objects at a version.

:class:`Reads` holds what every REST operation shares (the store, the registry, the webhook
client, the conversion and the admission webhooks) and the reading half of kube-apiserver's
generic registry: one object, or a page of a list as of the current revision or the one
asked for, with label and field selectors. Objects are stored at their resource's storage
version and served at the version asked for: a conversion webhook converts them when the
CRD has one (a list is one call), and only ``apiVersion`` is relabelled otherwise.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Any

from arges.apiserver import codec
from arges.apiserver.admission import Admission
from arges.apiserver.conversion import Converter
from arges.apiserver.entries import Entry, make_entry, sort_entries
from arges.apiserver.errors import BadRequest, Gone, NotFound
from arges.apiserver.objects import at_version
from arges.apiserver.resources import Registry, ResourceType, Version
from arges.apiserver.rest.options import ListOptions, ListResult, parse_rv, too_large
from arges.apiserver.store import Expired, Store
from arges.apiserver.tables import evaluate
from arges.apiserver.webhookclient import WebhookClient

NAMESPACES = "namespaces"
RETRIES = 32
"""How often a write that lost a race to another is tried again before it answers 409."""


class Reads:
    """The state every REST operation shares, and the reading operations."""

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

    async def _to_version(self, rt: ResourceType, obj: dict[str, Any], name: str) -> dict[str, Any]:
        """``obj`` at version ``name``: relabelled, or converted by the CRD's webhook."""
        if rt.conversion is None or obj.get("apiVersion") == rt.api_version(name):
            return at_version(obj, rt, name)
        return (await self.converter.convert(rt, [obj], name, batch=False))[0]


def _field_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


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
