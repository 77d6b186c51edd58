"""Secrets at rest through the whole API server: written by clients, unreadable on disk,
still readable after ``arges secrets rotate-key``."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

from click.testing import CliRunner

from arges.cli.main import main
from tests.integration.conftest import Api, api_session, start_server

SECRETS = "/api/v1/namespaces/default/secrets"
VALUE = "the-etcd-ca-private-key-of-prod"


def raw_store(data: Path) -> bytes:
    return b"".join(
        (data / name).read_bytes()
        for name in ("state.db", "state.db-wal")
        if (data / name).exists()
    )


async def test_secrets_are_encrypted_at_rest_and_survive_a_key_rotation(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = await start_server(data)
    token = (data / "pki" / "admin.token").read_text().strip()
    async with api_session(data) as session:
        api = Api(session, server.url, token)
        for i in range(3):
            body = {
                "metadata": {"name": f"s{i}"},
                "data": {"key": base64.b64encode(f"{VALUE}-{i}".encode()).decode()},
            }
            status, created = await api.post(SECRETS, body)
            assert status == 201, created
        status, updated = await api.patch(f"{SECRETS}/s0", {"stringData": {"more": VALUE}})
        assert status == 200, updated
    raw = raw_store(data)
    assert VALUE.encode() not in raw and base64.b64encode(VALUE.encode())[:20] not in raw
    assert b"k8s:enc:aesgcm:v1:key1:" in raw
    for name in ("state.db", "state.db-wal", "state.db-shm", "pki/encryption-config.yaml"):
        assert stat.S_IMODE((data / name).stat().st_mode) == 0o600, name
    assert stat.S_IMODE(data.stat().st_mode) == 0o700

    runner = CliRunner()
    refused = runner.invoke(main, ["secrets", "rotate-key", "--data-dir", str(data)])
    assert refused.exit_code != 0 and "in use by another process" in refused.output
    await server.stop()
    rotated = runner.invoke(main, ["secrets", "rotate-key", "--data-dir", str(data)])
    assert rotated.exit_code == 0, rotated.output
    assert "new key key2: re-encrypted 3 Secret(s)" in rotated.output
    raw = raw_store(data)
    assert b"aesgcm:v1:key2:" in raw and b"aesgcm:v1:key1:" not in raw

    server = await start_server(data)
    try:
        async with api_session(data) as session:
            api = Api(session, server.url, token)
            for i in range(3):
                status, got = await api.get(f"{SECRETS}/s{i}")
                assert status == 200
                assert base64.b64decode(got["data"]["key"]).decode() == f"{VALUE}-{i}"
            status, got = await api.get(f"{SECRETS}/s0")
            assert base64.b64decode(got["data"]["more"]).decode() == VALUE
    finally:
        await server.stop()


async def test_writes_are_audited_without_their_bodies(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = await start_server(data)
    token = (data / "pki" / "admin.token").read_text().strip()
    try:
        async with api_session(data) as session:
            api = Api(session, server.url, token)
            body = {"metadata": {"generateName": "db-"}, "stringData": {"password": VALUE}}
            status, created = await api.post(SECRETS, body, headers={"User-Agent": "tester/1"})
            assert status == 201
            name = created["metadata"]["name"]
            await api.patch(f"{SECRETS}/{name}", {"stringData": {"password": VALUE + "2"}})
            await api.get(f"{SECRETS}/{name}")
            await api.delete(f"{SECRETS}/{name}")
            anonymous = Api(session, server.url, "wrong-token")
            status, _ = await anonymous.post(SECRETS, body)
            assert status == 401
    finally:
        await server.stop()
    log = data / "audit" / "audit.log"
    text = log.read_text()
    assert VALUE not in text and "password" not in text
    events = [json.loads(line) for line in text.splitlines()]
    secrets = [e for e in events if e["requestURI"].startswith(SECRETS)]
    assert [
        (e["verb"], e.get("objectRef", {}).get("name"), e["responseStatus"]["code"])
        for e in secrets
    ] == [
        ("create", name, 201),
        ("patch", name, 200),
        ("delete", name, 200),
        ("create", None, 401),
    ], "reads are not audited"
    assert secrets[0]["user"]["username"] == "arges-admin" and secrets[0]["userAgent"] == "tester/1"
    assert (
        secrets[0]["sourceIPs"] == ["127.0.0.1"]
        and secrets[0]["objectRef"]["namespace"] == "default"
    )
    assert secrets[-1]["user"]["username"] == "system:anonymous"
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    assert stat.S_IMODE(log.parent.stat().st_mode) == 0o700
