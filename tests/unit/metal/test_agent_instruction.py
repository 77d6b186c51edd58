import pytest

from arges.api.binding import ServerBinding
from arges.metal.agent import instruct
from tests.unit.metal.conftest import server

BINDING = ServerBinding.from_json(
    {
        "metadata": {"name": "s"},
        "spec": {
            "serverRef": {"name": "s"},
            "consumerRef": {"apiVersion": "v1", "kind": "X", "name": "x"},
        },
    }
)
BMC = {"bmc": {"address": "10.0.0.9"}}


@pytest.mark.parametrize(
    ("srv", "binding", "action"),
    [
        (server("s", accepted=False, clean=False), None, "wait"),
        (server("s", accepted=False, clean=True), None, "wait"),
        (server("s", clean=False), BINDING, "reboot"),
        (server("s", clean=True), BINDING, "reboot"),
        (server("s", clean=False), None, "wipe"),
        (server("s", clean=None), None, "wipe"),
        (server("s", clean=True, **BMC), None, "poweroff"),
        (server("s", clean=True), None, "wait"),
    ],
)
def test_instruction_table(srv, binding, action) -> None:
    got = instruct(srv, binding, wipe_mode="full")
    assert got.action == action and got.reason
    if action == "wipe":
        assert got.wipe_mode == "full"
