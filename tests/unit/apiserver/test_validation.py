import pytest

from arges.apiserver.validation import object_meta_causes
from arges.names import (
    TOTAL_ANNOTATION_SIZE_LIMIT,
    dns1123_label_errors,
    dns1123_subdomain_errors,
    label_value_errors,
    qualified_name_errors,
)


@pytest.mark.parametrize(
    ("name", "label_ok", "subdomain_ok"),
    [
        ("a", True, True),
        ("abc-123", True, True),
        ("a.b.c", False, True),
        ("-a", False, False),
        ("a-", False, False),
        ("A", False, False),
        ("a_b", False, False),
        ("a" * 63, True, True),
        ("a" * 64, False, True),
        ("a" * 254, False, False),
        ("4c4c4544-0035-4b10-8036-b4c04f4e4a32", True, True),
    ],
)
def test_dns1123_names(name: str, label_ok: bool, subdomain_ok: bool) -> None:
    assert (not dns1123_label_errors(name)) is label_ok
    assert (not dns1123_subdomain_errors(name)) is subdomain_ok


@pytest.mark.parametrize(
    ("key", "ok"),
    [
        ("app", True),
        ("example.com/app", True),
        ("App.Name_1", True),
        ("/app", False),
        ("a/b/c", False),
        ("Example.com/app", False),
        ("app-", False),
        ("x" * 64, False),
    ],
)
def test_qualified_names(key: str, ok: bool) -> None:
    assert (not qualified_name_errors(key)) is ok


def test_label_values() -> None:
    assert label_value_errors("") == []
    assert label_value_errors("v1.2_b-c") == []
    assert label_value_errors("-x")
    assert label_value_errors("x" * 64)


def test_object_meta_rules() -> None:
    causes = object_meta_causes({"name": "Bad_Name", "namespace": "ns"}, namespaced=False)
    assert {c.field for c in causes} == {"metadata.name", "metadata.namespace"}
    assert object_meta_causes({}, namespaced=True)[0].message == "name or generateName is required"
    causes = object_meta_causes(
        {
            "name": "ok",
            "namespace": "ns",
            "labels": {"bad key": "v"},
            "annotations": {"a": "x" * TOTAL_ANNOTATION_SIZE_LIMIT},
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "A", "name": "a", "uid": "1", "controller": True},
                {"apiVersion": "v1", "kind": "B", "name": "b", "uid": "2", "controller": True},
                {"kind": "C"},
            ],
        },
        namespaced=True,
    )
    fields = [c.field for c in causes]
    assert "metadata.labels" in fields
    assert "metadata.annotations" in fields
    assert "metadata.ownerReferences" in fields
    assert "metadata.ownerReferences[2].uid" in fields
    assert object_meta_causes({"name": "ns-1"}, namespaced=False, name_is_label=True) == []
    assert object_meta_causes({"name": "a.b"}, namespaced=False, name_is_label=True)
