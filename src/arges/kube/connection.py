"""How to reach an API server: from a kubeconfig file or from inside a pod.

Supports what Arges' deployments use: bearer tokens and client certificates, with the CA
given inline or as a file; inside a cluster, the service-account token (re-read on every
use, since kubelet rotates it) and CA.
"""

from __future__ import annotations

import base64
import os
import ssl
import tempfile
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import yaml

from arges.errors import ArgesError

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class ConfigError(ArgesError):
    """The kubeconfig is missing, unreadable, or lacks what is needed."""


class LocalBody(Protocol):
    """A local watch's stream: chunks of JSON lines, closed by the reader when it goes."""

    def __aiter__(self) -> AsyncIterator[bytes]: ...

    def close(self) -> None: ...


class LocalApiServer(Protocol):
    """The API server of a connection when it runs in this process (the embedded one,
    :class:`arges.apiserver.server.ApiServer`): it answers requests and watches without
    HTTP, with the same handler, audit and metrics."""

    async def local(
        self,
        method: str,
        path: str,
        params: Mapping[str, str],
        headers: Mapping[str, str],
        body: bytes | None,
    ) -> tuple[int, bytes]:
        """(status, body) of one request; ``params`` is its query."""
        ...

    async def local_watch(
        self, path: str, params: Mapping[str, str], headers: Mapping[str, str]
    ) -> tuple[int, bytes | LocalBody]:
        """``(200, stream)`` once a watch has begun, or the ``(status, body)`` it was
        refused with."""
        ...


@dataclass(frozen=True)
class Connection:
    """Where the API server is and how to authenticate; secret fields never print.

    ``unix_socket``: when set, :class:`~arges.kube.client.KubeClient` speaks plain HTTP over
    this Unix socket instead of HTTPS to ``server`` — the embedded API server's own socket,
    which only the owner of its data directory can open (see
    :attr:`arges.apiserver.server.ApiServer.socket_path`). Authentication is unchanged.

    ``local``: the API server itself, when it runs in this process (``arges up``): every
    request but lists, and every watch, then goes to it without HTTP (a request's CPU is
    most of it HTTP, both ends; a watch event's, a third).
    """

    server: str
    ca_data: bytes | None = field(default=None, repr=False)
    insecure: bool = False
    token: str | None = field(default=None, repr=False)
    token_file: Path | None = None
    cert_data: bytes | None = field(default=None, repr=False)
    key_data: bytes | None = field(default=None, repr=False)
    namespace: str = "default"
    unix_socket: Path | None = None
    local: LocalApiServer | None = field(default=None, repr=False, compare=False)

    def bearer(self) -> str | None:
        """The current bearer token (re-read from ``token_file`` when there is one)."""
        if self.token_file is not None:
            return self.token_file.read_text().strip()
        return self.token

    def ssl_context(self) -> ssl.SSLContext | bool:
        """TLS settings for aiohttp (False only when the kubeconfig says insecure)."""
        if self.insecure:
            return False
        ctx = ssl.create_default_context(
            cadata=self.ca_data.decode() if self.ca_data is not None else None
        )
        if self.cert_data and self.key_data:
            # The ssl module loads client certificates only from files: a private directory
            # (mode 0700) holds them for the instant it takes.
            with tempfile.TemporaryDirectory(prefix="arges-kube-") as directory:
                cert, key = Path(directory) / "client.crt", Path(directory) / "client.key"
                cert.write_bytes(self.cert_data)
                key.write_bytes(self.key_data)
                ctx.load_cert_chain(cert, key)
        return ctx


def _data(entry: dict[str, object], key: str, base: Path) -> bytes | None:
    inline = entry.get(f"{key}-data")
    if isinstance(inline, str):
        return base64.b64decode(inline)
    path = entry.get(key)
    if isinstance(path, str):
        return (base / path).expanduser().read_bytes()
    return None


def from_kubeconfig(path: Path, context: str | None = None) -> Connection:
    """Read ``path`` (a kubeconfig) for ``context`` (default: its current context).

    Raises:
        ConfigError: when the file or the context cannot be used.
    """
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read kubeconfig {path}: {exc}") from exc
    if not isinstance(doc, dict):
        raise ConfigError(f"{path} is not a kubeconfig")

    def named(section: str, name: str) -> dict[str, object]:
        for item in doc.get(section) or []:
            if item.get("name") == name:
                value = item.get(section[:-1]) or {}
                if isinstance(value, dict):
                    return value
        raise ConfigError(f"{path}: no {section[:-1]} named {name!r}")

    ctx_name = context or doc.get("current-context")
    if not ctx_name:
        raise ConfigError(f"{path}: no current-context")
    ctx = named("contexts", str(ctx_name))
    cluster = named("clusters", str(ctx.get("cluster")))
    user = named("users", str(ctx.get("user"))) if ctx.get("user") else {}
    base = path.parent
    try:
        token = user.get("token")
        token_file = user.get("tokenFile")
        return Connection(
            server=str(cluster["server"]),
            ca_data=_data(cluster, "certificate-authority", base),
            insecure=bool(cluster.get("insecure-skip-tls-verify", False)),
            token=token if isinstance(token, str) else None,
            token_file=(base / token_file) if isinstance(token_file, str) else None,
            cert_data=_data(user, "client-certificate", base),
            key_data=_data(user, "client-key", base),
            namespace=str(ctx.get("namespace") or "default"),
        )
    except (KeyError, OSError, ValueError) as exc:
        raise ConfigError(f"{path}: incomplete cluster or user entry: {exc}") from exc


def in_cluster() -> Connection:
    """The pod's own service account (``KUBERNETES_SERVICE_HOST`` and the mounted token).

    Raises:
        ConfigError: when not running inside a pod.
    """
    host = os.environ.get("KUBERNETES_SERVICE_HOST")
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    if not host or not (SERVICE_ACCOUNT / "token").exists():
        raise ConfigError("not running inside a Kubernetes pod (no service account mounted)")
    host = f"[{host}]" if ":" in host else host
    namespace_file = SERVICE_ACCOUNT / "namespace"
    return Connection(
        server=f"https://{host}:{port}",
        ca_data=(SERVICE_ACCOUNT / "ca.crt").read_bytes(),
        token_file=SERVICE_ACCOUNT / "token",
        namespace=namespace_file.read_text().strip() if namespace_file.exists() else "default",
    )
