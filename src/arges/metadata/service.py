"""The metadata service: ``GET /configdata?uuid=<uuid>``, the machine config a server boots with.

Talos' metal platform fetches the URL given as ``talos.config=`` (Arges passes
``.../configdata?uuid=``; Talos fills in the SMBIOS UUID) and retries until it gets a 200.
The answer is assembled from the cluster's state at request time (the ServerClass from the
boot port's mirror, :mod:`arges.kube.informer`; everything else read from the API):

    Server (by UUID, case-insensitive) -> ServerBinding (same name)
      -> a TalosCluster member: the config Secret it names (key ``config``, rendered by the
         cluster controller with the cluster's and the pool's patches, for this binding)
      -> a Cluster API machine: MetalMachine -> its owner Machine -> the Secret named by
         ``spec.bootstrap.dataSecretName`` (key ``value``, the bootstrap provider's config)
      -> the ServerClass's patches -> the Server's patches
      -> (Cluster API machines) the kubelet's ``providerID`` and the node label
         ``metal.arges.dev/uuid``, so the Node registers with the MetalMachine's provider ID
      -> YAML (text/yaml)

Only the machine a config is for gets it: the request must carry the credential ``/ipxe``
minted for this boot of that server (``token=``, in the ``talos.config=`` URL of its kernel
arguments) and come from an address that credential is bound to (see
:mod:`arges.access.guard`). Anything else, an unknown UUID included, gets the same 403 and
nothing else, before anything about the server is looked up, and an Event ``ConfigRefused``
on the Server when it exists; more than a few requests a second from one address get 429.
Once its binding is ``Installed`` a server's credential is spent, and the config is not
served again until the next boot brings a new one.

For the machine itself, a server that is not bound, or whose config is not rendered yet,
gets a 404 with the reason; a patch that fails gets a 500 naming the patch. Both are cheap
and stable, since Talos keeps asking (and each authenticated attempt keeps its credential
alive). Every delivery is recorded: a ``ConfigDelivered`` condition (time and client
address) on the Server and its ServerBinding, and an Event.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import web

from arges.access import credentials
from arges.access.guard import BootGuard, Refused, Verified
from arges.api.base import JSONPatchOperation
from arges.api.binding import CONFIG_DELIVERED, CONFIG_KEY, INSTALLED, ServerBinding
from arges.api.server import Server
from arges.api.serverclass import ServerClass
from arges.errors import ArgesError
from arges.kube.capi import ClusterApi
from arges.kube.client import KubeClient
from arges.kube.errors import KubeError, NotFound
from arges.kube.informer import Informer
from arges.kube.resources import METAL_MACHINES, SECRETS, SERVER_BINDINGS, SERVER_CLASSES, SERVERS
from arges.metal.capi import data_secret_name, node_patch, owner, provider_id
from arges.metal.conditions import condition_patch, is_true
from arges.metal.memberconfig import serve_problem
from arges.talos.errors import TalosError
from arges.talos.patches import apply_text, patch_set
from arges.wire import server_name

log = logging.getLogger(__name__)

RETRY = {"Retry-After": "1"}
BOOTSTRAP_KEY = "value"
"""The key of a Cluster API bootstrap data Secret (the bootstrap provider contract)."""


@dataclass(frozen=True)
class PatchSource:
    """The patches one object contributes, and how to name it in an error."""

    label: str
    json_patches: list[dict[str, Any]] = field(default_factory=list)
    strategic: list[str] = field(default_factory=list)


class PatchFailed(ArgesError):
    """A patch could not be applied; the message names its source and position."""


class Patcher(Protocol):
    """Applies patch sources to a machine config (YAML text) in order, returning YAML text.

    Raises:
        PatchFailed: naming the patch (source label and index) and why.
    """

    def __call__(self, config: str, sources: Sequence[PatchSource]) -> str: ...


def sources_of(server_class: ServerClass | None, server: Server) -> list[PatchSource]:
    """The patch sources applied at delivery, in order: the ServerClass's, then the Server's."""
    out = []
    if server_class is not None:
        spec = server_class.spec
        out.append(
            PatchSource(
                f"ServerClass {server_class.name}",
                _ops(spec.config_patches),
                list(spec.strategic_patches or []),
            )
        )
    out.append(
        PatchSource(
            f"Server {server.name}",
            _ops(server.spec.config_patches),
            list(server.spec.strategic_patches or []),
        )
    )
    return out


def _ops(patches: list[JSONPatchOperation] | None) -> list[dict[str, Any]]:
    return [p.to_json() for p in patches or []]


class NotServed(ArgesError):
    """Why a config cannot be served: an HTTP status and a reason for Talos' log."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class _Found:
    """What a ``/configdata`` request looked up: the Server and its ServerBinding (as read,
    and parsed), the config rendered for it, and the patch sources that go last."""

    server_body: dict[str, Any]
    server: Server
    binding_body: dict[str, Any]
    binding: ServerBinding
    config: str
    last: list[PatchSource]


class MetadataService:
    """The ``/configdata`` handler (see the module docstring); mount with :meth:`routes`."""

    def __init__(
        self,
        kube: KubeClient,
        patcher: Patcher,
        guard: BootGuard,
        *,
        server_classes: Informer | None = None,
    ) -> None:
        """``server_classes``: the boot port's mirror of the ServerClasses (by default an
        informer that is never run: every read goes to the API)."""
        self.kube = kube
        self.patcher = patcher
        self.guard = guard
        self.capi = ClusterApi(kube)
        self.server_classes = server_classes or Informer(kube, SERVER_CLASSES)

    def routes(self) -> list[web.RouteDef]:
        """The route of the machine config, ``/configdata``."""
        return [web.get("/configdata", self.configdata)]

    async def configdata(self, request: web.Request) -> web.Response:
        """``/configdata?uuid=&token=``: the bound server's Talos machine config (its
        TalosCluster member config, or its Cluster API Machine's bootstrap data with the
        Node's provider ID) with its ServerClass's and Server's patches applied, only to the
        holder of its config boot credential (403 otherwise, and once the config is
        installed: the credential is spent); 429 over the rate, 503 when the API cannot be
        read."""
        uuid = server_name(request.query.get("uuid", "")) or ""
        token = request.query.get("token", "")
        remote = request.remote or ""
        if not self.guard.admit(remote, "/configdata"):
            return web.Response(status=429, text="too many requests\n", headers=RETRY)
        try:
            verified = await self.guard.verify(uuid, token, ("config",), remote)
        except Refused as refusal:
            await self.guard.refused("/configdata", "ConfigRefused", uuid, remote, refusal)
            return web.Response(status=403, text="forbidden\n")
        except KubeError as exc:
            log.warning("configdata for %s from %s: %s", uuid, remote, exc)
            return web.Response(status=503, text="Arges cannot reach its API; retry later\n")
        try:
            known = await self._touch(uuid, verified)
            found = await self._lookup(uuid, known)
            server, binding = found.server, found.binding
            if is_true(binding.status.conditions, INSTALLED):
                # Delivered and installed: this boot's credential is spent.
                await self._spend(server)
                spent = Refused(
                    "the config is installed; its credential is spent", server.to_json()
                )
                await self.guard.refused("/configdata", "ConfigRefused", uuid, remote, spent)
                return web.Response(status=403, text="forbidden\n")
            server_class = await self._server_class(binding)
            try:
                body = self.patcher(found.config, [*sources_of(server_class, server), *found.last])
            except PatchFailed as exc:
                raise NotServed(500, f"cannot render the config of {uuid}: {exc}") from exc
        except NotServed as exc:
            log.info("configdata for %r from %s: %d %s", uuid, remote, exc.status, exc.reason)
            return web.Response(status=exc.status, text=exc.reason + "\n")
        except KubeError as exc:
            log.warning("configdata for %s from %s: %s", uuid, remote, exc)
            return web.Response(status=503, text="Arges cannot reach its API; retry later\n")
        await self._record(found, remote)
        return web.Response(text=body, content_type="text/yaml")

    async def _touch(self, uuid: str, verified: Verified) -> dict[str, Any] | None:
        """Record the use of the credential (a new address, its expiry moved on); the Server
        as it now is (as written, or as the credential check read it)."""
        if verified.patch is not None:
            return await self.kube.patch(
                SERVERS, uuid, {"status": verified.patch}, subresource="status"
            )
        return verified.server

    async def _spend(self, server: Server) -> None:
        patch = credentials.spent(server.status.boot_credential, "the machine config is installed")
        if patch is not None:
            await self.kube.patch(SERVERS, server.name, {"status": patch}, subresource="status")

    async def _lookup(self, uuid: str, known: dict[str, Any] | None = None) -> _Found:
        """The server (``known``: as just read or written, else read now), its binding, its
        config as rendered for it, and the patch sources that go after the ServerClass's and
        the Server's."""
        try:
            server_body = known or await self.kube.get(SERVERS, uuid)
        except NotFound as exc:
            raise NotServed(404, f"server {uuid} was deleted") from exc
        try:
            binding_body = await self.kube.get(SERVER_BINDINGS, uuid)
        except NotFound as exc:
            raise NotServed(404, f"server {uuid} is not allocated to any cluster") from exc
        server = Server.from_json(server_body)
        binding = ServerBinding.from_json(binding_body)
        if binding.spec.consumer_ref.kind == "MetalMachine":
            config, provider = await self._bootstrap_data(binding)
            node = PatchSource(
                "the Node's provider ID and label", strategic=[node_patch(uuid, provider)]
            )
            return _Found(server_body, server, binding_body, binding, config, [node])
        config = await self._member_config(uuid, binding)
        return _Found(server_body, server, binding_body, binding, config, [])

    async def _bootstrap_data(self, binding: ServerBinding) -> tuple[str, str]:
        """A Cluster API machine's config: the bootstrap data (Secret key ``value``) of the
        Machine owning the binding's MetalMachine, as Sidero served it; and the machine's
        provider ID."""
        ref = binding.spec.consumer_ref
        namespace = ref.namespace or "default"
        try:
            metal_machine = await self.kube.get(METAL_MACHINES, ref.name, namespace)
        except NotFound as exc:
            raise NotServed(404, f"the MetalMachine {namespace}/{ref.name} is gone") from exc
        if ref.uid and metal_machine["metadata"].get("uid") != ref.uid:
            raise NotServed(404, f"the MetalMachine {namespace}/{ref.name} is gone")
        machine_ref = owner(metal_machine, "Machine")
        machine = await self.capi.machine(namespace, machine_ref["name"]) if machine_ref else None
        if machine is None:
            raise NotServed(404, f"no Machine owns the MetalMachine {namespace}/{ref.name} yet")
        name = data_secret_name(machine)
        if name is None:
            raise NotServed(404, "the Machine's bootstrap data is not created yet")
        try:
            secret = await self.kube.get(SECRETS, name, namespace)
        except NotFound as exc:
            raise NotServed(
                404, f"the bootstrap data Secret {namespace}/{name} is missing"
            ) from exc
        provider = (metal_machine.get("spec") or {}).get("providerID") or provider_id(binding.name)
        return _text(secret, BOOTSTRAP_KEY, f"{namespace}/{name}"), str(provider)

    async def _member_config(self, uuid: str, binding: ServerBinding) -> str:
        """A TalosCluster member's config, from the Secret its binding names."""
        ref = binding.spec.config_secret_ref
        if ref is None:
            raise NotServed(404, f"server {uuid} has no machine config yet")
        try:
            secret = await self.kube.get(SECRETS, ref.name, ref.namespace)
        except NotFound as exc:
            raise NotServed(
                404, f"the config Secret {ref.namespace}/{ref.name} is missing"
            ) from exc
        problem = serve_problem(secret, binding)
        if problem is not None:
            # A leftover of an earlier membership: the cluster controller renders it anew.
            raise NotServed(404, f"server {uuid} has no machine config yet: {problem}")
        return _text(secret, CONFIG_KEY, f"{ref.namespace}/{ref.name}")

    async def _server_class(self, binding: ServerBinding) -> ServerClass | None:
        ref = binding.spec.server_class_ref
        if ref is None:
            return None
        body = await self.server_classes.read(ref.name)
        if body is None:
            raise NotServed(500, f"the ServerClass {ref.name} of this server is missing")
        return ServerClass.from_json(body)

    async def _record(self, found: _Found, remote: str) -> None:
        # Server, binding, Event: a kill between them loses records only; the binding's
        # Installed condition (from the agent or Talos) moves the member on without them.
        now = dt.datetime.now(dt.UTC)
        message = f"machine config delivered to {remote or 'an unknown address'}"
        server = found.server
        try:
            # Each written on the copy this request read (a stale one is refused and read
            # again), not read a second time.
            for resource, body in (
                (SERVERS, found.server_body),
                (SERVER_BINDINGS, found.binding_body),
            ):
                await self.kube.update_status(
                    resource,
                    body["metadata"]["name"],
                    lambda obj: condition_patch(
                        obj, CONFIG_DELIVERED, "True", "Delivered", message, now=now
                    ),
                    current=body,
                )
            await self.kube.event(found.server_body, "ConfigDelivered", message)
        except KubeError as exc:
            log.warning("could not record the delivery to %s: %s", server.name, exc)


def _text(secret: dict[str, Any], key: str, where: str) -> str:
    """The text under ``key`` of a Secret (as the API returns it).

    Raises:
        NotServed: 404 when the key is absent, 500 when it is not UTF-8 text.
    """
    encoded = (secret.get("data") or {}).get(key)
    if not encoded:
        raise NotServed(404, f"the Secret {where} has no key {key!r}")
    try:
        return base64.b64decode(encoded).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise NotServed(500, f"the Secret {where} is not text") from exc


def talos_patcher(config: str, sources: Sequence[PatchSource]) -> str:
    """The :class:`Patcher` of Talos' own semantics: per source, its JSON patches (as one
    RFC 6902 patch) then its strategic merge patches, as Sidero applied them."""
    try:
        sets = [patch_set(s.label, s.json_patches, s.strategic) for s in sources]
        return apply_text(config, sets)
    except TalosError as exc:
        raise PatchFailed(str(exc)) from exc
