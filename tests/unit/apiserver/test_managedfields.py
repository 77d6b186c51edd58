import copy
from typing import Any

import pytest

from arges.apiserver import apply as ssa
from arges.apiserver import managedfields as mf
from arges.apiserver.builtin import builtin_types
from arges.apiserver.errors import BadRequest, Conflict, Invalid

CM = next(t for t in builtin_types() if t.kind == "ConfigMap")
V1 = CM.storage_version()
T0 = "2024-01-01T00:00:00Z"


def cm(data: dict[str, str] | None = None, **meta: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "c", "namespace": "default", **meta},
    }
    if data is not None:
        obj["data"] = data
    return obj


def owners(obj: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (e["manager"], e["operation"]): e["fieldsV1"]
        for e in obj["metadata"].get("managedFields", [])
    }


def applied(live: dict[str, Any], config: dict[str, Any], manager: str, **kw: Any) -> Any:
    target = mf.target_of(CM, V1, None, live, config)
    return ssa.apply(target, live, config, manager, force=kw.pop("force", False), time=T0, **kw)


def created(obj: dict[str, Any], manager: str) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    fields = mf.record(CM, V1, None, obj, manager)
    assert fields is not None
    out["metadata"]["managedFields"] = fields
    return out


def updated(live: dict[str, Any], new: dict[str, Any], manager: str) -> dict[str, Any]:
    out = copy.deepcopy(new)
    fields = mf.record(CM, V1, live, new, manager)
    if fields is None:
        out["metadata"].pop("managedFields", None)
    else:
        out["metadata"]["managedFields"] = fields
    return out


def test_a_create_is_an_update_owning_what_it_set() -> None:
    obj = created(cm({"a": "1"}, labels={"x": "y"}), "kubectl-create")
    [entry] = obj["metadata"]["managedFields"]
    assert list(entry) == ["manager", "operation", "apiVersion", "time", "fieldsType", "fieldsV1"]
    assert entry["fieldsV1"] == {
        "f:data": {".": {}, "f:a": {}},
        "f:metadata": {"f:labels": {".": {}, "f:x": {}}},
    }


def test_updates_take_what_they_change_and_merge_per_manager() -> None:
    live = created(cm({"a": "1", "b": "2"}), "one")
    live = updated(
        live, cm({"a": "1", "b": "3"}, managedFields=live["metadata"]["managedFields"]), "two"
    )
    assert owners(live) == {
        ("one", "Update"): {"f:data": {".": {}, "f:a": {}}},
        ("two", "Update"): {"f:data": {"f:b": {}}},
    }
    live = updated(live, cm({"a": "1", "b": "3", "c": "4"}), "two")
    assert owners(live)[("two", "Update")] == {"f:data": {"f:b": {}, "f:c": {}}}
    removed = updated(live, cm({"b": "3", "c": "4"}), "three")
    assert owners(removed)[("one", "Update")] == {"f:data": {}}, "a removed field leaves them"
    assert ("three", "Update") not in owners(removed), "removing owns nothing"


def test_update_entries_are_capped_into_ancient_changes() -> None:
    live = created(cm({"k0": "v"}), "m00")
    for i in range(1, 12):
        live["metadata"]["managedFields"][-1]["time"] = f"2024-01-01T00:00:{i:02d}Z"
        live = updated(live, cm({**live["data"], f"k{i}": "v"}), f"m{i:02d}")
    managers = [e["manager"] for e in live["metadata"]["managedFields"]]
    assert len(managers) == 10 and "ancient-changes" in managers
    assert "m00" not in managers and "m01" not in managers and "m11" in managers


def test_entries_an_update_leaves_alone_are_shown_as_stored_and_the_rest_anew() -> None:
    live = created(cm({"a": "1"}), "one")
    live = updated(live, cm({"a": "1", "b": "2"}), "two")
    one, two = live["metadata"]["managedFields"]
    two["time"] = "2024-01-01T00:00:01Z"  # "two" wrote later
    after = updated(live, cm({"a": "1", "b": "3"}), "two")
    kept, made = after["metadata"]["managedFields"]
    assert kept is one, "one's entry, unchanged, is the stored one"
    assert made is not two and made["time"] != two["time"]
    assert made["fieldsV1"] == {"f:data": {"f:b": {}}}
    moved = updated(after, cm({"a": "2", "b": "3"}), "two")
    assert moved["metadata"]["managedFields"][0] is not kept, "one's fields changed"
    assert owners(moved) == {
        ("one", "Update"): {"f:data": {}},
        ("two", "Update"): {"f:data": {"f:a": {}, "f:b": {}}},
    }
    stored = mf.decode(live["metadata"]["managedFields"], stored=True)
    entry = stored[mf.identifier("one", "Update", "v1", "")]
    entry.time = "2024-01-01T00:00:02Z"
    shown = {e["manager"]: e for e in mf.encode(stored)}
    assert shown["one"]["time"] == "2024-01-01T00:00:02Z", "a new time shows"
    assert shown["two"] is two


def test_reset_and_objects_without_managed_fields() -> None:
    live = created(cm({"a": "1"}), "one")
    reset = updated(live, cm({"a": "1"}, managedFields=[{}]), "two")
    assert "managedFields" not in reset["metadata"]
    assert "managedFields" not in updated(live, cm({"a": "1"}, managedFields=[]), "two")["metadata"]
    later = updated(reset, cm({"a": "2"}), "two")
    assert "managedFields" not in later["metadata"], "no tracking until the next apply"
    obj = applied(later, cm({"b": "1"}), "kubectl")
    assert owners(obj) == {
        ("before-first-apply", "Update"): {"f:data": {".": {}, "f:a": {}}},
        ("kubectl", "Apply"): {"f:data": {"f:b": {}}},
    }
    kept = updated(live, cm({"a": "1"}, managedFields=live["metadata"]["managedFields"]), "x")
    assert kept["metadata"]["managedFields"] == live["metadata"]["managedFields"]


def test_apply_conflicts_force_and_prune() -> None:
    obj = applied(cm(), cm({"a": "1", "b": "2"}), "one")
    with pytest.raises(Conflict) as err:
        applied(obj, cm({"a": "x", "b": "y"}), "two")
    status = err.value.status()
    assert status["code"] == 409 and status["reason"] == "Conflict"
    assert status["message"] == (
        'Apply failed with 2 conflicts: conflicts with "one":\n- .data.a\n- .data.b'
    )
    assert status["details"] == {
        "causes": [
            {
                "reason": "FieldManagerConflict",
                "message": 'conflict with "one"',
                "field": ".data.a",
            },
            {
                "reason": "FieldManagerConflict",
                "message": 'conflict with "one"',
                "field": ".data.b",
            },
        ]
    }
    shared = applied(obj, cm({"a": "1"}), "two")
    assert owners(shared)[("two", "Apply")] == {"f:data": {"f:a": {}}}, "same value: co-owned"
    forced = applied(shared, cm({"a": "1", "b": "y"}), "two", force=True)
    assert forced["data"] == {"a": "1", "b": "y"}
    assert owners(forced)[("one", "Apply")] == {"f:data": {"f:a": {}}}, "b moved to two"
    dropped = applied(forced, cm({}), "one")
    assert dropped["data"] == {"a": "1", "b": "y"}, "a is still co-owned by two"
    dropped = applied(dropped, cm({"b": "y"}), "two")
    assert dropped["data"] == {"b": "y"}, "a was owned by no one else: pruned"


def test_update_conflict_message_names_the_version() -> None:
    live = created(cm({"a": "1"}), "kubectl-edit")
    with pytest.raises(Conflict) as err:
        applied(live, cm({"a": "2"}), "ctl")
    assert err.value.message == (
        'Apply failed with 1 conflict: conflict with "kubectl-edit" using v1: .data.a'
    )


def test_kubectl_takes_over_client_side_apply_fields() -> None:
    config = cm({"a": "1"})
    annotated = cm({"a": "1"}, annotations={ssa.LAST_APPLIED: ssa.last_applied(config)})
    live = created(annotated, "kubectl-client-side-apply")
    obj = applied(live, cm({"a": "2"}), "kubectl")
    assert obj["data"] == {"a": "2"}
    assert ssa.last_applied(cm({"a": "2"})) == obj["metadata"]["annotations"][ssa.LAST_APPLIED]
    with pytest.raises(Conflict):
        applied(live, cm({"a": "2"}), "someone-else")


def test_bad_apply_requests() -> None:
    with pytest.raises(BadRequest, match=r"^invalid object type: /v1, Kind=Secret$"):
        applied(cm(), {**cm(), "kind": "Secret"}, "m")
    with pytest.raises(BadRequest, match=r"metadata\.managedFields must be nil"):
        applied(cm(), cm(managedFields=[]), "m")
    with pytest.raises(BadRequest) as err:
        applied(cm(), {**cm(), "spec": {}}, "m")
    assert err.value.message == (
        "failed to create typed patch object (default/c; /v1, Kind=ConfigMap): "
        ".spec: field not declared in schema"
    )
    with pytest.raises(Invalid) as invalid:
        ssa.check_options("PatchOptions", "", apply=True)
    assert invalid.value.message == (
        'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for '
        "apply patch"
    )
    with pytest.raises(Invalid, match="force: Forbidden: may not be specified for non-apply"):
        ssa.check_options("PatchOptions", "", force=True)
    with pytest.raises(Invalid, match="fieldManager: Too long"):
        ssa.check_options("CreateOptions", "x" * 129)


def test_yaml_configurations_read_as_json() -> None:
    assert ssa.decode_config({"data": {1: "a", False: "b"}, "x": [{None: 1}]}) == {
        "data": {"1": "a", "false": "b"},
        "x": [{"null": 1}],
    }
    with pytest.raises(BadRequest, match="cannot unmarshal array into Go value"):
        ssa.decode_config([])


def test_managers_from_user_agents() -> None:
    assert mf.manager_from_user_agent("kubectl/v1.30.0 (linux/amd64) kubernetes/abc") == "kubectl"
    assert mf.manager_from_user_agent("Python/3.11 aiohttp/3.9") == "Python"
    assert mf.manager_from_user_agent("a\tb") == "ab"
    assert mf.manager_from_user_agent("x" * 200) == "x" * 128
    obj = created(cm({"a": "1"}), "")
    assert obj["metadata"]["managedFields"][0]["manager"] == "unknown"
