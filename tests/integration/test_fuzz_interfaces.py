"""Bounded fuzz runs of the plane's HTTP interfaces (#23), each a few seconds.

Hypothesis generates bodies, paths and query strings (derandomized: the same inputs every
run, so a failure reproduces). Each run asserts what a hostile client must never get: a 5xx,
an unhandled exception in the log, a file from outside the served roots; and that the
service still answers correctly afterwards.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from arges.access.guard import BootGuard
from arges.access.limits import RateLimiter
from arges.boot.decider import KubeBootDecider
from arges.boot.http import BootHttp, HttpConfig
from arges.discovery.api import DiscoveryApi, DiscoveryConfig
from arges.metadata.service import MetadataService, talos_patcher
from arges.plane import ManagementPlane
from arges.wire import REGISTER_PATH, REPORT_PATH
from tests.integration.conftest import WIDGETS, Cluster
from tests.integration.discovery.test_discovery import registration

API_EXAMPLES = 300
AGENT_EXAMPLES = 200
BOOT_EXAMPLES = 300


def fuzz(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
META_KEYS = [
    "name",
    "generateName",
    "namespace",
    "labels",
    "annotations",
    "finalizers",
    "ownerReferences",
    "generation",
    "resourceVersion",
    "uid",
    "creationTimestamp",
    "deletionTimestamp",
    "managedFields",
]
names = st.one_of(st.sampled_from(["fz", "fz-1", "a.b"]), st.text(max_size=12))
metadata = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {"name": names}, optional={k: json_values for k in META_KEYS if k != "name"}
    ),
)


def _bad_log(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        f"{r.name}: {r.getMessage()}"
        for r in caplog.records
        if r.levelno >= logging.ERROR or r.exc_info
    ]


@fuzz(API_EXAMPLES)
@given(
    target=st.sampled_from(
        [
            ("/api/v1/namespaces/default/secrets", "v1", "Secret", "data"),
            ("/api/v1/namespaces/default/configmaps", "v1", "ConfigMap", "data"),
            (WIDGETS, "example.arges.dev/v1", "Widget", "spec"),
        ]
    ),
    meta=metadata,
    content=json_values,
    method=st.sampled_from(["POST", "PUT", "PATCH", "APPLY"]),
    as_yaml=st.booleans(),
)
async def test_api_bodies(
    widgets: Cluster,
    caplog: pytest.LogCaptureFixture,
    target: tuple[str, str, str, str],
    meta: Any,
    content: Any,
    method: str,
    as_yaml: bool,
) -> None:
    caplog.set_level(logging.WARNING)
    path, api_version, kind, field = target
    body = {"apiVersion": api_version, "kind": kind, "metadata": meta, field: content}
    raw = (yaml.safe_dump(body) if as_yaml else json.dumps(body)).encode()
    ctype = "application/yaml" if as_yaml else "application/json"
    params = None
    if method == "PATCH":
        ctype = "application/merge-patch+json"
        raw = json.dumps(body).encode()
    elif method == "APPLY":
        method, ctype, params = "PATCH", "application/apply-patch+yaml", {"fieldManager": "fz"}
    url = path if method == "POST" else f"{path}/fz"
    status, answer = await widgets.api.request(method, url, raw, content_type=ctype, params=params)
    assert status < 500, answer
    assert _bad_log(caplog) == []
    assert (await widgets.api.get(f"{WIDGETS}/none"))[0] == 404, "the server still answers"


@pytest.fixture
async def boot(plane: ManagementPlane, tmp_path: Path) -> AsyncIterator[tuple[str, bytes, str]]:
    root = tmp_path / "tftp"
    root.mkdir()
    content = b"EFI" * 100
    (root / "ipxe.efi").write_bytes(content)
    (tmp_path / "secret.txt").write_bytes(b"outside the root")
    assert plane.kube is not None
    # No rate limit: the fuzzing client asks far faster than a machine does.
    guard = BootGuard(plane.kube, limiter=RateLimiter(rate=1e9, burst=1e9))
    routes = [
        *MetadataService(plane.kube, talos_patcher, guard).routes(),
        *DiscoveryApi(plane.kube, DiscoveryConfig(), guard).routes(),
    ]
    http = BootHttp(
        HttpConfig("127.0.0.1", 0, tftp_root=root),
        KubeBootDecider(plane.kube, guard),
        plane.assets,
        routes,
        admission=guard,
    )
    await http.start()
    # The credential /ipxe would give the registration's UUID booting the agent here (signed:
    # the server does not exist yet), so the fuzzed bodies get past it to the parsing.
    uuid = registration()["uuid"].lower()
    token = guard.signer.sign("agent", uuid, "127.0.0.1", dt.datetime.now(dt.UTC))
    yield f"http://127.0.0.1:{http.port}", content, token
    await http.stop()


def _mutations() -> st.SearchStrategy[Any]:
    """A valid registration with one field (top level or in the inventory) replaced."""
    fields = ["uuid", "hardware", "hostname", "addresses", "bootMac", "phase", "wiped"]
    sections = ["system", "compute", "memory", "storage", "network"]
    top = st.tuples(st.sampled_from(fields), json_values).map(
        lambda kv: registration(**{kv[0]: kv[1]})
    )

    def inner(kv: tuple[str, Any]) -> dict[str, Any]:
        body = registration()
        body["hardware"][kv[0]] = kv[1]
        return body

    return st.one_of(top, st.tuples(st.sampled_from(sections), json_values).map(inner))


@fuzz(AGENT_EXAMPLES)
@given(
    path=st.sampled_from([REGISTER_PATH, REPORT_PATH]),
    body=st.one_of(
        json_values,
        _mutations(),
        st.fixed_dictionaries(
            {"uuid": st.just(registration()["uuid"]), "phase": st.text(max_size=12)},
            optional={"wiped": json_values, "message": json_values},
        ),
    ),
    raw=st.one_of(st.none(), st.binary(max_size=64)),
)
async def test_agent_json(
    boot: tuple[str, bytes, str],
    caplog: pytest.LogCaptureFixture,
    path: str,
    body: Any,
    raw: bytes | None,
) -> None:
    caplog.set_level(logging.WARNING)
    base, _, token = boot
    data = raw if raw is not None else json.dumps(body).encode()
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(base + path, data=data, headers=headers) as resp,
    ):
        answer = await resp.text()
        # 403: a body naming another UUID than the credential's.
        assert resp.status in (200, 400, 403, 409, 413), answer
    assert _bad_log(caplog) == []
    await _still_answers(base)


async def _still_answers(base: str) -> None:
    async with aiohttp.ClientSession() as session, session.get(base + "/boot.ipxe") as resp:
        assert resp.status == 200 and "#!ipxe" in await resp.text()


path_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30)


@fuzz(BOOT_EXAMPLES)
@given(
    prefix=st.sampled_from(["/tftp/", "/env/", "/ipxe", "/configdata", "/boot.ipxe", "/"]),
    tail=st.one_of(
        path_text,
        st.sampled_from(["../secret.txt", "..%2fsecret.txt", "%2e%2e/secret.txt", "ipxe.efi"]),
    ),
    query=st.dictionaries(
        st.sampled_from(["uuid", "mac", "arch", "platform", "x"]), path_text, max_size=4
    ),
)
async def test_boot_http_paths_and_queries(
    boot: tuple[str, bytes, str],
    caplog: pytest.LogCaptureFixture,
    prefix: str,
    tail: str,
    query: dict[str, str],
) -> None:
    caplog.set_level(logging.WARNING)
    base, served, _ = boot
    qs = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in query.items())
    url = base + prefix + quote(tail, safe="/%") + ("?" + qs if qs else "")
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, timeout=aiohttp.ClientTimeout(total=20)) as resp,
    ):
        body = await resp.read()
        assert resp.status < 500 or (prefix in ("/ipxe", "/configdata") and resp.status == 503), (
            resp.status,
            body[:200],
        )
        assert b"outside the root" not in body
        if prefix == "/tftp/" and resp.status == 200:
            assert body == served
    assert _bad_log(caplog) == []
    await _still_answers(base)
