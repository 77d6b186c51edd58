"""The agent's HTTP client: JSON requests to Arges, plain GETs, retries with backoff.

Built on :mod:`http.client` alone (``urllib.request`` would pull a dozen more modules into
the initramfs). Only ``http://`` is spoken, as iPXE fetched the agent itself over plain HTTP
on the same network. The one credential the agent holds is its boot's (``arges.token=``),
good for this boot of this server only and bound to its address; it goes in an
``Authorization: Bearer`` header and into no log line.
"""

from __future__ import annotations

import http.client
import json
import logging
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

from arges.errors import ArgesError
from arges.wire import REGISTER_PATH, REPORT_PATH, Instruction, Registration, Report

log = logging.getLogger("arges.agent")

TIMEOUT = 30.0
BACKOFF_START = 1.0
BACKOFF_CAP = 30.0


class HttpError(ArgesError):
    """A request that did not get a 200: ``status`` (0 when no answer came), ``message``
    (the server's ``error`` field when it sent one), ``retry_after`` in seconds if given."""

    def __init__(self, status: int, message: str, retry_after: float | None = None) -> None:
        super().__init__(f"HTTP {status}: {message}" if status else message)
        self.status = status
        self.message = message
        self.retry_after = retry_after


def request(
    url: str, body: dict[str, Any] | None = None, timeout: float = TIMEOUT, token: str = ""
) -> bytes:
    """GET ``url``, or POST ``body`` as JSON to it (with ``token`` as bearer credential when
    given); the response body on HTTP 200.

    Raises:
        HttpError: on any other status, a connection failure or a timeout.
        ValueError: for a URL that is not ``http://host[:port]/...``.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"{url!r} is not an http:// URL")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        if body is None:
            conn.request("GET", path, headers=headers)
        else:
            data = json.dumps(body).encode()
            headers |= {"Content-Type": "application/json", "Content-Length": str(len(data))}
            conn.request("POST", path, data, headers)
        resp = conn.getresponse()
        payload = resp.read()
    except (OSError, http.client.HTTPException) as exc:
        # The path without its query: a query may hold a credential (talos.config=).
        where = f"{parts.scheme}://{parts.netloc}{parts.path}"
        raise HttpError(0, f"{where}: {exc or type(exc).__name__}") from exc
    finally:
        conn.close()
    if resp.status != 200:
        raise HttpError(resp.status, _error_message(payload), _retry_after(resp))
    return payload


def _error_message(payload: bytes) -> str:
    try:
        data = json.loads(payload)
    except ValueError:
        return payload.decode(errors="replace").strip()[:500]
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        return str(data["error"])
    return str(data)[:500]


def _retry_after(resp: http.client.HTTPResponse) -> float | None:
    value = resp.getheader("Retry-After", "")
    return float(value) if value.isdigit() else None


def with_retries(
    what: str,
    attempt: Callable[[], Any],
    sleep: Callable[[float], None] = time.sleep,
    cap: float = BACKOFF_CAP,
) -> Any:
    """``attempt()`` until it succeeds: after each :class:`HttpError` log it (with the
    server's message) and wait, doubling from 1 s up to ``cap`` seconds, or as long as the
    server's Retry-After says."""
    delay = BACKOFF_START
    while True:
        try:
            return attempt()
        except HttpError as exc:
            wait = exc.retry_after if exc.retry_after is not None else delay
            log.warning("%s failed: %s; retrying in %.0f s", what, exc, wait)
            sleep(wait)
            delay = min(cap, delay * 2)


class Arges:
    """The discovery endpoint at ``base_url`` (``arges.url=``), spoken to with the boot's
    credential ``token``."""

    def __init__(self, base_url: str, token: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token

    def _post(self, path: str, body: dict[str, Any]) -> Instruction:
        payload = request(self.base_url + path, body, token=self.token)
        try:
            return Instruction.from_json(json.loads(payload))
        except ValueError as exc:
            raise HttpError(200, f"unexpected answer: {exc}") from exc

    def register(self, registration: Registration) -> Instruction:
        """Register once (no retries).

        Raises:
            HttpError: when Arges refuses or cannot be reached.
        """
        return self._post(REGISTER_PATH, registration.to_json())

    def report(self, report: Report) -> Instruction:
        """Send one report (no retries).

        Raises:
            HttpError: when Arges refuses or cannot be reached.
        """
        return self._post(REPORT_PATH, report.to_json())
