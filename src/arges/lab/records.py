"""The lab's servers written into Arges as an operator would from an asset list.

For each server, ahead of its discovery: a Secret ``bmc-<uuid>`` (keys ``username`` and
``password``, and for a Redfish BMC ``ca.crt``, the lab's CA; label ``lab.arges.dev/server``)
and the Server named by its lowercase SMBIOS UUID with ``spec.bmc`` (IPMI: ``127.0.0.1`` and
its port; Redfish: ``https://127.0.0.1:<port>``; the Secret) and ``spec.accepted: false``;
the discovery endpoint fills in its status when its agent registers. A Server that already
exists only gets ``spec.bmc`` patched.

Everything goes through :class:`~arges.kube.client.KubeClient`, so it works against the
embedded API server and a real one alike.
"""

from __future__ import annotations

import base64
import logging

from arges.api.base import SecretReference
from arges.api.server import BMC
from arges.kube.client import KubeClient
from arges.kube.errors import AlreadyExists, KubeError, NotFound
from arges.kube.resources import SECRETS, SERVERS, Resource
from arges.lab.state import ArgesRecord, Credentials, LabServer

log = logging.getLogger(__name__)

LAB_LABEL = "lab.arges.dev/server"
"""On the lab's Secrets and Servers: the lab server's name (``lab-1``)."""


def bmc_spec(server: LabServer, namespace: str) -> BMC:
    """``spec.bmc`` of the Server for ``server``."""
    ref = SecretReference(name=server.secret_name, namespace=namespace)
    if server.bmc_kind == "redfish":
        return BMC(protocol="redfish", endpoint=server.bmc_url, credentials_secret_ref=ref)
    return BMC(
        address=server.bmc_address,
        port=server.bmc_port,
        protocol="ipmi",
        credentials_secret_ref=ref,
    )


def secret_body(
    server: LabServer, login: Credentials, namespace: str, ca: str = ""
) -> dict[str, object]:
    """The BMC credentials Secret (``core/v1``, type Opaque, values base64 as in ``data``),
    with the CA that signed a Redfish BMC's certificate as ``ca.crt``."""
    data = {
        "username": base64.b64encode(login.username.encode()).decode(),
        "password": base64.b64encode(login.password.encode()).decode(),
    }
    if server.bmc_kind == "redfish" and ca:
        data["ca.crt"] = base64.b64encode(ca.encode()).decode()
    return {
        "metadata": {
            "name": server.secret_name,
            "namespace": namespace,
            "labels": {LAB_LABEL: server.name},
        },
        "type": "Opaque",
        "data": data,
    }


async def record(
    kube: KubeClient,
    servers: list[LabServer],
    credentials: dict[str, Credentials],
    into: ArgesRecord,
    ca: str = "",
) -> None:
    """Write every server's Secret and Server, noting each in ``into`` as it is written (so
    a failure part-way leaves an exact list to take back). ``ca`` is the lab's CA (PEM).

    Raises:
        KubeError: an API call failed.
    """
    namespace = into.secret_namespace
    for server in servers:
        body = secret_body(server, credentials[server.name], namespace, ca)
        try:
            await kube.create(SECRETS, body, namespace)
        except AlreadyExists:
            await kube.patch(SECRETS, server.secret_name, {"data": body["data"]}, namespace)
        into.secrets.append(server.secret_name)
        bmc = bmc_spec(server, namespace).to_json()
        try:
            await kube.create(
                SERVERS,
                {
                    "metadata": {"name": server.uuid, "labels": {LAB_LABEL: server.name}},
                    "spec": {"accepted": False, "bmc": bmc},
                },
            )
            into.created_servers.append(server.uuid)
        except AlreadyExists:
            await kube.patch(SERVERS, server.uuid, {"spec": {"bmc": bmc}})
            into.patched_servers.append(server.uuid)


async def forget(kube: KubeClient, recorded: ArgesRecord, *, servers: bool) -> list[str]:
    """Delete the Secrets ``recorded`` lists and, with ``servers``, the Servers it created.

    Returns what could not be deleted, with why (missing objects are fine).
    """
    problems: list[str] = []
    targets: list[tuple[Resource, str, str | None]] = [
        (SECRETS, name, recorded.secret_namespace) for name in recorded.secrets
    ]
    if servers:
        targets += [(SERVERS, name, None) for name in recorded.created_servers]
    for resource, name, namespace in targets:
        try:
            await kube.delete(resource, name, namespace)
        except NotFound:
            continue
        except KubeError as exc:
            problems.append(f"{resource.kind} {name}: {exc}")
    return problems
