"""The dashboard in a real browser: what a person sees and does, on a rack of simulated servers.

Each step saves a screenshot under the test's ``tmp_path/screenshots``.
"""

from __future__ import annotations

import pytest

from arges.kube.resources import SERVERS
from arges.ui.auth import viewer_token
from tests.integration.clusters.conftest import Rack, all_in, create_cluster
from tests.integration.conftest import eventually
from tests.integration.fleet.browser import Browser

pytestmark = pytest.mark.slow


async def sign_in(browser: Browser, rack: Rack, token: str, path: str = "/ui") -> None:
    api = rack.plane.api
    assert api is not None
    await browser.get(f"{api.url}{path}")
    await browser.until(lambda: "/ui/login" in browser.url, "the sign-in page")
    await browser.type("#token", token)
    await browser.click("#sign-in")
    await browser.until(lambda: "/ui/login" not in browser.url, "signed in")


async def test_a_person_watches_and_runs_the_fleet(rack: Rack, browser: Browser) -> None:
    api = rack.plane.api
    assert api is not None
    servers = [await rack.add() for _ in range(3)]
    await rack.kube.patch(SERVERS, servers[2].uuid, {"metadata": {"labels": {"rack": "b"}}})
    # A machine that registered but nobody has accepted yet.
    await rack.kube.create(SERVERS, {"metadata": {"name": "5a5a0000-0000-4000-8000-0000000000ff"}})
    newcomer = "5a5a0000-0000-4000-8000-0000000000ff"

    # Signing in: a wrong token is refused, the admin token lands on the page asked for.
    await browser.get(f"{api.url}/ui/servers")
    await browser.until(lambda: "/ui/login" in browser.url, "the sign-in page")
    await browser.type("#token", "not-the-token")
    await browser.click("#sign-in")
    assert "not valid" in await browser.until_text("#login-error", "not valid")
    await browser.screenshot("01-sign-in-refused")
    await browser.type("#token", api.token)
    await browser.click("#sign-in")
    await browser.until(lambda: browser.url.endswith("/ui/servers"), "the servers page")

    # The servers table: one row per server, filterable.
    await browser.until_text("#shown", "4 of 4")
    rows = await browser.texts("#servers tbody tr")
    assert len(rows) == 4
    assert sum("clean" not in r for r in rows) == 4  # badges say yes/no, not state names
    await browser.screenshot("02-servers")
    await browser.select("#filter-state", "unaccepted")
    await browser.click("#filters button")
    await browser.until_text("#shown", "1 of 4")
    assert newcomer in await browser.text("#servers tbody")
    await browser.get(f"{api.url}/ui/servers?label=rack%3Db")
    await browser.until_text("#shown", "1 of 4")
    assert servers[2].uuid in await browser.text("#servers tbody")
    await browser.get(f"{api.url}/ui/servers?label=%3D%3Dbad")
    assert "Filter ignored" in await browser.text("#filter-problem")

    # Live: a change made through the API shows without reloading the page.
    await browser.get(f"{api.url}/ui/servers")
    await browser.until(
        lambda: browser.driver.execute_script("return document.body.dataset.stream") == "open",
        "the live stream",
    )
    await browser.script("window.notReloaded = true;")
    row = f'#servers tr[data-server="{servers[0].uuid}"] .notes'
    assert "cordoned" not in await browser.text(row)
    await rack.kube.patch(SERVERS, servers[0].uuid, {"spec": {"cordoned": True}})
    await browser.until_text(row, "cordoned")
    assert await browser.script("return window.notReloaded === true;")
    await browser.screenshot("03-servers-live-cordoned")

    # The overview counts servers by state, and shows Events and boots.
    await browser.get(f"{api.url}/ui")
    counts = await browser.text("#counts")
    assert "4\ndiscovered" in counts and "1\nnot accepted" in counts and "1\ncordoned" in counts
    assert "Registered" in await browser.text("#recent-events")
    await browser.screenshot("04-overview")

    # A server's page: inventory, BMC without credentials, Events; accepting it.
    await browser.get(f"{api.url}/ui/servers/{servers[1].uuid}")
    inventory = await browser.text("#inventory")
    assert "Sim Server" in inventory and "4 cores" in inventory
    bmc = await browser.text("#bmc")
    assert "fake" in bmc and "Secret default/sim-bmc" in bmc and "BMCAnswers" in bmc
    source = browser.source
    assert api.token not in source
    assert source.lower().count("secret") == source.count("Secret default/sim-bmc")
    assert "Wiped" in await browser.text("#events")
    await browser.screenshot("05-server")

    await browser.get(f"{api.url}/ui/servers/{newcomer}")
    await browser.click('button[data-action="accept"]')
    assert "wiped" in await browser.until_text("#explain", "Nothing destructive")
    await browser.screenshot("06-confirm-accept")
    await browser.click("#confirm")
    await browser.until_text("#done", "Accepted")
    await browser.until_text("#fact-accepted", "yes")
    await browser.until_text("#events", "Accepted")
    await browser.screenshot("07-server-accepted")

    # Clusters: members appear and turn Ready while the page is open.
    await browser.get(f"{api.url}/ui/clusters")
    assert "No TalosClusters" in await browser.text("main")
    await create_cluster(rack.kube, workers=1)
    await browser.until_text("main", "default/demo")
    await eventually(lambda: all_in(rack, "Ready", 2), timeout=60)
    await browser.until_text("main", "2 of 2 servers ready", timeout=30)

    async def two_rows() -> bool:
        # The page is replaced live as the cluster changes: read it until it settles.
        return len(await browser.texts(".members tbody tr")) == 2

    await eventually(two_rows, timeout=30, what="one row per member")
    await browser.screenshot("08-clusters")

    # Environments: assets and their checksums.
    await browser.get(f"{api.url}/ui/environments")
    agent = await browser.text('[data-environment="agent"]')
    assert "ready" in agent and "cached, checksum verified" in agent
    await browser.screenshot("09-environments")

    # The read-only token looks but cannot act.
    await browser.click("header form button")
    # Signed out once the answer has taken the browser to the sign-in page; navigating on
    # before that would abort the sign-out and keep the admin session.
    await browser.until(lambda: "/ui/login" in browser.url, "signed out")
    await sign_in(browser, rack, viewer_token(api.data_dir / "pki"), f"/ui/servers/{newcomer}")
    assert await browser.text("#role") == "viewer"
    assert not await browser.texts("#actions button")
    await browser.screenshot("10-viewer")
