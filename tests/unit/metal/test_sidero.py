"""Sidero Metal's objects translated into Arges' (arges.metal.sidero)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from arges.api.binding import RELEASE_FINALIZER
from arges.api.environment import Environment
from arges.api.server import Server
from arges.api.serverclass import ServerClass
from arges.metal.sidero import translate
from arges.metal.sidero.base import SideroState, Translated, Translation, secret_refs
from arges.metal.sidero.inventory import inventory, qualifiers
from tests.unit.metal.sidero_objects import (
    BOUND,
    CORDONED,
    FREE,
    MACHINE,
    NEW,
    OLD,
    PASSWORDS,
    dell,
    rack,
)

NOW = dt.datetime(2025, 6, 2, 8, 0, tzinfo=dt.UTC)
GIB, MIB = 2**30, 2**20


def state(objects: dict[str, list[dict[str, Any]]] | None = None) -> SideroState:
    objects = objects if objects is not None else rack()
    return SideroState(
        servers=objects["servers"],
        server_classes=objects["serverclasses"],
        environments=objects["environments"],
        bindings=objects["serverbindings"],
        metal_machines=objects["metalmachines"],
        secrets={("default", s["metadata"]["name"]): s["stringData"] for s in objects["secrets"]},
    )


def find(translation: Translation, kind: str, name: str) -> Translated:
    return next(o for o in translation.objects if o.kind == kind and o.name == name)


def notes(translation: Translation, subject: str) -> list[str]:
    return [n.text for n in translation.notes if n.subject == subject]


@pytest.fixture
def result() -> Translation:
    return translate(state(), now=NOW)


def test_the_inventory_moves_to_status_in_bytes() -> None:
    hardware, dropped = inventory({"hardware": dell(BOUND, "X1", "b4:96:91:3a:5c:10", "10.0.0.1")})
    assert hardware is not None
    server = Server.from_json({"metadata": {"name": BOUND}, "status": {"hardware": hardware}})
    hw = server.status.hardware
    assert hw is not None
    assert hw.memory.modules[0].size == 16 * GIB, "16384 MB is 16 GiB"
    assert hw.memory.total_size == 192 * GIB and hw.memory.module_count == 12
    assert hw.storage.total_size == 2 * 960197124096, "the exact sum, not Sidero's rounded GB"
    assert [(d.name, d.type) for d in hw.storage.devices] == [("sda", "SSD"), ("nvme0n1", "NVMe")]
    assert [(i.name, i.link) for i in hw.network.interfaces] == [("eno1", "up"), ("eno2", "down")]
    assert hw.compute.processors[1].product_name.startswith("Intel(R) Xeon(R) Gold 6130")
    assert hw.system.serial_number == "X1"
    # /dev/sda is the name; a disk's uuid has no place in Arges' inventory.
    assert dropped == {"storage.devices[].uuid"}


def test_a_v1alpha1_server_keeps_its_system_and_cpu() -> None:
    hardware, _ = inventory(
        {"system": {"manufacturer": "HPE"}, "cpu": {"manufacturer": "AMD", "version": "EPYC"}}
    )
    assert hardware is not None
    assert hardware["system"] == {"manufacturer": "HPE"}
    assert hardware["compute"]["processors"] == [{"manufacturer": "AMD", "productName": "EPYC"}]
    assert inventory({}) == (None, set())


def test_a_bound_installed_server_stays_bound_and_boots_from_disk(result: Translation) -> None:
    binding = find(result, "ServerBinding", BOUND)
    assert binding.body["metadata"]["finalizers"] == [RELEASE_FINALIZER]
    assert binding.body["spec"] == {
        "serverRef": {"name": BOUND},
        "consumerRef": {
            "apiVersion": "infrastructure.cluster.x-k8s.io/v1alpha3",
            "kind": "MetalMachine",
            "name": MACHINE,
            "namespace": "default",
        },
        "serverClassRef": {"name": "r640"},
        "role": "controlplane",
    }
    assert binding.body["metadata"]["labels"]["cluster.x-k8s.io/cluster-name"] == "prod"
    assert binding.status is not None
    kinds = {c["type"]: c["status"] for c in binding.status["conditions"]}
    assert kinds == {"ConfigDelivered": "True", "Installed": "True"}
    server = find(result, "Server", BOUND)
    assert server.status is not None
    assert (server.status["inUse"], server.status["isClean"]) == (True, False)
    booted = server.status["conditions"][0]
    assert (booted["type"], booted["status"], booted["reason"]) == ("PXEBooted", "True", "Disk")
    # What Talos reported to Sidero through the binding, which is what the Machine shows.
    assert server.status["hostname"] == "prod-cp-1"
    assert server.status["addresses"] == [{"type": "InternalIP", "address": "10.5.0.21"}]
    assert server.body["spec"]["configPatches"][0]["path"] == "/machine/install/disk"
    assert any("SideroLink" in n for n in notes(result, f"ServerBinding {BOUND}"))
    objects = [(o.kind, o.name) for o in result.objects]
    assert objects.index(("ServerBinding", BOUND)) < objects.index(("Server", BOUND))


def test_a_bound_server_not_yet_installed_is_served_its_environment() -> None:
    objects = rack()
    objects["servers"][0]["status"]["conditions"] = []
    objects["serverbindings"][0]["status"]["conditions"] = []
    result = translate(state(objects), now=NOW)
    binding = find(result, "ServerBinding", BOUND)
    assert binding.status is None
    server = find(result, "Server", BOUND)
    assert server.status is not None and "conditions" not in server.status
    assert any("not installed yet" in n for n in notes(result, f"ServerBinding {BOUND}"))


@pytest.mark.parametrize(
    ("name", "accepted", "clean", "cordoned"),
    [
        (FREE, True, True, False),
        (CORDONED, True, True, True),
        (NEW, False, False, False),
        (OLD, True, True, False),
    ],
)
def test_acceptance_cleanliness_and_cordon_carry_over(
    result: Translation, name: str, accepted: bool, clean: bool, cordoned: bool
) -> None:
    server = find(result, "Server", name)
    assert server.body["spec"]["accepted"] is accepted
    assert server.body["spec"]["cordoned"] is cordoned
    assert server.status is not None
    assert (server.status["inUse"], server.status["isClean"]) == (False, clean)
    assert server.body["metadata"]["labels"]["metal.arges.dev/imported-from"] == "sidero"
    assert not any(o.kind == "ServerBinding" and o.name == name for o in result.objects)


def test_bmc_credentials_move_into_an_arges_secret(result: Translation) -> None:
    assert secret_refs(state().servers) == {("default", f"{BOUND}-bmc"), ("default", f"{FREE}-bmc")}
    for name, user in ((FREE, "sidero"), (CORDONED, "ADMIN")):
        secret = find(result, "Secret", f"bmc-{name}")
        assert secret.namespace == "default"
        assert secret.body["stringData"] == {"username": user, "password": PASSWORDS[name]}
        server = find(result, "Server", name)
        assert "bmc" not in server.body["spec"], "the BMC is written last"
        assert server.last == {
            "bmc": {
                "address": "10.5.1.40" if name == CORDONED else "10.5.1.22",
                "port": 623,
                "protocol": "ipmi",
                "credentialsSecretRef": {"name": f"bmc-{name}", "namespace": "default"},
            }
        }
    everything = " ".join([o.summary for o in result.objects] + [str(n) for n in result.notes])
    assert not any(p in everything for p in PASSWORDS.values())
    assert find(result, "Secret", f"bmc-{CORDONED}").summary.endswith(
        ", moved out of Sidero's spec.bmc.pass"
    )


@pytest.mark.parametrize(
    ("bmc", "words"),
    [
        (
            {
                "endpoint": "10.5.1.9",
                "userFrom": {
                    "secretKeyRef": {"namespace": "default", "name": "gone", "key": "user"}
                },
                "pass": "x",
            },
            "Secret default/gone, which Sidero does not have",
        ),
        (
            {"endpoint": "10.5.1.9", "port": 623},
            "it has no user (Sidero drove such a BMC as no BMC)",
        ),
        (
            {"endpoint": "10.5.1.9", "user": "a", "pass": "b", "interface": "open"},
            "not IPMI over the LAN",
        ),
    ],
)
def test_a_bmc_that_cannot_be_reached_is_not_carried_saying_why(
    bmc: dict[str, Any], words: str
) -> None:
    objects = rack()
    objects["servers"][3]["spec"]["bmc"] = bmc
    result = translate(state(objects), now=NOW)
    assert find(result, "Server", NEW).last is None
    assert not any(o.name == f"bmc-{NEW}" for o in result.objects)
    assert any(words in n for n in notes(result, f"Server {NEW}")), notes(result, f"Server {NEW}")


def test_what_arges_has_no_place_for_is_said_once_per_server(result: Translation) -> None:
    assert any("spec.pxeMode uefi" in n for n in notes(result, f"Server {CORDONED}"))
    inventories = notes(result, "Server inventories")
    assert inventories == [
        "storage.devices[].uuid not carried (2 servers): Arges' inventory has no such field "
        "(the agent reports its own inventory at its next registration)"
    ]


def test_server_classes_keep_selectors_qualifiers_patches_and_environments(
    result: Translation,
) -> None:
    r640 = ServerClass.from_json(find(result, "ServerClass", "r640").body)
    assert r640.spec.selector is not None and r640.spec.selector.match_labels == {"rack": "r1"}
    assert r640.spec.environment_ref is not None and r640.spec.environment_ref.name == "talos-1-7"
    assert r640.spec.config_patches is not None and r640.spec.config_patches[0].value == "none"
    assert r640.spec.qualifiers is not None and r640.spec.qualifiers.hardware is not None
    memory = r640.spec.qualifiers.hardware[0].memory
    assert memory is not None and memory.modules is not None
    assert memory.modules[0].size == 16 * GIB, "Sidero's 16384 MB"
    amd = ServerClass.from_json(find(result, "ServerClass", "amd").body)
    assert amd.spec.qualifiers is not None
    assert amd.spec.qualifiers.label_selectors == [{"rack": "r2"}, {"rack": "r3"}]
    big = ServerClass.from_json(find(result, "ServerClass", "big-memory").body)
    assert big.spec.qualifiers is not None and big.spec.qualifiers.hardware is not None
    assert big.spec.qualifiers.hardware[0].memory is not None
    assert big.spec.qualifiers.hardware[0].memory.total_size == "192 GB"


def test_membership_is_what_sidero_shows_and_a_difference_is_reported(
    result: Translation,
) -> None:
    assert not [n for n in result.notes if "members differ" in n.text]
    objects = rack()
    objects["serverclasses"][1]["status"]["serversAvailable"] = [FREE, OLD]
    changed = translate(state(objects), now=NOW)
    assert notes(changed, "ServerClass r640") == [
        f"members differ from what Sidero shows: in Arges not {OLD}"
    ]


@pytest.mark.parametrize(
    ("raw", "expected", "problem"),
    [
        (
            {
                "cpu": [{"manufacturer": "AMD"}, {"manufacturer": "Intel"}],
                "systemInformation": [{"manufacturer": "HPE"}],
            },
            [
                {
                    "compute": {"processors": [{"manufacturer": "AMD"}]},
                    "system": {"manufacturer": "HPE"},
                },
                {
                    "compute": {"processors": [{"manufacturer": "Intel"}]},
                    "system": {"manufacturer": "HPE"},
                },
            ],
            None,
        ),
        (
            {
                "hardware": [
                    {"storage": {"devices": [{"deviceName": "/dev/nvme0n1", "size": 960197124096}]}}
                ]
            },
            [{"storage": {"devices": [{"name": "nvme0n1", "size": 960197124096}]}}],
            None,
        ),
        (
            {
                "hardware": [
                    {"compute": {"processors": [{"serialNumber": "X"}]}},
                    {"system": {"manufacturer": "Dell Inc."}},
                ]
            },
            [{"system": {"manufacturer": "Dell Inc."}}],
            "hardware qualifier 0 dropped: it compares compute.processors[].serialNumber",
        ),
        (
            {"hardware": [{"memory": {"totalSize": "192GB"}}, {"system": {"manufacturer": "HPE"}}]},
            [{"system": {"manufacturer": "HPE"}}],
            "hardware qualifier 0 dropped: its memory.totalSize '192GB' is not \"<N> GB\"",
        ),
    ],
)
def test_hardware_qualifiers_keep_sideros_meaning(
    raw: dict[str, Any], expected: list[dict[str, Any]], problem: str | None
) -> None:
    found, problems = qualifiers(raw.get("hardware"), raw.get("cpu"), raw.get("systemInformation"))
    assert found == expected
    assert len(problems) == (1 if problem else 0)
    assert all(problem and p.startswith(problem) for p in problems)


def test_a_class_none_of_whose_qualifiers_can_match_is_not_imported() -> None:
    objects = rack()
    objects["serverclasses"][2]["spec"]["qualifiers"] = {
        "hardware": [{"network": {"interfaces": [{"flags": "up|broadcast"}]}}]
    }
    result = translate(state(objects), now=NOW)
    assert not any(o.kind == "ServerClass" and o.name == "amd" for o in result.objects)
    assert "not imported: none of its hardware qualifiers can match in Arges" in notes(
        result, "ServerClass amd"
    )


def test_environments_keep_urls_digests_and_arguments_but_not_siderOs_services(
    result: Translation,
) -> None:
    env = Environment.from_json(find(result, "Environment", "talos-1-7").body)
    assert env.spec.kernel.url.endswith("/v1.7.6/vmlinuz-amd64")
    assert env.spec.kernel.sha512 == "ab" * 64 and env.spec.initrd.sha512 == "cd" * 64
    assert env.spec.kernel.args is not None
    assert "initrd=initramfs.xz" in env.spec.kernel.args
    assert not [a for a in env.spec.kernel.args if a.startswith(("talos.config", "siderolink"))]
    dropped = notes(result, "Environment talos-1-7")
    assert len(dropped) == 2 and dropped[0].startswith("kernel argument talos.config= dropped")
    default = Environment.from_json(find(result, "Environment", "default").body)
    assert default.spec.kernel.sha512 is None, "Sidero's empty sha512: nothing to check"


@pytest.mark.parametrize(
    "broken",
    [
        {"metadata": {"name": "x"}, "spec": "not an object"},
        {"metadata": {"name": "x"}, "spec": {"hardware": {"memory": {"modules": "none"}}}},
        {"metadata": {"name": "x"}, "spec": {"hardware": [1, 2]}, "status": []},
        {"metadata": {"name": "x"}, "spec": {"bmc": {"endpoint": "a", "port": "x", "user": 1}}},
        {
            "metadata": {"name": "x"},
            "spec": {"configPatches": [{"op": "explode"}], "accepted": "yes"},
        },
        {"metadata": {"name": "x"}, "spec": {"configPatches": "add", "strategicPatches": 3}},
        {"metadata": {"name": "x"}, "spec": {"bmc": "10.0.0.1", "environmentRef": "default"}},
        {"metadata": {"name": "x"}, "spec": {"bmc": {"endpoint": "a", "userFrom": "b"}}},
        {"metadata": {"name": "x", "labels": ["a"]}, "status": {"addresses": "10.0.0.1"}},
    ],
)
def test_bad_input_becomes_notes_never_a_crash(broken: dict[str, Any]) -> None:
    objects = rack()
    objects["servers"].append(broken)
    objects["serverbindings"].append({"metadata": {"name": "x"}, "spec": {"metalMachineRef": 1}})
    objects["serverclasses"].append(
        {"metadata": {"name": "y"}, "spec": {"qualifiers": {"labelSelectors": "z", "cpu": [1]}}}
    )
    objects["environments"].append({"metadata": {"name": "z"}, "spec": {"kernel": "k"}})
    result = translate(state(objects), now=NOW)
    server = find(result, "Server", "x")
    Server.from_json({**server.body, "status": server.status})
    ServerClass.from_json(find(result, "ServerClass", "y").body)
    assert "not imported: it has no kernel or no initrd URL" in notes(result, "Environment z")
