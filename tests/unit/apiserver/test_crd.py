import copy

import pytest

from arges.apiserver.crd import resource_type, validate_crd

BUILTIN = frozenset({("", "secrets")})
GOOD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "servers.metal.arges.dev"},
    "spec": {
        "group": "metal.arges.dev",
        "names": {
            "plural": "servers",
            "singular": "server",
            "kind": "Server",
            "shortNames": ["srv"],
        },
        "scope": "Cluster",
        "versions": [
            {
                "name": "v1alpha1",
                "served": True,
                "storage": False,
                "schema": {"openAPIV3Schema": {"type": "object"}},
            },
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": [
                    {"name": "Accepted", "type": "boolean", "jsonPath": ".spec.accepted"}
                ],
                "selectableFields": [{"jsonPath": ".spec.accepted"}],
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "properties": {"accepted": {"type": "boolean"}},
                            }
                        },
                    }
                },
            },
        ],
    },
}


def mutated(path: list, value: object) -> dict:
    crd = copy.deepcopy(GOOD)
    target = crd
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return crd


def test_a_good_crd_defines_its_resource() -> None:
    assert validate_crd(GOOD, BUILTIN) == []
    rt = resource_type(GOOD)
    assert (rt.group, rt.plural, rt.kind, rt.namespaced) == (
        "metal.arges.dev",
        "servers",
        "Server",
        False,
    )
    assert [v.name for v in rt.versions] == ["v1", "v1alpha1"], "priority order: GA first"
    assert rt.storage_version().name == "v1" and rt.storage_version().status
    assert [c.name for c in rt.storage_version().columns] == ["Name", "Accepted"]
    assert [c.name for c in rt.version("v1alpha1").columns] == ["Name", "Age"]
    assert "spec.accepted" in rt.field_labels(rt.storage_version())


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (["metadata", "name"], "wrong.metal.arges.dev", "metadata.name"),
        (["spec", "group"], "nodots", "spec.group"),
        (["spec", "group"], "apps.k8s.io", "spec.group"),
        (["spec", "scope"], "Galaxy", "spec.scope"),
        (["spec", "names", "plural"], "Servers", "spec.names.plural"),
        (["spec", "conversion"], {"strategy": "Sometimes"}, "spec.conversion.strategy"),
        (["spec", "conversion"], {"strategy": "Webhook"}, "spec.conversion.webhookClientConfig"),
        (["spec", "versions", 1, "storage"], False, "spec.versions"),
        (["spec", "versions", 0, "schema"], {}, "spec.versions[0].schema.openAPIV3Schema"),
        (
            ["spec", "versions", 1, "additionalPrinterColumns", 0, "type"],
            "color",
            "spec.versions[1].additionalPrinterColumns[0].type",
        ),
        (
            ["spec", "versions", 1, "additionalPrinterColumns", 0, "jsonPath"],
            "spec.x",
            "spec.versions[1].additionalPrinterColumns[0].jsonPath",
        ),
        (
            ["spec", "versions", 1, "selectableFields", 0, "jsonPath"],
            ".spec.list[0]",
            "spec.versions[1].selectableFields[0].jsonPath",
        ),
        (
            [
                "spec",
                "versions",
                1,
                "schema",
                "openAPIV3Schema",
                "properties",
                "spec",
                "properties",
                "accepted",
            ],
            {"description": "no type"},
            "spec.versions[1].schema.openAPIV3Schema.properties[spec].properties[accepted].type",
        ),
        (
            ["spec", "versions", 1, "schema", "openAPIV3Schema", "x-kubernetes-validations"],
            [{"rule": "self.x > 0"}],
            "spec.versions[1].schema.openAPIV3Schema.x-kubernetes-validations[0].rule",
        ),
        (
            ["spec", "versions", 1, "schema", "openAPIV3Schema", "properties", "spec"],
            {"type": "object", "x-kubernetes-list-type": "set"},
            "spec.versions[1].schema.openAPIV3Schema.properties[spec].type",
        ),
    ],
)
def test_invalid_crds_are_refused_naming_the_field(path: list, value: object, field: str) -> None:
    causes = validate_crd(mutated(path, value), BUILTIN)
    assert field in [c.field for c in causes], causes


def test_builtin_resources_cannot_be_redefined() -> None:
    crd = mutated(["spec", "group"], "")
    assert any(c.field == "spec.group" for c in validate_crd(crd, BUILTIN))


def test_a_schema_every_version_shares_is_named_as_spec_validation() -> None:
    crd = copy.deepcopy(GOOD)
    crd["spec"]["versions"] = crd["spec"]["versions"][1:]
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["x-kubernetes-validations"] = [
        {"rule": "self.spec.accepted == 1"}
    ]
    [cause] = validate_crd(crd, BUILTIN)
    assert cause.field == "spec.validation.openAPIV3Schema.x-kubernetes-validations[0].rule"
    assert "found no matching overload for '_==_' applied to '(bool, int)'" in cause.message
