import pytest

from arges.apiserver.builtin import builtin_types
from arges.apiserver.tables import (
    JSONPathError,
    build_table,
    compile_path,
    evaluate,
    human_duration,
)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (-5, "<invalid>"),
        (-1, "0s"),
        (0, "0s"),
        (59, "59s"),
        (119, "119s"),
        (120, "2m"),
        (150, "2m30s"),
        (600, "10m"),
        (179 * 60, "179m"),
        (3 * 3600, "3h"),
        (3 * 3600 + 1800, "3h30m"),
        (8 * 3600, "8h"),
        (47 * 3600, "47h"),
        (2 * 86400, "2d"),
        (2 * 86400 + 3600, "2d1h"),
        (30 * 86400, "30d"),
        (2 * 365 * 86400, "2y"),
        (2 * 365 * 86400 + 86400, "2y1d"),
        (9 * 365 * 86400, "9y"),
    ],
)
def test_human_duration_matches_kubectl(seconds: int, text: str) -> None:
    assert human_duration(seconds) == text


def test_jsonpath_columns() -> None:
    obj = {
        "metadata": {"name": "a"},
        "status": {
            "conditions": [{"type": "Ready", "status": "True"}, {"type": "X", "status": "F"}]
        },
        "spec": {"tags": ["a", "b"]},
    }
    assert evaluate('.status.conditions[?(@.type=="Ready")].status', obj) == "True"
    assert evaluate("{.metadata.name}", obj) == "a"
    assert evaluate(".spec.tags[*]", obj) == "a,b"
    assert evaluate(".spec.missing", obj) is None
    with pytest.raises(JSONPathError):
        compile_path("metadata.name")
    with pytest.raises(JSONPathError):
        compile_path(".status[?(")


def test_secret_table_counts_data_and_hides_values() -> None:
    secret_type = next(rt for rt in builtin_types() if rt.kind == "Secret")
    obj = {
        "metadata": {"name": "bmc", "creationTimestamp": "2020-01-01T00:00:00Z"},
        "type": "Opaque",
        "data": {"username": "YQ==", "password": "Yg=="},
    }
    table = build_table(
        secret_type.storage_version(), [obj], include_object="Metadata", resource_version="7"
    )
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Type", "Data", "Age"]
    assert table["rows"][0]["cells"][:3] == ["bmc", "Opaque", 2]
    assert table["rows"][0]["object"]["kind"] == "PartialObjectMetadata"
    assert "data" not in table["rows"][0]["object"]
