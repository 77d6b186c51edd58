import pytest

from arges.apiserver.errors import BadRequest
from arges.apiserver.selectors import parse_field_selector, parse_label_selector
from arges.selectors import SelectorError, selector_from_label_selector

LABELS = {"app": "web", "tier": "front", "env": "prod"}


@pytest.mark.parametrize(
    ("selector", "matches"),
    [
        ("", True),
        ("app=web", True),
        ("app==web", True),
        ("app=db", False),
        ("app!=db", True),
        ("missing!=x", True),
        ("app in (web,db)", True),
        ("app in (db)", False),
        ("app notin (db, cache)", True),
        ("missing notin (x)", True),
        ("app", True),
        ("missing", False),
        ("!missing", True),
        ("!app", False),
        ("app=web,tier=front", True),
        ("app=web, tier=back", False),
        ("example.com/role", False),
        ("app=web,!missing,env in (prod,stage)", True),
    ],
)
def test_label_selector_semantics(selector: str, matches: bool) -> None:
    assert parse_label_selector(selector).matches(LABELS) is matches


@pytest.mark.parametrize(
    "bad",
    ["app in web", "app in ()", "=web", "app=web,", "!app=web", "in (a", "Bad Key=x", "a=b c"],
)
def test_label_selector_syntax_errors_are_bad_requests(bad: str) -> None:
    with pytest.raises(BadRequest) as err:
        parse_label_selector(bad)
    assert err.value.code == 400
    assert "unable to parse requirement" in err.value.message


def test_label_selector_object_form() -> None:
    sel = selector_from_label_selector(
        {
            "matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod"]}],
        }
    )
    assert sel.matches(LABELS)
    assert not sel.matches({"app": "web", "env": "dev"})
    with pytest.raises(SelectorError):
        selector_from_label_selector({"matchExpressions": [{"key": "a", "operator": "Near"}]})


SUPPORTED = frozenset({"metadata.name", "metadata.namespace", "status.phase"})


@pytest.mark.parametrize(
    ("selector", "matches"),
    [
        ("metadata.name=a", True),
        ("metadata.name==a", True),
        ("metadata.name!=a", False),
        ("metadata.name=a,status.phase=Active", True),
        ("status.phase=Terminating", False),
        (r"metadata.namespace=x\,y", False),
    ],
)
def test_field_selector_semantics(selector: str, matches: bool) -> None:
    fields = {"metadata.name": "a", "metadata.namespace": "default", "status.phase": "Active"}
    assert parse_field_selector(selector, SUPPORTED).matches(fields) is matches


def test_field_selector_escapes() -> None:
    sel = parse_field_selector(r"metadata.name=a\,b\=c", SUPPORTED)
    assert sel.matches({"metadata.name": "a,b=c"})
    assert sel.exact("metadata.name") == "a,b=c"


def test_unsupported_field_is_refused_as_kube_words_it() -> None:
    with pytest.raises(BadRequest) as err:
        parse_field_selector("spec.color=blue", SUPPORTED)
    assert err.value.message == "field label not supported: spec.color"
