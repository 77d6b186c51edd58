"""Calling webhooks as kube-apiserver calls them: where, over which TLS, and with which errors.

Conversion and admission webhooks share one way of being reached (``WebhookClientConfig`` in
``apiextensions.k8s.io/v1`` and ``admissionregistration.k8s.io/v1``): a ``url``, or a
``service`` (namespace, name, path, port 443 by default), plus an optional ``caBundle`` that
the server's certificate must chain to (the system roots when absent); and webhooks of both
kinds name the review versions they accept (v1 and v1beta1 are spoken here). This module holds
the schema of such a config, validates it and the review versions as
``k8s.io/apiserver/pkg/util/webhook/validation.go`` does, and posts JSON to it
as ``k8s.io/apiserver/pkg/util/webhook/client.go`` does: HTTP/1.1 over TLS verified against the
bundle, a ``?timeout=<n>s`` query parameter telling the webhook its deadline, and the whole call
bounded by that deadline.

An API server with no cluster network cannot resolve a service to endpoints: such a call fails
as kube-apiserver's does for a service without endpoints (``no endpoints available for service
"<name>"``); a ``url`` works. Failures are :class:`CallError` whose text is Go's, because users
compare it with what kube-apiserver prints: ``Post "https://...?timeout=10s": dial tcp
127.0.0.1:9443: connect: connection refused``.
"""

from __future__ import annotations

import asyncio
import base64
import errno
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from cryptography import x509

from arges.apiserver import codec
from arges.apiserver.errors import Cause
from arges.apiserver.validation import invalid, required
from arges.errors import ArgesError
from arges.names import dns1035_label_errors, dns1123_subdomain_errors

REVIEW_VERSIONS = ("v1", "v1beta1")
"""AdmissionReview and ConversionReview versions this server speaks, preferred first."""
DEFAULT_PORT = 443
_URL_FORM = "; desired format: https://host[/path]"

# What client-go's rest client says for an error answer that is not a Status
# (k8s.io/apimachinery/pkg/api/errors.NewGenericServerResponse).
_GENERIC = {
    400: "the server rejected our request for an unknown reason",
    401: "Unauthorized",
    403: "forbidden",
    404: "the server could not find the requested resource",
    405: "the server does not allow this method on the requested resource",
    409: "the server reported a conflict",
    413: "the server has rejected the request because the request is too large",
    415: "the server responded with the status code 415 but did not return more information",
    422: "the server rejected our request due to an error in our request",
    429: "the server has received too many requests and has asked us to try again later",
    503: "the server is currently unable to handle the request",
    504: "the server was unable to return a response in the time allotted, but may still be "
    "processing the request",
}


@dataclass(frozen=True)
class ServiceRef:
    """``clientConfig.service``: a Service the API server would resolve to an endpoint."""

    namespace: str
    name: str
    path: str = ""
    port: int = DEFAULT_PORT


@dataclass(frozen=True)
class ClientConfig:
    """Where a webhook is and what its certificate must chain to (``caBundle``, PEM)."""

    url: str = ""
    service: ServiceRef | None = None
    ca_bundle: bytes = b""

    @classmethod
    def parse(cls, spec: Mapping[str, Any]) -> ClientConfig:
        """The config of a validated ``clientConfig`` (``caBundle`` base64, as on the wire)."""
        service = spec.get("service")
        ref = None
        if isinstance(service, Mapping):
            ref = ServiceRef(
                namespace=str(service.get("namespace") or ""),
                name=str(service.get("name") or ""),
                path=str(service.get("path") or ""),
                port=int(service.get("port") or DEFAULT_PORT),
            )
        bundle = spec.get("caBundle")
        return cls(
            url=str(spec.get("url") or ""),
            service=ref,
            ca_bundle=base64.b64decode(bundle) if isinstance(bundle, str) else b"",
        )

    def location(self) -> str:
        """The URL posted to: a service's is ``https://<name>.<namespace>.svc:<port><path>``."""
        if self.service is not None:
            svc = self.service
            return f"https://{svc.name}.{svc.namespace}.svc:{svc.port}{svc.path}"
        return self.url


# Schema and validation (k8s.io/apiserver/pkg/util/webhook/validation.go).

_STRING: dict[str, Any] = {"type": "string"}
CLIENT_CONFIG: dict[str, Any] = {
    "type": "object",
    "description": "How to reach the webhook: a URL, or a Service, with the CA to trust.",
    "properties": {
        "url": {**_STRING, "description": "https://host[:port][/path] of the webhook."},
        "service": {
            "type": "object",
            "required": ["namespace", "name"],
            "properties": {
                "namespace": _STRING,
                "name": _STRING,
                "path": _STRING,
                "port": {"type": "integer", "format": "int32", "default": DEFAULT_PORT},
            },
        },
        "caBundle": {
            "type": "string",
            "format": "byte",
            "description": "PEM certificates the webhook's serving certificate must chain to.",
        },
    },
}
"""``WebhookClientConfig``, also the schema of a CRD's ``spec.conversion.webhook.clientConfig``."""


def review_versions_causes(
    versions: Any, field: str, missing: str = f"must specify one of {', '.join(REVIEW_VERSIONS)}"
) -> list[Cause]:
    """``validateAdmissionReviewVersions`` (and CRDs' ``validateConversionReviewVersions``,
    whose ``missing`` message is empty): at least one version this server speaks, no
    duplicates, each a DNS-1035 label."""
    if not versions:
        return [required(field, f"Required value: {missing}" if missing else "Required value")]
    causes = []
    seen: set[str] = set()
    for i, version in enumerate(versions):
        if version in seen:
            causes.append(invalid(f"{field}[{i}]", version, "duplicate version"))
            continue
        seen.add(version)
        causes += [
            invalid(f"{field}[{i}]", version, why) for why in dns1035_label_errors(str(version))
        ]
    if not seen & set(REVIEW_VERSIONS):
        shown = "[]string{" + ", ".join(f'"{v}"' for v in versions) + "}"
        causes.append(
            Cause(
                field,
                f"Invalid value: {shown}: must include at least one of "
                + ", ".join(REVIEW_VERSIONS),
            )
        )
    return causes


def client_config_causes(spec: Any, field: str) -> list[Cause]:
    """Why ``spec`` is no valid ``clientConfig`` (reported at ``field``)."""
    if not isinstance(spec, Mapping):
        return [required(field, "Required value: exactly one of url or service is required")]
    url, service = spec.get("url"), spec.get("service")
    if (url is None) == (service is None):
        return [required(field, "Required value: exactly one of url or service is required")]
    if url is not None:
        return url_causes(str(url), f"{field}.url")
    if not isinstance(service, Mapping):
        return [invalid(f"{field}.service", service, "must be an object")]
    return service_causes(service, f"{field}.service")


def url_causes(url: str, field: str) -> list[Cause]:
    """``ValidateWebhookURL`` with https forced."""
    try:
        parts = urlsplit(url)
        _ = parts.port  # a malformed port raises here, as Go's url.Parse refuses it
    except ValueError as exc:
        return [
            required(
                field, f'Required value: url must be a valid URL: parse "{url}": {exc}{_URL_FORM}'
            )
        ]
    causes = []
    if parts.scheme != "https":
        causes.append(
            invalid(field, parts.scheme, "'https' is the only allowed URL scheme" + _URL_FORM)
        )
    if not parts.netloc.rpartition("@")[2]:
        causes.append(invalid(field, "", "host must be provided" + _URL_FORM))
    if "@" in parts.netloc:
        user = parts.netloc.rpartition("@")[0]
        causes.append(invalid(field, user, "user information is not permitted in the URL"))
    if parts.fragment:
        causes.append(invalid(field, parts.fragment, "fragments are not permitted in the URL"))
    if parts.query:
        causes.append(invalid(field, parts.query, "query parameters are not permitted in the URL"))
    return causes


def service_causes(service: Mapping[str, Any], field: str) -> list[Cause]:
    """``ValidateWebhookService``: name, namespace, a port in range, a path of DNS segments."""
    causes = []
    if not service.get("name"):
        causes.append(required(f"{field}.name", "Required value: service name is required"))
    if not service.get("namespace"):
        causes.append(
            required(f"{field}.namespace", "Required value: service namespace is required")
        )
    port = service.get("port", DEFAULT_PORT)
    if not isinstance(port, int) or not 1 <= port <= 65535:
        causes.append(
            invalid(
                f"{field}.port", port, "port is not valid: must be between 1 and 65535, inclusive"
            )
        )
    path = service.get("path")
    if path is None or path in ("", "/"):
        return causes
    path = str(path)
    if path == "//":
        return [*causes, invalid(f"{field}.path", path, "segment[0] may not be empty")]
    if not path.startswith("/"):
        causes.append(invalid(f"{field}.path", path, "must start with a '/'"))
    steps = path[1:]
    steps = steps[:-1] if steps.endswith("/") else steps
    for i, step in enumerate(steps.split("/")):
        if not step:
            causes.append(invalid(f"{field}.path", path, f"segment[{i}] may not be empty"))
            continue
        causes += [
            invalid(f"{field}.path", path, f"segment[{i}]: {why}")
            for why in dns1123_subdomain_errors(step)
        ]
    return causes


def ca_bundle_error(bundle: bytes) -> str | None:
    """Why client-go could not load ``bundle`` as root certificates, or None when it can."""
    if not bundle:
        return None
    if b"-----BEGIN" not in bundle:
        return "unable to load root certificates: unable to parse bytes as PEM block"
    try:
        x509.load_pem_x509_certificates(bundle)
    except ValueError as exc:
        return f"unable to load root certificates: failed to parse certificate: {exc}"
    return None


# Calling.


class ConfigError(ArgesError):
    """A client config the API server cannot build a client from (e.g. a bad ``caBundle``)."""


class CallError(ArgesError):
    """A call that failed, or an answer that is not a success; ``str()`` is Go's text."""


class WebhookClient:
    """Posts JSON to webhooks over TLS, never blocking the event loop.

    One aiohttp session (created on first use, closed by :meth:`close`) keeps connections
    alive between calls; TLS contexts are built once per CA bundle.
    """

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._contexts: dict[bytes, ssl.SSLContext] = {}

    async def close(self) -> None:
        """Close the HTTP session to the webhooks (a later call opens a new one)."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _tls(self, bundle: bytes) -> ssl.SSLContext:
        context = self._contexts.get(bundle)
        if context is None:
            why = ca_bundle_error(bundle)
            if why is not None:
                raise ConfigError(why)
            context = ssl.create_default_context(cadata=bundle.decode() if bundle else None)
            # kube-apiserver talks HTTP/1.1 to webhooks (kubernetes/kubernetes#75791).
            context.set_alpn_protocols(["http/1.1"])
            self._contexts[bundle] = context
        return context

    async def post(self, config: ClientConfig, body: Any, seconds: float) -> Any:
        """POST ``body`` as JSON; returns the decoded JSON answer.

        The call, connection included, is bounded by ``seconds``, which the webhook also
        learns from the ``timeout`` query parameter.

        Raises:
            ConfigError: the config cannot be used (its CA bundle does not load).
            CallError: the webhook was not reached, did not answer in time, answered with an
                error status, or not with JSON.
        """
        context = self._tls(config.ca_bundle)
        url = f"{config.location()}?timeout={round(seconds)}s"
        where = f'Post "{url}"'
        if config.service is not None:
            raise CallError(f'{where}: no endpoints available for service "{config.service.name}"')
        if self._session is None:
            self._session = aiohttp.ClientSession()
        headers = {"Content-Type": "application/json", "Accept": "application/json, */*"}
        data = codec.dumps(body)
        try:
            async with asyncio.timeout(seconds):
                for attempt in range(2):
                    try:
                        async with self._session.post(
                            url, data=data, headers=headers, ssl=context
                        ) as resp:
                            raw = await resp.read()
                            status = resp.status
                            text = resp.content_type.startswith("text/")
                        break
                    except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
                        # A kept-alive connection the webhook server had closed while idle:
                        # once, on a new one (Go's transport retries these too).
                        if attempt:
                            raise
        except TimeoutError:
            raise CallError(f"{where}: context deadline exceeded") from None
        except aiohttp.ClientError as exc:
            raise CallError(f"{where}: {_go_error(exc)}") from exc
        except OSError as exc:
            raise CallError(f"{where}: {exc.strerror or exc}") from exc
        if not 200 <= status < 300:
            raise CallError(_error_answer(status, raw, text))
        try:
            return codec.loads(raw)
        except ValueError as exc:
            raise CallError(f"couldn't get version/kind; json parse error: {exc}") from exc


def _go_error(exc: aiohttp.ClientError) -> str:
    """How Go's net/http and crypto/tls word the failure ``exc`` stands for."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        cert_error = exc.certificate_error
        code = getattr(cert_error, "verify_code", 0)
        if code in (18, 19, 20, 21):
            reason = "x509: certificate signed by unknown authority"
        elif code == 62:
            reason = f"x509: certificate is not valid for {exc.host}"
        elif code in (9, 10):
            reason = "x509: certificate has expired or is not yet valid"
        else:
            reason = f"x509: {getattr(cert_error, 'verify_message', cert_error)}"
        return f"tls: failed to verify certificate: {reason}"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return f"dial tcp: lookup {exc.host}: no such host"
    if isinstance(exc, aiohttp.ClientConnectorError):
        target = f"{exc.host}:{exc.port}"
        if exc.os_error.errno == errno.ECONNREFUSED:
            return f"dial tcp {target}: connect: connection refused"
        return f"dial tcp {target}: connect: {(exc.os_error.strerror or '').lower()}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "EOF"
    return str(exc)


def _error_answer(status: int, raw: bytes, text: bool) -> str:
    """client-go's error for a non-2xx answer: the Status's message when it is one."""
    try:
        body = codec.loads(raw)
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("kind") == "Status" and body.get("message"):
        return str(body["message"])
    if status >= 500 and status not in _GENERIC:
        detail = raw.decode(errors="replace").strip() if text and raw.strip() else "unknown"
        return f'an error on the server ("{detail}") has prevented the request from succeeding'
    return _GENERIC.get(
        status,
        f"the server responded with the status code {status} but did not return more information",
    )
