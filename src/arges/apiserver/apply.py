"""Server-side apply requests: options, the applied configuration, conflicts, the upgrade
from client-side apply.

What kube-apiserver's PATCH handler does around the field manager for
``application/apply-patch+yaml`` (``k8s.io/apiserver/pkg/endpoints/handlers/patch.go``,
``rest/create.go``, ``update.go``, and ``k8s.io/apimachinery/pkg/util/managedfields``):

- write options are checked first (422 ``CreateOptions``/``UpdateOptions``/``PatchOptions``):
  ``fieldManager`` is required for apply, at most 128 printable characters, and ``force`` is
  only for apply;
- the applied configuration must name the resource's apiVersion and kind (400
  ``invalid object type``) and carry no managedFields (400), and fit the schema (400
  ``failed to create typed patch object``; kube-apiserver answers 500 there, an acknowledged
  bug, kubernetes/kubernetes#139253);
- conflicts are a 409 whose message and ``FieldManagerConflict`` causes name each manager
  and field (``Apply failed with 1 conflict: conflict with "mgr" using v1: .spec.x``);
- for the ``kubectl`` manager, objects made by client-side apply upgrade without conflicts:
  fields whose value still matches the ``last-applied-configuration`` annotation are taken
  over as if forced (lastAppliedManager), and that annotation is kept in step with what was
  applied (lastAppliedUpdater), so client-side apply keeps working afterwards.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from typing import Any

from arges.apiserver import managedfields as mf
from arges.apiserver.errors import BadRequest, Cause, Conflict, Invalid
from arges.apiserver.fieldpath import FieldSet, Path, path_string
from arges.apiserver.typed import TypedError, compare, to_field_set

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
KUBECTL = "kubectl"
_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_FALSE = ("0", "f", "F", "FALSE", "false", "False")


def parse_force(value: str | None) -> bool | None:
    """The ``force`` query parameter (Go's ``strconv.ParseBool``); None when absent.

    Raises:
        BadRequest: for anything else.
    """
    if value is None:
        return None
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise BadRequest(f'force: Invalid value: "{value}": invalid boolean value')


def check_options(kind: str, field_manager: str, *, apply: bool = False, force: Any = None) -> None:
    """Validate a write's options as ``Validate{Create,Update,Patch}Options`` do.

    ``kind`` is ``CreateOptions``, ``UpdateOptions`` or ``PatchOptions``.

    Raises:
        Invalid: 422 naming the options kind in ``meta.k8s.io``.
    """
    causes = []
    if kind == "PatchOptions":
        if not apply and force is not None:
            causes.append(
                Cause(
                    "force",
                    "Forbidden: may not be specified for non-apply patch",
                    "FieldValueForbidden",
                )
            )
        if apply and not field_manager:
            causes.append(
                Cause(
                    "fieldManager",
                    "Required value: is required for apply patch",
                    "FieldValueRequired",
                )
            )
    for message in mf.field_manager_errors(field_manager):
        reason = "FieldValueTooLong" if message.startswith("Too long") else "FieldValueInvalid"
        causes.append(Cause("fieldManager", message, reason))
    if causes:
        raise Invalid(kind, "meta.k8s.io", "", causes)


def decode_config(body: Any) -> dict[str, Any]:
    """The applied configuration from the decoded request body, as JSON: YAML's non-string
    keys and timestamps become strings, as ``sigs.k8s.io/yaml`` converts them.

    Raises:
        BadRequest: when it is not an object.
    """
    if not isinstance(body, dict):
        raise BadRequest(
            "error decoding YAML: error unmarshaling JSON: while decoding JSON: json: cannot "
            f"unmarshal {_json_kind(body)} into Go value of type map[string]interface {{}}"
        )
    out: dict[str, Any] = _as_json(body)
    return out


def _as_json(value: Any) -> Any:
    if isinstance(value, dict):
        return {k if isinstance(k, str) else _key(k): _as_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_json(v) for v in value]
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def _key(key: Any) -> str:
    if isinstance(key, bool):
        return "true" if key else "false"
    if key is None:
        return "null"
    return key.isoformat() if isinstance(key, dt.date) else str(key)


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return "null"


def gvk_string(api_version: str, kind: str) -> str:
    """``schema.GroupVersionKind.String()``: ``group/version, Kind=Kind`` (``/v1, ...``)."""
    group, _, version = api_version.rpartition("/")
    return f"{group}/{version}, Kind={kind}"


def apply(
    target: mf.Target,
    live: dict[str, Any],
    config: dict[str, Any],
    manager: str,
    *,
    force: bool,
    time: str,
) -> dict[str, Any]:
    """Apply ``config`` by ``manager`` to ``live`` (an empty object for a create).

    Returns the object to store, its ``metadata.managedFields`` encoded.

    Raises:
        BadRequest: wrong apiVersion or kind, managedFields in the config, a config that does
            not fit the schema.
        Conflict: 409 listing the conflicts (unless ``force``).
    """
    want = (target.api_version, target.rt.kind)
    got = (str(config.get("apiVersion") or ""), str(config.get("kind") or ""))
    if got != want:
        raise BadRequest(f"invalid object type: {gvk_string(*got)}")
    meta = config.get("metadata")
    if isinstance(meta, dict) and meta.get("managedFields") is not None:
        raise BadRequest("metadata.managedFields must be nil")
    try:
        managed = mf.decode(live.get("metadata", {}).get("managedFields"), stored=True)
    except ValueError:
        managed = {}
    try:
        try:
            obj, managed = mf.apply(target, live, config, managed, manager, force=force, time=time)
        except mf.Conflicts as exc:
            if manager != KUBECTL:
                raise
            allowed = _allowed_by_last_applied(target, live)
            left = [(k, p) for k, p in exc.conflicts if not allowed.has(p)]
            if left:
                raise mf.Conflicts(left) from None
            obj, managed = mf.apply(target, live, config, managed, manager, force=True, time=time)
    except TypedError as exc:
        named = meta if isinstance(meta, dict) else {}
        where = f"{named.get('namespace') or ''}/{named.get('name') or ''}"
        raise BadRequest(
            f"failed to create typed patch object ({where}; {gvk_string(*want)}): {exc}"
        ) from exc
    except mf.Conflicts as exc:
        raise conflict_error(exc.conflicts) from exc
    if obj is None:
        obj = copy.deepcopy(live)
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    if manager == KUBECTL and annotations.get(LAST_APPLIED):
        annotations[LAST_APPLIED] = last_applied(config)
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        # An applied "metadata: null" leaves the object without metadata, which is empty.
        meta = obj["metadata"] = {}
    encoded = mf.encode(managed)
    if encoded:
        meta["managedFields"] = encoded
    else:
        meta.pop("managedFields", None)
    return obj


def last_applied(config: dict[str, Any]) -> str:
    """The ``last-applied-configuration`` annotation for ``config``: its JSON without the
    annotation itself, as Go's ``json.Encoder`` writes it (sorted keys, trailing newline)."""
    config = copy.deepcopy(config)
    annotations = (config.get("metadata") or {}).get("annotations")
    if isinstance(annotations, dict):
        annotations.pop(LAST_APPLIED, None)
    text = json.dumps(config, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026") + "\n"


def _allowed_by_last_applied(target: mf.Target, live: dict[str, Any]) -> FieldSet:
    # Fields the last client-side apply set and that still hold the value it set.
    annotations = (live.get("metadata") or {}).get("annotations") or {}
    raw = annotations.get(LAST_APPLIED)
    if not raw:
        return FieldSet()
    try:
        applied = json.loads(raw)
        if not isinstance(applied, dict) or applied.get("apiVersion") != target.api_version:
            return FieldSet()
        fields = to_field_set(applied, target.type)
    except ValueError:
        return FieldSet()
    cmp = compare(applied, live, target.type)
    return fields.difference(cmp.modified).difference(cmp.added).difference(cmp.removed)


def print_manager(key: str) -> str:
    """A manager as conflicts name it: ``"mgr"``, with ``using v1`` for updaters."""
    entry = json.loads(key)
    out = json.dumps(entry.get("manager", ""), ensure_ascii=False)
    if entry.get("subresource"):
        out += f" with subresource {json.dumps(entry['subresource'])}"
    if entry.get("operation") == mf.UPDATE:
        out += f" using {entry.get('apiVersion', '')}"
    return out


def conflict_error(conflicts: list[tuple[str, Path]]) -> Conflict:
    """The 409 for apply conflicts, worded and shaped as kube-apiserver's
    ``NewConflictError``."""
    causes = [
        {
            "reason": "FieldManagerConflict",
            "message": f"conflict with {print_manager(key)}",
            "field": path_string(path),
        }
        for key, path in conflicts
    ]
    if len(conflicts) == 1:
        key, path = conflicts[0]
        message = (
            f"Apply failed with 1 conflict: conflict with {print_manager(key)}: {path_string(path)}"
        )
    else:
        lines = []
        for key in sorted({k for k, _ in conflicts}):
            lines.append(f"conflicts with {print_manager(key)}:")
            lines += [f"- {path_string(p)}" for k, p in conflicts if k == key]
        message = f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(lines)
    return Conflict(message, details={"causes": causes})
