from arges.controllers import clustermemo
from arges.controllers.clustermemo import Memo
from arges.talos.secrets import generate
from arges.talos.talosconfig import credentials, talosconfig


def test_memo_keeps_the_most_recently_used_values() -> None:
    memo: Memo[str] = Memo(2)
    made: list[str] = []

    def make(value: str) -> str:
        made.append(value)
        return value

    assert memo.get("a", lambda: make("A")) == "A"
    assert memo.get("b", lambda: make("B")) == "B"
    assert memo.get("a", lambda: make("A2")) == "A", "kept"
    memo.get("c", lambda: make("C"))
    assert memo.get("a", lambda: make("A3")) == "A", "recently used, so kept"
    assert memo.get("b", lambda: make("B2")) == "B2", "least recently used went"
    assert made == ["A", "B", "C", "B2"]


def test_talosconfig_readings_match_the_text() -> None:
    bundle = generate()
    text = talosconfig(bundle, "demo", ["10.0.0.5", "10.0.0.6"])
    assert clustermemo.endpoints(text) == ("10.0.0.5", "10.0.0.6")
    assert clustermemo.client_credentials(text) == credentials(text)
    assert clustermemo.bundle(bundle.to_yaml()) == bundle
