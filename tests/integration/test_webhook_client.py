"""Calling webhooks: a kept-alive connection the webhook server dropped is not a failure."""

from __future__ import annotations

import ssl
from pathlib import Path

from aiohttp import web

from arges.apiserver.webhookclient import ClientConfig, WebhookClient
from tests.integration.webhook_server import make_pki


async def test_a_connection_the_webhook_dropped_while_idle_is_replaced(tmp_path: Path) -> None:
    # Found running Cluster API's managers: their webhook servers close idle connections,
    # and a call on such a connection failed closed with a broken pipe. This server drops
    # every connection at its second request, without answering it.
    pki = make_pki()
    (tmp_path / "tls.crt").write_bytes(pki.cert_pem)
    (tmp_path / "tls.key").write_bytes(pki.key_pem)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(tmp_path / "tls.crt", tmp_path / "tls.key")
    # Keyed by the transport itself, not id(): a closed transport's id can be reused by the
    # next connection's, which then looked like a second request on a kept-alive one.
    seen: dict[object, int] = {}

    async def answer(request: web.Request) -> web.Response:
        transport = request.transport
        assert transport is not None
        seen[transport] = seen.get(transport, 0) + 1
        if seen[transport] > 1:
            transport.abort()
        return web.json_response({"answered": True})

    app = web.Application()
    app.router.add_post("/hook", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    client = WebhookClient()
    config = ClientConfig(url=f"https://127.0.0.1:{port}/hook", ca_bundle=pki.ca_pem)
    try:
        for _ in range(3):
            assert await client.post(config, {"kind": "AdmissionReview"}, 5) == {"answered": True}
    finally:
        await client.close()
        await runner.cleanup()
    assert len(seen) >= 2, "the dropped connection was replaced by a new one"
