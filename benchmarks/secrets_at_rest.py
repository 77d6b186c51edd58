"""What Secrets at rest and the audit log cost a write, measured where they happen.

The whole-server create benchmark (``apiserver.py``) varies by more than these costs from
one run to the next on a shared machine, so this one measures in one process, alternating:

1. sealing and opening one Secret of about 2 KiB (AES-GCM, kube-apiserver's format);
2. appending one audit event;
3. the store's durable commits of ``--objects`` Secrets, 16 in flight, with and without
   encryption, in alternating rounds (median of ``--rounds``).

    .venv/bin/python benchmarks/secrets_at_rest.py [--objects 3000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from arges.apiserver.audit import AuditLog, ObjectRef
from arges.apiserver.encryption import Encryption, new_key
from arges.apiserver.entries import Put
from arges.apiserver.store import Store


def secret(i: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": f"s{i}", "namespace": "default", "uid": f"u{i}"},
        "data": {"config": "QUJD" * 480},
    }


def per_call_us(call: Any, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        call()
    return (time.perf_counter() - start) / n * 1e6


async def commits(directory: Path, encryption: Encryption | None, objects: int) -> float:
    store = Store.open(directory / "state.db", encryption=encryption)
    await store.start()
    queue = list(range(objects))

    async def writer() -> None:
        while queue:
            i = queue.pop()
            await store.commit([Put("secrets", secret(i))])

    start = time.perf_counter()
    await asyncio.gather(*(writer() for _ in range(16)))
    took = time.perf_counter() - start
    await store.close()
    return objects / took


async def run(args: argparse.Namespace) -> None:
    encryption = Encryption([new_key()])
    raw = json.dumps(secret(0)).encode()
    sealed = encryption.seal("secrets", "default", "s0", raw)
    print(f"Secret of {len(raw)} bytes, {len(sealed)} sealed")
    seal = per_call_us(lambda: encryption.seal("secrets", "default", "s0", raw), 20000)
    unseal = per_call_us(lambda: encryption.open("secrets", "default", "s0", sealed), 20000)
    print(f"seal {seal:.1f} us, open {unseal:.1f} us per Secret")
    with tempfile.TemporaryDirectory() as tmp:
        audit = AuditLog(Path(tmp) / "audit.log")
        ref = ObjectRef("secrets", "default", "s0", "", "v1", None)
        now = dt.datetime.now(dt.UTC)

        def record() -> None:
            audit.record(
                method="POST",
                uri="/api/v1/namespaces/default/secrets",
                ref=ref,
                authenticated=True,
                user_agent="bench",
                source="127.0.0.1",
                code=201,
                received=now,
            )

        print(f"audit event {per_call_us(record, 20000):.1f} us per write")
        audit.close()
    rates: dict[str, list[float]] = {"plain": [], "encrypted": []}
    for _ in range(args.rounds):
        for label, enc in (("plain", None), ("encrypted", encryption)):
            with tempfile.TemporaryDirectory() as tmp:
                rates[label].append(await commits(Path(tmp), enc, args.objects))
    plain, sealed_rate = statistics.median(rates["plain"]), statistics.median(rates["encrypted"])
    print(
        f"store commits of {args.objects} Secrets, median of {args.rounds}: "
        f"{plain:.0f}/s plain, {sealed_rate:.0f}/s encrypted "
        f"({(1 - sealed_rate / plain) * 100:+.1f}% slower)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
