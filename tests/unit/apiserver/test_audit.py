"""The audit log rotates by size and keeps its files private."""

from __future__ import annotations

import datetime as dt
import json
import stat
from pathlib import Path

from arges.apiserver.audit import AuditLog, ObjectRef


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
