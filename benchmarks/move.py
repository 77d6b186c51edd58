"""Benchmark of ``arges move``: how long moving a fleet between two API servers takes.

Starts three embedded API servers in this process: a source with Arges' CRDs holding
``--servers`` Servers (with an inventory in their status), as many BMC credential Secrets (one
per server, each named by its Server), and a ServerBinding for every fifth server; a target
with nothing of Arges' (the move installs the CRDs); and a reference target with the CRDs.
Then times:

- the move (:func:`arges.cli.move.move`, as ``arges move`` runs it: pause, acknowledgements,
  CRDs, every object in order, its status, the record);
- the same-run reference: the same objects written to the reference target one by one, each
  create followed by its status write, with nothing else (no pause, no ordering, no reads).

Figures, not assertions: this machine is shared and noisy. The ratio is what to compare.

    .venv/bin/python benchmarks/move.py [--servers 500]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from arges.api.crds import all_crds
from arges.apiserver.server import ApiServer, ApiServerConfig
from arges.cli.move import move
from arges.kube.client import KubeClient
from arges.kube.connection import from_kubeconfig
from arges.kube.resources import SECRETS, SERVER_BINDINGS, SERVERS
from arges.metal.move import copy_of

HARDWARE = {
    "system": {"manufacturer": "Dell Inc.", "productName": "PowerEdge R650"},
    "compute": {"processorCount": 2, "totalCoreCount": 64, "totalThreadCount": 128},
    "memory": {"totalSize": 512 * 2**30},
}


async def api(directory: Path, crds: bool) -> tuple[ApiServer, KubeClient]:
    server = ApiServer(ApiServerConfig(data_dir=directory, port=0, crds=all_crds() if crds else []))
    await server.start()
    return server, KubeClient(from_kubeconfig(server.kubeconfig_path))


async def populate(kube: KubeClient, count: int) -> None:
    for i in range(count):
        name = f"4c4c4544-0000-4000-8000-{i:012d}"
        await kube.create(
            SECRETS,
            {"metadata": {"name": f"bmc-{name}"}, "stringData": {"password": f"pw-{i}"}},
            "default",
        )
        ref = {"name": f"bmc-{name}", "namespace": "default"}
        bmc = {"address": f"10.0.{i // 250}.{i % 250}", "credentialsSecretRef": ref}
        await kube.create(
            SERVERS, {"metadata": {"name": name}, "spec": {"accepted": True, "bmc": bmc}}
        )
        system = {**HARDWARE["system"], "uuid": name}
        status = {"hardware": {**HARDWARE, "system": system}, "isClean": i % 5 != 0}
        await kube.patch(
            SERVERS, name, {"status": {**status, "inUse": i % 5 == 0}}, subresource="status"
        )
        if i % 5 == 0:
            consumer = {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "namespace": "default",
                "name": "c",
            }
            spec = {"serverRef": {"name": name}, "consumerRef": consumer}
            await kube.create(SERVER_BINDINGS, {"metadata": {"name": name}, "spec": spec})


async def reference(source: KubeClient, target: KubeClient) -> int:
    """The objects written plainly, one create and one status write each; returns how many."""
    written = 0
    for res in (SECRETS, SERVERS, SERVER_BINDINGS):
        for obj in await source.list(res):
            body = copy_of({**obj, "apiVersion": res.api_version, "kind": res.kind}, {})
            status = body.pop("status", None)
            ns = obj["metadata"].get("namespace")
            created = await target.create(res, body, ns)
            if status and res is not SECRETS:
                await target.replace(res, {**created, "status": status}, subresource="status")
            written += 1
    return written


async def main(count: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        source_api, source = await api(Path(tmp) / "source", True)
        target_api, target = await api(Path(tmp) / "target", False)
        ref_api, ref = await api(Path(tmp) / "reference", True)
        try:
            await populate(source, count)
            lines: list[str] = []
            started = time.perf_counter()
            await move(source, target, dry_run=False, undo=False, within=60, echo=lines.append)
            moved = time.perf_counter() - started
            started = time.perf_counter()
            written = await reference(source, ref)
            plain = time.perf_counter() - started
            print(lines[-1])
            print(f"move: {moved:.1f} s for {count} servers and what goes with them")
            print(f"reference (plain create + status of the {written} objects): {plain:.1f} s")
            print(f"ratio move/reference: {moved / plain:.2f}")
        finally:
            for kube in (source, target, ref):
                await kube.close()
            for server in (source_api, target_api, ref_api):
                await server.stop()


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", type=int, default=500)
    args = parser.parse_args()
    asyncio.run(main(args.servers))


if __name__ == "__main__":
    cli()
