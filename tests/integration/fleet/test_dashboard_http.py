"""The dashboard's rules, over plain HTTP: who may see and do what, and bad input."""

from __future__ import annotations

import datetime as dt
import random
import re
import ssl
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from arges.kube.resources import EVENTS, SERVERS
from arges.lab.plan import LabSpec, plan
from arges.lab.state import LabState, save_state
from arges.metal.requests import POWER_CYCLE_REQUESTED
from arges.ui.auth import viewer_token
from tests.integration.clusters.conftest import Rack
from tests.integration.conftest import eventually

pytestmark = pytest.mark.slow


class Client:
    """A browser-like HTTP client: keeps cookies, reads forms' anti-forgery tokens."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base

    async def get(self, path: str, **kw: Any) -> tuple[int, str, Any]:
        async with self.session.get(self.base + path, allow_redirects=False, **kw) as resp:
            return resp.status, await resp.text(), resp.headers

    async def post(self, path: str, data: dict[str, str]) -> tuple[int, str, Any]:
        async with self.session.post(self.base + path, data=data, allow_redirects=False) as resp:
            return resp.status, await resp.text(), resp.headers

    async def sign_in(self, token: str, after: str = "") -> tuple[int, str, Any]:
        return await self.post("/ui/login", {"token": token, "next": after})

    async def csrf(self, path: str = "/ui") -> str:
        _, html, _ = await self.get(path)
        found = re.search(r'name="csrf" value="([^"]+)"', html)
        assert found, html
        return found.group(1)


@pytest.fixture
async def client(rack: Rack) -> AsyncIterator[Client]:
    api = rack.plane.api
    assert api is not None
    tls = ssl.create_default_context(cafile=str(api.data_dir / "pki" / "ca.crt"))
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=tls), cookie_jar=aiohttp.CookieJar(unsafe=True)
    ) as session:
        yield Client(session, api.url)


async def test_nothing_is_shown_before_signing_in(rack: Rack, client: Client) -> None:
    status, _, headers = await client.get("/ui/servers?state=clean")
    assert status == 303
    assert headers["Location"] == "/ui/login?next=/ui/servers?state%3Dclean"
    status, html, _ = await client.get("/ui/stream")
    assert status == 401 and "sign in again" in html
    status, _, _ = await client.get("/ui", headers={"X-Arges-Fragment": "1"})
    assert status == 401
    status, html, _ = await client.sign_in("wrong")
    assert status == 401 and "not valid" in html
    # The style sheet and script are served to anyone, from here only.
    status, css, headers = await client.get("/ui/static/app.css")
    assert status == 200 and headers["Content-Type"].startswith("text/css")
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    assert "http" not in css


async def test_signing_in_never_leaves_the_dashboard(rack: Rack, client: Client) -> None:
    api = rack.plane.api
    assert api is not None
    for evil in ("https://evil.example/", "//evil.example/ui", "/elsewhere"):
        status, _, headers = await client.sign_in(api.token, evil)
        assert (status, headers["Location"]) == (303, "/ui"), evil
    status, _, headers = await client.sign_in(api.token, "/ui/clusters")
    assert headers["Location"] == "/ui/clusters"
    cookie = headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "Secure" in cookie and "SameSite=Strict" in cookie
    assert api.token not in cookie


async def test_bad_requests_get_pages_that_say_why(rack: Rack, client: Client) -> None:
    api = rack.plane.api
    assert api is not None
    sim = await rack.add()
    await client.sign_in(api.token)
    csrf = await client.csrf()
    for path, status, words in [
        ("/ui/servers/no-such-server", 404, "There is no server no-such-server"),
        ("/ui/nowhere", 404, "There is no page /ui/nowhere"),
        ("/ui/servers/no-such-server/console", 404, "no console log"),
        ("/ui/static/admin.token", 404, "There is no file admin.token"),
    ]:
        got, html, _ = await client.get(path)
        assert got == status and words in html, path
    status, html, _ = await client.get("/ui/servers?state=bogus&label=%3D%3D")
    assert status == 200 and "Filter ignored" in html
    for path, data, status, words in [
        (f"/ui/servers/{sim.uuid}/cordon", {}, 403, "form has expired"),
        (f"/ui/servers/{sim.uuid}/explode", {"csrf": csrf}, 404, "no action"),
        (f"/ui/servers/{sim.uuid}/accept", {"csrf": csrf}, 409, "does not apply"),
        ("/ui/servers/no-such-server/cordon", {"csrf": csrf}, 404, "no server"),
    ]:
        got, html, _ = await client.post(path, data)
        assert got == status and words in html, path


async def test_actions_ask_first_then_happen(rack: Rack, client: Client) -> None:
    api = rack.plane.api
    assert api is not None
    sim = await rack.add()
    await client.sign_in(api.token)
    csrf = await client.csrf(f"/ui/servers/{sim.uuid}")
    status, html, _ = await client.post(f"/ui/servers/{sim.uuid}/power-cycle", {"csrf": csrf})
    assert status == 200 and "whatever runs on it stops at once" in html
    assert POWER_CYCLE_REQUESTED not in str(await rack.kube.get(SERVERS, sim.uuid))

    boots = len(sim.boots)
    status, _, headers = await client.post(
        f"/ui/servers/{sim.uuid}/power-cycle", {"csrf": csrf, "confirmed": "yes"}
    )
    assert (status, headers["Location"]) == (303, f"/ui/servers/{sim.uuid}?done=power-cycle")
    # The power controller carries it out: the machine boots again, then is clean and off.
    await eventually(lambda: len(sim.boots) > boots, timeout=20, what="a new boot")
    await eventually(lambda: rack.available(sim), timeout=30, what="back to available")
    events = await rack.kube.list(EVENTS, "default")
    cycled = [e for e in events if e["reason"] == "PowerCycle"]
    assert any("requested by a person" in e["message"] for e in cycled)


async def test_the_read_only_token_looks_but_cannot_act(rack: Rack, client: Client) -> None:
    api = rack.plane.api
    assert api is not None
    sim = await rack.add()
    token = viewer_token(api.data_dir / "pki")
    assert token != api.token
    status, _, _ = await client.sign_in(token)
    assert status == 303
    status, html, _ = await client.get(f"/ui/servers/{sim.uuid}")
    assert status == 200 and 'data-action="cordon"' not in html
    csrf = await client.csrf(f"/ui/servers/{sim.uuid}")
    status, html, _ = await client.post(
        f"/ui/servers/{sim.uuid}/cordon", {"csrf": csrf, "confirmed": "yes"}
    )
    assert status == 403 and "read-only" in html
    assert not (await rack.kube.get(SERVERS, sim.uuid))["spec"].get("cordoned")


async def test_a_lab_server_links_its_console_log(rack: Rack, client: Client) -> None:
    api = rack.plane.api
    assert api is not None
    sim = await rack.add()
    lab = api.data_dir / "lab"
    (planned,) = plan(LabSpec(servers=1), lab, [6230], random.Random(1))
    planned = planned.model_copy(update={"uuid": sim.uuid})
    state = LabState(
        created=dt.datetime.now(dt.UTC),
        network=LabSpec().network,
        site_dhcp=True,
        qemu="qemu-system-x86_64",
        servers=[planned],
    )
    lab.mkdir(parents=True, exist_ok=True)
    save_state(lab, state)
    planned.console_log.parent.mkdir(parents=True, exist_ok=True)
    planned.console_log.write_text("iPXE 1.21.1 -- Open Source Network Boot Firmware\n")
    await client.sign_in(api.token)
    status, html, _ = await client.get(f"/ui/servers/{sim.uuid}")
    assert status == 200 and f"/ui/servers/{sim.uuid}/console" in html
    status, text, headers = await client.get(f"/ui/servers/{sim.uuid}/console")
    assert status == 200 and "Open Source Network Boot Firmware" in text
    assert headers["Content-Type"].startswith("text/plain")
