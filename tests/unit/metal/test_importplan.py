"""What an import writes given what Arges holds (arges.metal.sidero.plan), played against an
in-memory API that does what an API server does with those writes."""

from __future__ import annotations

import base64
import copy
import datetime as dt
from typing import Any

import pytest

from arges.api.binding import RELEASE_FINALIZER
from arges.api.environment import BUILT_IN
from arges.metal.sidero import translate
from arges.metal.sidero.base import Translation
from arges.metal.sidero.plan import IMPORT_STATE, Plan, Step, Target, plan
from tests.unit.metal.sidero_objects import BOUND, FREE, MACHINE
from tests.unit.metal.test_sidero import state

NOW = dt.datetime(2025, 6, 2, 8, 0, tzinfo=dt.UTC)
Key = tuple[str, str, str]


def merge(current: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(current) if isinstance(current, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge(out.get(key), value)
    return out


class Api:
    """Objects by (kind, namespace, name); writes as an API server does them: a create
    drops the status and refuses a taken name, the status subresource changes only the
    status, a replace refuses a stale resourceVersion."""

    def __init__(self, objects: dict[Key, dict[str, Any]] | None = None) -> None:
        self.objects = copy.deepcopy(objects or {})
        self.version = 0

    def _stamp(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.version += 1
        obj["metadata"]["resourceVersion"] = str(self.version)
        return obj

    def apply(self, step: Step) -> None:
        key = (step.kind, step.namespace or "", step.name)
        body = copy.deepcopy(step.body)
        if step.verb == "create":
            assert key not in self.objects, f"{key} exists"
            body.pop("status", None)
            if "stringData" in body:
                data = body.pop("stringData")
                body["data"] = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
            self.objects[key] = self._stamp(body)
        elif step.verb == "status":
            obj = self.objects[key]
            obj["status"] = merge(obj.get("status"), body["status"])
            self._stamp(obj)
        elif step.verb == "patch":
            self.objects[key] = self._stamp(merge(self.objects[key], body))
        else:
            current = self.objects[key]["metadata"]["resourceVersion"]
            assert body["metadata"]["resourceVersion"] == current, "stale replace"
            self.objects[key] = self._stamp(body)

    def target(self, machines: dict[tuple[str, str], str] | None = None) -> Target:
        return Target(copy.deepcopy(self.objects), machines or {})

    def contents(self) -> dict[Key, dict[str, Any]]:
        """The objects without their resourceVersions."""
        out = copy.deepcopy(self.objects)
        for obj in out.values():
            obj["metadata"].pop("resourceVersion", None)
        return out


@pytest.fixture
def translation() -> Translation:
    return translate(state(), now=NOW)


def run(api: Api, result: Plan, count: int | None = None) -> None:
    for step in result.steps[:count]:
        api.apply(step)


def test_a_fresh_import_writes_servers_last_and_their_bmcs_after_their_status(
    translation: Translation,
) -> None:
    result = plan(translation, Target())
    assert {o.action for o in result.outcomes} == {"create"}
    writes = [(s.verb, s.kind, s.name) for s in result.steps]
    first_server = next(i for i, w in enumerate(writes) if w[1] == "Server")
    assert all(w[1] == "Server" for w in writes[first_server:])
    assert writes.index(("create", "ServerBinding", BOUND)) < first_server
    created = next(s for s in result.steps if s.verb == "create" and s.name == FREE)
    assert "bmc" not in created.body["spec"]
    assert created.body["metadata"]["annotations"][IMPORT_STATE] == "pending"
    assert writes[writes.index(("create", "Server", FREE)) + 1 :][:2] == [
        ("status", "Server", FREE),
        ("patch", "Server", FREE),
    ]
    api = Api()
    run(api, result)
    free = api.objects[("Server", "", FREE)]
    assert free["metadata"]["annotations"][IMPORT_STATE] == "done"
    assert free["spec"]["bmc"]["credentialsSecretRef"] == {
        "name": f"bmc-{FREE}",
        "namespace": "default",
    }
    assert free["status"]["isClean"] is True
    binding = api.objects[("ServerBinding", "", BOUND)]
    assert binding["metadata"]["finalizers"] == [RELEASE_FINALIZER]
    assert [c["type"] for c in binding["status"]["conditions"]] == ["ConfigDelivered", "Installed"]
    assert "uid" not in binding["spec"]["consumerRef"], "the MetalMachine is not in Arges yet"


def test_a_second_import_writes_nothing(translation: Translation) -> None:
    api = Api()
    run(api, plan(translation, Target()))
    again = plan(translation, api.target())
    assert again.steps == []
    assert {o.action for o in again.outcomes} == {"unchanged"}


def test_an_import_interrupted_after_any_write_converges_when_run_again(
    translation: Translation,
) -> None:
    whole = Api()
    run(whole, plan(translation, Target()))
    steps = len(plan(translation, Target()).steps)
    for cut in range(1, steps):
        api = Api()
        run(api, plan(translation, Target()), cut)
        resumed = plan(translation, api.target())
        run(api, resumed)
        assert api.contents() == whole.contents(), f"interrupted after write {cut}"
        assert plan(translation, api.target()).steps == []


def test_a_metal_machine_already_in_arges_is_named_with_its_uid(translation: Translation) -> None:
    api = Api()
    run(api, plan(translation, Target(metal_machines={("default", MACHINE): "uid-1"})))
    binding = api.objects[("ServerBinding", "", BOUND)]
    assert binding["spec"]["consumerRef"]["uid"] == "uid-1"
    assert binding["metadata"]["labels"]["metal.arges.dev/consumer-uid"] == "uid-1"


def _arges_own(kind: str, name: str, namespace: str = "", **spec: Any) -> dict[Key, dict[str, Any]]:
    meta: dict[str, Any] = {"name": name, "resourceVersion": "7"}
    if namespace:
        meta["namespace"] = namespace
    return {(kind, namespace, name): {"metadata": meta, "spec": spec}}


def test_objects_arges_made_itself_are_left_as_they_are(translation: Translation) -> None:
    held = {
        **_arges_own("Server", FREE, accepted=False),
        **_arges_own("Server", BOUND, accepted=False),
        **_arges_own("Environment", "talos-1-7", kernel={"url": "file:///k"}),
    }
    api = Api(held)
    result = plan(translation, api.target())
    actions = {o.subject: o.action for o in result.outcomes}
    assert actions[f"Server {FREE}"] == "leave"
    assert actions[f"ServerBinding {BOUND}"] == "leave", "its server is Arges' own"
    assert actions[f"Secret default/bmc-{FREE}"] == "leave"
    assert actions["Environment talos-1-7"] == "leave"
    run(api, result)
    assert api.objects[("Server", "", FREE)] == held[("Server", "", FREE)]
    assert ("ServerBinding", "", BOUND) not in api.objects
    assert ("Secret", "default", f"bmc-{FREE}") not in api.objects


def test_a_secret_with_other_credentials_keeps_its_server_from_getting_the_bmc(
    translation: Translation,
) -> None:
    held = _arges_own("Secret", f"bmc-{FREE}", "default")
    held[("Secret", "default", f"bmc-{FREE}")]["data"] = {"username": "YQ==", "password": "Yg=="}
    api = Api(held)
    result = plan(translation, api.target())
    run(api, result)
    assert "bmc" not in api.objects[("Server", "", FREE)]["spec"]
    free = next(o for o in result.outcomes if o.subject == f"Server {FREE}")
    assert free.summary == "accepted, clean"
    assert any(
        n.subject == f"Server {FREE}" and "holds other credentials" in n.text for n in result.notes
    )


def test_untouched_built_ins_are_taken_over_and_changed_ones_left_alone(
    translation: Translation,
) -> None:
    default = _arges_own("Environment", "default", kernel={"url": "file:///arges"})
    default[("Environment", "", "default")]["metadata"]["annotations"] = {BUILT_IN: "true"}
    held = {**default, **_arges_own("ServerClass", "any")}
    api = Api(held)
    result = plan(translation, api.target())
    actions = {o.subject: o.action for o in result.outcomes}
    assert actions["Environment default"] == "take over"
    assert actions["ServerClass any"] == "unchanged", "Sidero's any is Arges' any"
    run(api, result)
    env = api.objects[("Environment", "", "default")]
    assert env["spec"]["kernel"]["url"].endswith("/v1.7.6/vmlinuz-amd64")
    assert BUILT_IN not in env["metadata"]["annotations"], "Arges stops updating it"
    assert plan(translation, api.target()).steps == []
    changed = _arges_own("ServerClass", "any", selector={"matchLabels": {"a": "b"}})
    assert {o.subject: o.action for o in plan(translation, Target(changed)).outcomes}[
        "ServerClass any"
    ] == "leave"
