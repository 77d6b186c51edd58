"""The audit log rotates by size and keeps its files private."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import stat
from pathlib import Path

import pytest

from arges.apiserver.audit import AuditLog, ObjectRef, Trail
from arges.apiserver.http.incoming import LocalRequest


def test_the_log_rotates_keeping_a_bounded_number_of_private_files(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit" / "audit.log", max_bytes=2000, backups=2)
    ref = ObjectRef("servers", None, "s", "metal.arges.dev", "v1alpha1", "status")
    for i in range(50):
        log.record(
            method="PATCH" if i % 2 else "DELETE",
            uri=f"/apis/metal.arges.dev/v1alpha1/servers/s{i}/status",
            ref=ref if i % 2 else ObjectRef("servers", None, None, "metal.arges.dev", "v1", None),
            authenticated=True,
            user_agent="arges",
            source="127.0.0.1",
            code=200,
            received=dt.datetime.now(dt.UTC),
        )
    log.close()
    files = sorted(p.name for p in (tmp_path / "audit").iterdir())
    assert files == ["audit.log", "audit.log.1", "audit.log.2"]
    for name in files:
        path = tmp_path / "audit" / name
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert path.stat().st_size <= 2000
    last = json.loads((tmp_path / "audit" / "audit.log").read_text().splitlines()[-1])
    assert last["verb"] == "patch" and last["objectRef"]["subresource"] == "status"
    assert last["requestURI"].endswith("/s49/status")
    first = json.loads((tmp_path / "audit" / "audit.log.2").read_text().splitlines()[0])
    assert first["verb"] in ("patch", "deletecollection")


def test_a_line_that_cannot_be_written_is_logged_and_the_next_is_written(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log = AuditLog(tmp_path / "audit" / "audit.log")
    ref = ObjectRef("servers", None, "s", "metal.arges.dev", "v1alpha1", None)
    event = {
        "method": "PATCH",
        "uri": "/apis/metal.arges.dev/v1alpha1/servers/s",
        "ref": ref,
        "authenticated": True,
        "user_agent": "arges/é",
        "source": "127.0.0.1",
        "code": 200,
        "received": dt.datetime.now(dt.UTC),
    }
    log.record(**event)
    written = log._file.stream
    # Every write fails on /dev/full, as on a full disk.
    full = Path("/dev/full").open("w")  # noqa: SIM115
    log._file.stream = full
    log.record(**event)
    assert "cannot write the audit log" in caplog.text and "No space left" in caplog.text
    log._file.stream = written
    with contextlib.suppress(OSError):  # what it still holds cannot be written either
        full.close()
    log.record(**event)
    log.close()
    lines = (tmp_path / "audit" / "audit.log").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2 and json.loads(lines[1])["userAgent"] == "arges/é"


@pytest.mark.parametrize(
    ("path", "params", "uri"),
    [
        ("/api/v1/namespaces/default/configmaps/c", {}, "/api/v1/namespaces/default/configmaps/c"),
        (
            "/api/v1/namespaces/default/configmaps/a b",
            {},
            "/api/v1/namespaces/default/configmaps/a%20b",
        ),
        (
            "/api/v1/namespaces/default/configmaps",
            {"dryRun": "All"},
            "/api/v1/namespaces/default/configmaps?dryRun=All",
        ),
    ],
    ids=["plain", "quoted", "with a query"],
)
def test_a_local_write_is_logged_with_its_uri_and_microsecond_times(
    tmp_path: Path, path: str, params: dict[str, str], uri: str
) -> None:
    log = AuditLog(tmp_path / "audit" / "audit.log")
    request = LocalRequest("POST", path, params, {"User-Agent": "arges/v0"})
    received = dt.datetime(2026, 12, 7, 6, 5, 4, 7, tzinfo=dt.UTC)
    log.request(request, Trail(authenticated=True), 201, received)
    log.close()
    [line] = (tmp_path / "audit" / "audit.log").read_text().splitlines()
    event = json.loads(line)
    assert event["requestURI"] == uri
    # MicroTime, as kube-apiserver writes it: six digits of fraction, always.
    assert event["requestReceivedTimestamp"] == "2026-12-07T06:05:04.000007Z"
    stage = dt.datetime.strptime(event["stageTimestamp"], "%Y-%m-%dT%H:%M:%S.%fZ")
    assert stage.replace(tzinfo=dt.UTC) >= received
