"""The three PATCH formats kube-apiserver accepts, applied to plain JSON objects.

- ``application/merge-patch+json``: RFC 7386 JSON Merge Patch.
- ``application/json-patch+json``: RFC 6902 JSON Patch, through the ``jsonpatch`` library.
- ``application/strategic-merge-patch+json``: Kubernetes' strategic merge patch
  (``k8s.io/apimachinery/pkg/util/strategicpatch``), for built-in kinds only. It is a merge
  patch plus directives (``$patch: replace|delete|merge``, ``$retainKeys``,
  ``$deleteFromPrimitiveList/<field>``, ``$setElementOrder/<field>``) and lists that merge by
  a key instead of being replaced, as declared per kind by a :data:`PatchMeta`.

Failures raise :class:`~arges.apiserver.errors.StatusError` subclasses: a malformed patch is a
400, a JSON Patch whose operations do not apply is a 422, as kube-apiserver answers.
"""

from __future__ import annotations

from typing import Any

import jsonpatch
import jsonpointer

from arges.apiserver import codec
from arges.apiserver.errors import BadRequest, Cause, Invalid, UnsupportedMediaType

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"

PRIMITIVE = ""
"""Merge key marking a list of scalars that merges as a set union."""

PatchMeta = dict[str, Any]
"""Nested field names to a merge key (str) for lists that merge, ``PRIMITIVE`` for scalar
lists that merge as sets, or a nested :data:`PatchMeta` for objects; unlisted lists replace."""

OBJECT_META_PATCH: PatchMeta = {
    "metadata": {"finalizers": PRIMITIVE, "ownerReferences": "uid"},
}
"""Strategies every built-in kind shares, from ``ObjectMeta``'s ``patchStrategy`` tags."""


def apply_patch(
    content_type: str,
    original: dict[str, Any],
    patch: Any,
    *,
    strategic: PatchMeta | None,
    kind: str,
    group: str,
    name: str,
) -> dict[str, Any]:
    """Apply ``patch`` (already decoded from JSON) to ``original`` and return a new object.

    ``strategic`` is the kind's :data:`PatchMeta`, or None where strategic merge patch is not
    supported (custom resources).

    Raises:
        UnsupportedMediaType: for unknown formats and, on custom resources, strategic merge
            (server-side apply is :mod:`arges.apiserver.apply`'s).
        BadRequest: when the patch is not of the shape its format requires.
        Invalid: when JSON Patch operations cannot be applied (e.g. a missing path).
    """
    if content_type == MERGE_PATCH:
        if not isinstance(patch, dict):
            raise BadRequest("a JSON merge patch must be a JSON object")
        result = merge_patch(original, patch)
    elif content_type == JSON_PATCH:
        result = _json_patch(original, patch, kind=kind, group=group, name=name)
    elif content_type == STRATEGIC_MERGE_PATCH and strategic is not None:
        if not isinstance(patch, dict):
            raise BadRequest("a strategic merge patch must be a JSON object")
        result = strategic_merge_patch(original, patch, strategic)
    else:
        accepted = [JSON_PATCH, MERGE_PATCH, APPLY_PATCH] + (
            [STRATEGIC_MERGE_PATCH] if strategic else []
        )
        raise UnsupportedMediaType(
            f"the body of the request was in an unknown format - accepted media types include: "
            f"{', '.join(accepted)}"
        )
    if not isinstance(result, dict):
        raise BadRequest("the patch did not produce a JSON object")
    return result


def _copy(value: Any) -> Any:
    """A value of a patch as it goes into the result: containers copied, as the result is
    changed later (defaults, managed fields) and a retried update applies the same patch
    again (a JSON round trip, several times ``copy.deepcopy``'s speed); scalars are
    immutable."""
    return codec.clone(value) if isinstance(value, (dict, list)) else value


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON Merge Patch: objects merge recursively, null deletes, all else replaces."""
    if not isinstance(patch, dict):
        return _copy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _json_patch(
    original: dict[str, Any], patch: Any, *, kind: str, group: str, name: str
) -> dict[str, Any]:
    if not isinstance(patch, list):
        raise BadRequest("a JSON patch must be a JSON array of operations")
    try:
        result = jsonpatch.JsonPatch(patch).apply(original)
    except (jsonpatch.InvalidJsonPatch, TypeError, AttributeError) as exc:
        raise BadRequest(f"invalid JSON patch: {exc}") from exc
    except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as exc:
        raise Invalid(kind, group, name, [Cause("patch", f"Invalid value: {exc}")]) from exc
    if not isinstance(result, dict):
        raise BadRequest("the JSON patch did not produce a JSON object")
    return result


def strategic_merge_patch(original: Any, patch: dict[str, Any], meta: PatchMeta) -> Any:
    """Kubernetes strategic merge patch of ``patch`` onto ``original`` under ``meta``.

    Raises:
        BadRequest: on an unknown ``$patch`` directive or a malformed list directive.
    """
    directive = patch.get("$patch")
    if directive == "delete":
        return None
    if directive == "replace":
        return {k: _copy(v) for k, v in patch.items() if k != "$patch"}
    if directive not in (None, "merge"):
        raise BadRequest(f"unknown patch directive {directive!r}")
    result = dict(original) if isinstance(original, dict) else {}
    retain = patch.get("$retainKeys")
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys") or key.startswith("$setElementOrder/"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            if not isinstance(value, list):
                raise BadRequest(f"{key} must be a list")
            if isinstance(result.get(field), list):
                result[field] = [v for v in result[field] if v not in value]
            continue
        sub_meta = meta.get(key)
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            merged = strategic_merge_patch(
                result.get(key), value, sub_meta if isinstance(sub_meta, dict) else {}
            )
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        elif isinstance(value, list) and isinstance(sub_meta, str):
            result[key] = _merge_list(result.get(key), value, sub_meta)
        else:
            result[key] = _copy(value)
    for key, value in patch.items():
        if key.startswith("$setElementOrder/"):
            field = key.split("/", 1)[1]
            if isinstance(result.get(field), list) and isinstance(value, list):
                result[field] = _order(result[field], value, meta.get(field))
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain}
    return result


def _merge_list(original: Any, patch: list[Any], merge_key: str) -> list[Any]:
    current = list(original) if isinstance(original, list) else []
    if any(isinstance(p, dict) and p.get("$patch") == "replace" for p in patch):
        return [_copy(p) for p in patch if not (isinstance(p, dict) and "$patch" in p)]
    if merge_key == PRIMITIVE:
        for item in patch:
            if item not in current:
                current.append(item)
        return current
    for item in patch:
        if not isinstance(item, dict) or merge_key not in item:
            raise BadRequest(f"list items must be objects carrying the merge key {merge_key!r}")
        idx = next(
            (
                i
                for i, c in enumerate(current)
                if isinstance(c, dict) and c.get(merge_key) == item[merge_key]
            ),
            None,
        )
        if item.get("$patch") == "delete":
            if idx is not None:
                del current[idx]
        elif idx is None:
            current.append({k: _copy(v) for k, v in item.items() if k != "$patch"})
        else:
            current[idx] = strategic_merge_patch(current[idx], item, {})
    return current


def _order(items: list[Any], order: list[Any], merge_key: Any) -> list[Any]:
    def key_of(item: Any) -> Any:
        if isinstance(merge_key, str) and merge_key and isinstance(item, dict):
            return item.get(merge_key)
        return item

    wanted = [key_of(o) for o in order]
    ranked = sorted(
        range(len(items)),
        key=lambda i: (
            wanted.index(key_of(items[i])) if key_of(items[i]) in wanted else len(wanted),
            i,
        ),
    )
    return [items[i] for i in ranked]
