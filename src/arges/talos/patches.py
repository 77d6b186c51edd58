"""Machine-config patches: RFC 6902 JSON patches and Talos' strategic merge patches.

A patch's text is read the way talosctl's ``LoadPatch`` reads it (``reference/talos-capi.md``
§3.1): YAML mappings are a strategic merge patch; a JSON array, or a YAML list of
``{op, path, value}``, is a JSON patch. Patches apply in order (cluster, pool, ServerClass,
Server), and a failure names its source and position.

Strategic merge follows Talos' typed merge (``pkg/machinery/config/merge``, §3.3): maps merge
key by key; a scalar replaces the base value, except that an empty string or a zero does not
(booleans always do); lists are appended, except ``cluster.network.podSubnets`` and
``serviceSubnets`` and ``cluster.apiServer.auditPolicy`` (replaced), and
``machine.network.interfaces`` (merged by ``interface`` or ``deviceSelector``), their
``vlans`` (by ``vlanId``) and ``cluster.apiServer.admissionControl`` (by ``name``).
``$patch: delete`` removes a map key, a list item, or a whole document. A patch document with
``apiVersion``/``kind`` merges into the document of the same kind (and name), or is appended.

JSON patches (through the ``jsonpatch`` library) apply to single-document configs only, as in
Talos ("JSON6902 patches are not supported for multi-document machine configuration").
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jsonpatch
import jsonpointer
import yaml

from arges.talos.documents import decode, encode
from arges.talos.errors import InvalidInput, PatchError

Path = tuple[str, ...]
REPLACE: frozenset[Path] = frozenset(
    {
        ("cluster", "network", "podSubnets"),
        ("cluster", "network", "serviceSubnets"),
        ("cluster", "apiServer", "auditPolicy"),
    }
)


def _interface_key(item: dict[str, Any]) -> Any:
    if "interface" in item:
        return ("interface", item["interface"])
    if "deviceSelector" in item:
        return ("deviceSelector", json.dumps(item["deviceSelector"], sort_keys=True))
    return None


KEYED: dict[Path, Callable[[dict[str, Any]], Any]] = {
    ("machine", "network", "interfaces"): _interface_key,
    ("machine", "network", "interfaces", "*", "vlans"): lambda i: i.get("vlanId"),
    ("cluster", "apiServer", "admissionControl"): lambda i: i.get("name"),
}


@dataclass(frozen=True)
class JSONPatch:
    """An RFC 6902 patch: a list of operations."""

    operations: list[dict[str, Any]]


@dataclass(frozen=True)
class StrategicPatch:
    """A strategic merge patch: one or more YAML documents."""

    documents: list[dict[str, Any]]


Patch = JSONPatch | StrategicPatch


@dataclass(frozen=True)
class PatchSet:
    """The patches one source (``cluster``, ``ServerClass workers``...) contributes, in order."""

    source: str
    patches: tuple[Patch, ...]


def load(text: str) -> Patch:
    """Parse one patch's text (see the module docstring).

    Raises:
        InvalidInput: when it is neither kind of patch.
    """
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise InvalidInput(f"patch is not YAML or JSON: {exc}") from exc
    if len(docs) == 1 and isinstance(docs[0], list):
        ops = docs[0]
        if all(isinstance(op, dict) and "op" in op and "path" in op for op in ops):
            return JSONPatch(ops)
        raise InvalidInput("a list patch must hold JSON patch operations ({op, path, value})")
    if docs and all(isinstance(d, dict) for d in docs):
        return StrategicPatch(docs)
    raise InvalidInput("a patch is a YAML mapping (strategic merge) or a list of operations")


def patch_set(
    source: str, json_patches: Sequence[dict[str, Any]], strategic: Sequence[str]
) -> PatchSet:
    """One source's patches as Sidero applied them: its RFC 6902 operations as one JSON patch,
    then its strategic merge patches (YAML texts) in order.

    Raises:
        PatchError: a strategic patch that does not parse, naming ``source`` and its position.
    """
    patches: list[Patch] = [JSONPatch(list(json_patches))] if json_patches else []
    for text in strategic:
        try:
            patches.append(load(text))
        except InvalidInput as exc:
            raise PatchError(source, len(patches), str(exc)) from exc
    return PatchSet(source, tuple(patches))


def apply(documents: list[dict[str, Any]], sets: Sequence[PatchSet]) -> list[dict[str, Any]]:
    """Apply every patch of every set, in order, to a copy of ``documents``.

    Raises:
        PatchError: naming the source and position of the patch that failed.
    """
    docs = copy.deepcopy(documents)
    for patch_set in sets:
        for index, patch in enumerate(patch_set.patches):
            try:
                docs = _apply_one(docs, patch)
            except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as exc:
                raise PatchError(patch_set.source, index, str(exc)) from exc
            except (InvalidInput, TypeError, ValueError) as exc:
                raise PatchError(patch_set.source, index, str(exc)) from exc
    return docs


def apply_text(config: str, sets: Sequence[PatchSet]) -> str:
    """:func:`apply` on a YAML stream, returning the patched stream (``config`` itself, as
    given, when there is no patch to apply: most members have none, and decoding and
    encoding a config costs milliseconds each time it is served or compared)."""
    if not any(s.patches for s in sets):
        return config
    return encode(apply(decode(config), sets))


def _apply_one(docs: list[dict[str, Any]], patch: Patch) -> list[dict[str, Any]]:
    if isinstance(patch, JSONPatch):
        if len(docs) != 1:
            raise InvalidInput(
                "JSON patches are not supported for multi-document machine configuration"
            )
        result = jsonpatch.JsonPatch(patch.operations).apply(docs[0])
        if not isinstance(result, dict):
            raise InvalidInput("the JSON patch did not leave a mapping")
        return [result]
    for pdoc in patch.documents:
        docs = _merge_document(docs, pdoc)
    return docs


def _identity(doc: dict[str, Any]) -> tuple[Any, ...]:
    if "kind" not in doc:
        return ("v1alpha1",)
    return (doc.get("apiVersion"), doc.get("kind"), doc.get("name"))


def _merge_document(docs: list[dict[str, Any]], pdoc: dict[str, Any]) -> list[dict[str, Any]]:
    ident = _identity(pdoc)
    delete = pdoc.get("$patch") == "delete"
    for i, doc in enumerate(docs):
        if _identity(doc) == ident:
            if delete:
                if ident == ("v1alpha1",):
                    raise InvalidInput("the v1alpha1 document cannot be deleted")
                return docs[:i] + docs[i + 1 :]
            _merge(doc, pdoc, ())
            return docs
    if delete:
        return docs
    return [*docs, _strip(pdoc)]


def _is_delete(value: Any) -> bool:
    return isinstance(value, dict) and value.get("$patch") == "delete"


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k != "$patch"}
    if isinstance(value, list):
        return [_strip(v) for v in value if not _is_delete(v)]
    return copy.deepcopy(value)


def _merge(base: dict[str, Any], patch: dict[str, Any], path: Path) -> None:
    for key, value in patch.items():
        if key == "$patch":
            continue
        here = (*path, key)
        current = base.get(key)
        if _is_delete(value):
            base.pop(key, None)
        elif isinstance(value, dict):
            if here in REPLACE or not isinstance(current, dict):
                base[key] = _strip(value)
            else:
                _merge(current, value, here)
        elif isinstance(value, list):
            base[key] = _merge_list(current if isinstance(current, list) else [], value, here)
        elif value in ("", 0) and not isinstance(value, bool) and key in base:
            continue
        else:
            base[key] = copy.deepcopy(value)


def _merge_list(current: list[Any], patch: list[Any], path: Path) -> list[Any]:
    if path in REPLACE:
        return _strip(patch)  # type: ignore[no-any-return]
    keyer = KEYED.get(path)
    out = list(current)
    for item in patch:
        if keyer is not None and isinstance(item, dict):
            key = keyer(item)
            index = next(
                (i for i, c in enumerate(out) if isinstance(c, dict) and keyer(c) == key), None
            )
            if index is not None and key is not None:
                if _is_delete(item):
                    del out[index]
                else:
                    _merge(out[index], item, (*path, "*"))
                continue
        if _is_delete(item):
            target = _strip(item)
            out = [c for c in out if c != target]
            continue
        out.append(_strip(item))
    return out
