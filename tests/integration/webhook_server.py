"""A webhook server for the tests: HTTPS on loopback with a CA made here, that converts Gadgets
between v1alpha1 and v1 and mutates and validates them, recording every review it is sent.

Gadget v1 has ``spec.size`` and ``spec.color``; v1alpha1 calls them ``spec.length`` and
``spec.colour``. Behaviour is switched per test through attributes (``conversion_mode``...).
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import ipaddress
import json
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

GROUP = "example.arges.dev"


@dataclass
class Pki:
    """A CA and a serving certificate for 127.0.0.1, PEM."""

    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes

    @property
    def ca_bundle(self) -> str:
        return base64.b64encode(self.ca_pem).decode()


def make_pki(common_name: str = "webhook test CA") -> Pki:
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "webhook")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return Pki(
        ca_pem=ca.public_bytes(serialization.Encoding.PEM),
        cert_pem=cert.public_bytes(serialization.Encoding.PEM),
        key_pem=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


def _convert_spec(spec: dict[str, Any], to: str) -> dict[str, Any]:
    renames = {"size": "length", "color": "colour"}
    if to == "v1":
        renames = {v: k for k, v in renames.items()}
    return {renames.get(k, k): v for k, v in spec.items()}


@dataclass
class WebhookServer:
    """The server; ``reviews[path]`` holds each request body received there."""

    pki: Pki
    port: int = 0
    reviews: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    conversion_mode: str = "ok"
    mutation_patch: list[dict[str, Any]] | None = None
    warnings: list[str] = field(default_factory=list)
    delay: float = 0.0
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    async def start(self, tmp: Path) -> None:
        (tmp / "tls.crt").write_bytes(self.pki.cert_pem)
        (tmp / "tls.key").write_bytes(self.pki.key_pem)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(tmp / "tls.crt", tmp / "tls.key")
        app = web.Application()
        app.router.add_post("/convert", self._convert)
        app.router.add_post("/{tail:.*}", self._admit)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=context)
        await site.start()
        server = getattr(site, "_server", None)
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def received(self, path: str) -> list[dict[str, Any]]:
        return self.reviews.get(path, [])

    async def _record(self, request: web.Request) -> dict[str, Any]:
        body = await request.json()
        self.reviews.setdefault(request.path, []).append({**body, "query": dict(request.query)})
        if self.delay:
            await asyncio.sleep(self.delay)
        return body  # type: ignore[no-any-return]

    async def _convert(self, request: web.Request) -> web.Response:
        review = await self._record(request)
        req = review["request"]
        desired = req["desiredAPIVersion"]
        to = desired.rsplit("/", 1)[1]
        converted = []
        for obj in req["objects"]:
            out = {**obj, "apiVersion": desired, "spec": _convert_spec(obj.get("spec") or {}, to)}
            out["metadata"] = {
                **obj["metadata"],
                "labels": {**(obj["metadata"].get("labels") or {}), "converted-to": to},
            }
            if self.conversion_mode == "rename":
                out["metadata"] = {**out["metadata"], "name": "someone-else"}
            converted.append(out)
        response: dict[str, Any] = {
            "uid": req["uid"],
            "result": {"status": "Success"},
            "convertedObjects": converted,
        }
        if self.conversion_mode == "bad-uid":
            response["uid"] = "not-the-uid"
        if self.conversion_mode == "failure":
            response = {
                "uid": req["uid"],
                "result": {"status": "Failure", "message": "cannot convert gadgets today"},
            }
        if self.conversion_mode == "short":
            response["convertedObjects"] = converted[:-1]
        return web.json_response(
            {"apiVersion": review["apiVersion"], "kind": "ConversionReview", "response": response}
        )

    async def _admit(self, request: web.Request) -> web.Response:
        review = await self._record(request)
        req = review["request"]
        response: dict[str, Any] = {"uid": req["uid"], "allowed": True}
        obj = req.get("object") or {}
        spec = obj.get("spec") or {}
        if request.path.startswith("/validate"):
            size = spec.get("size", spec.get("length", 0))
            if isinstance(size, int) and size > 10:
                response = {
                    "uid": req["uid"],
                    "allowed": False,
                    "status": {"code": 403, "reason": "Forbidden", "message": "size too big"},
                }
            elif (obj.get("metadata") or {}).get("annotations", {}).get("deny"):
                response = {"uid": req["uid"], "allowed": False}
        elif request.path.startswith("/mutate") and self.mutation_patch is not None:
            patch = json.dumps(self.mutation_patch).encode()
            response["patchType"] = "JSONPatch"
            response["patch"] = base64.b64encode(patch).decode()
        if self.warnings:
            response["warnings"] = self.warnings
        return web.json_response(
            {"apiVersion": review["apiVersion"], "kind": "AdmissionReview", "response": response}
        )


def gadget_crd(server: WebhookServer | None, *, url: str | None = None) -> dict[str, Any]:
    """The Gadget CRD: v1 stored, v1alpha1 served, converted by ``server``'s ``/convert``."""

    def version(name: str, storage: bool) -> dict[str, Any]:
        size, color = ("size", "color") if name == "v1" else ("length", "colour")
        return {
            "name": name,
            "served": True,
            "storage": storage,
            "subresources": {"status": {}},
            "selectableFields": [{"jsonPath": f".spec.{color}"}],
            "schema": {
                "openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "spec": {
                            "type": "object",
                            "properties": {
                                size: {"type": "integer"},
                                color: {"type": "string"},
                                "owner": {"type": "string"},
                            },
                        },
                        "status": {
                            "type": "object",
                            "properties": {"phase": {"type": "string"}},
                        },
                    },
                }
            },
        }

    conversion: dict[str, Any] = {"strategy": "None"}
    if server is not None or url is not None:
        client: dict[str, Any] = {"url": url or f"{server.url}/convert"}  # type: ignore[union-attr]
        if server is not None:
            client["caBundle"] = server.pki.ca_bundle
        conversion = {
            "strategy": "Webhook",
            "webhook": {"conversionReviewVersions": ["v1"], "clientConfig": client},
        }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"gadgets.{GROUP}"},
        "spec": {
            "group": GROUP,
            "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
            "scope": "Namespaced",
            "versions": [version("v1", True), version("v1alpha1", False)],
            "conversion": conversion,
        },
    }


def gadget(name: str, version: str = "v1", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{version}",
        "kind": "Gadget",
        "metadata": {"name": name},
        "spec": spec,
    }
