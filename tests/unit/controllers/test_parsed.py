from typing import Any, ClassVar, Self

from arges.api.server import Server
from arges.controllers.parsed import parsed
from arges.controllers.runtime import Cache
from arges.kube.resources import SERVERS


def server(name: str, rv: str, *, accepted: bool = False) -> dict[str, Any]:
    return {
        "apiVersion": "metal.arges.dev/v1alpha1",
        "kind": "Server",
        "metadata": {"name": name, "resourceVersion": rv},
        "spec": {"accepted": accepted},
    }


def test_each_version_is_parsed_once_and_shared_by_every_caller() -> None:
    cache = Cache()
    cache.apply(SERVERS, "ADDED", server("a", "1"))
    first = parsed(cache, SERVERS, Server).get("a")
    again = parsed(cache, SERVERS, Server).all()["a"]
    assert first is not None and first is again
    assert first.spec.accepted is False


def test_a_new_version_is_parsed_anew() -> None:
    cache = Cache()
    cache.apply(SERVERS, "ADDED", server("a", "1"))
    before = parsed(cache, SERVERS, Server).get("a")
    cache.apply(SERVERS, "MODIFIED", server("a", "2", accepted=True))
    after = parsed(cache, SERVERS, Server).get("a")
    assert before is not None and after is not None
    assert after.spec.accepted is True and before.spec.accepted is False


def test_deleted_objects_leave_the_view() -> None:
    cache = Cache()
    for name in ("a", "b"):
        cache.apply(SERVERS, "ADDED", server(name, "1"))
    view = parsed(cache, SERVERS, Server)
    assert sorted(view.all()) == ["a", "b"]
    cache.apply(SERVERS, "DELETED", server("a", "1"))
    assert sorted(view.all()) == ["b"]
    assert view.get("a") is None


def test_caches_do_not_share_views() -> None:
    one, two = Cache(), Cache()
    one.apply(SERVERS, "ADDED", server("a", "1"))
    assert parsed(two, SERVERS, Server).all() == {}
    assert list(parsed(one, SERVERS, Server).all()) == ["a"]


class CountedServer(Server):
    """A Server model that counts its parses."""

    parses: ClassVar[list[str]] = []

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Self:
        cls.parses.append(body["metadata"]["name"])
        return super().from_json(body)


def test_a_lazy_mapping_parses_only_what_is_looked_up() -> None:
    cache = Cache()
    for name in ("a", "b", "c"):
        cache.apply(SERVERS, "ADDED", server(name, "1"))
    CountedServer.parses.clear()
    servers = parsed(cache, SERVERS, CountedServer).lazy()
    assert sorted(servers) == ["a", "b", "c"] and len(servers) == 3
    assert CountedServer.parses == []
    got = servers.get("b")
    assert got is not None and got.name == "b"
    assert servers.get("missing") is None and "missing" not in servers
    assert CountedServer.parses == ["b"]


def test_a_lazy_mapping_keeps_the_version_first_looked_up() -> None:
    cache = Cache()
    cache.apply(SERVERS, "ADDED", server("a", "1"))
    servers = parsed(cache, SERVERS, Server).lazy()
    assert servers["a"].spec.accepted is False
    cache.apply(SERVERS, "MODIFIED", server("a", "2", accepted=True))
    cache.apply(SERVERS, "ADDED", server("b", "1"))
    # One reconcile sees one version of an object it read; new objects show up in its keys.
    assert servers["a"].spec.accepted is False
    assert sorted(servers) == ["a", "b"]
    assert parsed(cache, SERVERS, Server).lazy()["a"].spec.accepted is True
