"""Secrets at rest through the whole API server: written by clients, unreadable on disk,
still readable after ``arges secrets rotate-key``."""

from __future__ import annotations

import base64
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
