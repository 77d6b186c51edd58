"""/metrics: what a Prometheus scraping Arges sees while servers boot, register and wipe."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from arges.kube.resources import SERVERS
from arges.plane import ManagementPlane, PlaneConfig
from tests.integration.clusters.conftest import Rack
from tests.integration.conftest import api_session, eventually
from tests.integration.fleet.conftest import http_get, parse, scrape, value


async def test_a_racked_server_shows_in_every_family(rack: Rack) -> None:
    sim = await rack.add()
    base = rack.plane.boot.http.base_url if rack.plane.boot else ""
    # A UEFI machine asks what to boot, and fetches the agent's kernel.
    status, _ = await sim.ipxe(platform="efi")
    assert status == 200
    status, kernel = await http_get(rack.session, f"{base}/env/agent/kernel")
    assert status == 200

    samples = await scrape(rack)

    assert value(samples, "arges_servers", state="discovered") == 1
    assert value(samples, "arges_servers", state="accepted") == 1
    assert value(samples, "arges_servers", state="clean") == 1
    assert value(samples, "arges_servers", state="allocated") == 0
    assert value(samples, "arges_boot_requests_total", decision="agent", firmware="uefi") == 1
    # The simulated firmware does not say which it is.
    assert value(samples, "arges_boot_requests_total", decision="agent", firmware="unknown") >= 1
    assert value(samples, "arges_http_asset_bytes_total", asset="kernel") == len(kernel)
    assert (
        value(
            samples,
            "arges_power_operation_duration_seconds_count",
            driver="fake",
            action="off",
            result="ok",
        )
        >= 1
    )
    assert value(samples, "arges_reconcile_total", controller="power", result="success") >= 1
    assert "arges_reconcile_duration_seconds_bucket" in {name for name, _ in samples}
    assert (
        value(
            samples,
            "arges_apiserver_requests_total",
            verb="create",
            group="metal.arges.dev",
            resource="servers",
            code="201",
        )
        == 1
    )
    # The controllers' watches are open while they run.
    assert value(samples, "arges_apiserver_watches", group="metal.arges.dev", resource="servers")
    depth = {labels for name, labels in samples if name == "arges_workqueue_depth"}
    assert (("controller", "power"),) in depth


async def test_request_labels_never_come_from_the_path(rack: Rack) -> None:
    api = rack.plane.api
    assert api is not None
    headers = {"Authorization": f"Bearer {api.token}"}
    async with api_session(api.data_dir) as session:
        for junk in ("made-up-1", "made-up-2"):
            status, _ = await http_get(
                session, f"{api.url}/apis/metal.arges.dev/v1alpha1/{junk}", headers=headers
            )
            assert status == 404
    samples = await scrape(rack)
    resources = {dict(labels).get("resource") for name, labels in samples}
    assert "unknown" in resources
    assert not {"made-up-1", "made-up-2"} & resources


async def test_metrics_need_the_token_on_the_api_port(rack: Rack) -> None:
    api = rack.plane.api
    assert api is not None
    async with api_session(api.data_dir) as session:
        status, _ = await http_get(session, f"{api.url}/metrics")
        assert status == 401
        status, _ = await http_get(
            session, f"{api.url}/metrics", headers={"Authorization": "Bearer wrong"}
        )
        assert status == 401


async def test_metrics_port_serves_plain_http_and_each_plane_counts_its_own(
    tmp_path: Path, rack: Rack
) -> None:
    plane = ManagementPlane(PlaneConfig(data_dir=tmp_path / "other", api_port=0, metrics_port=0))
    await plane.start()
    try:
        assert plane.kube is not None and plane.metrics_port is not None
        await plane.kube.create(SERVERS, {"metadata": {"name": "only-here"}})
        url = f"http://127.0.0.1:{plane.metrics_port.port}/metrics"

        async def counted() -> float:
            async with aiohttp.ClientSession() as session:
                status, body = await http_get(session, url)
            assert status == 200
            return value(parse(body.decode()), "arges_servers", state="discovered")

        assert await eventually(counted) == 1
        # The rack's plane, in the same process, has its own registry and no such server.
        assert value(await scrape(rack), "arges_servers", state="discovered") == 0
    finally:
        await plane.stop()
