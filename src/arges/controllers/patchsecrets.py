"""A TalosCluster pool's ``patchesFrom``: patches read from Secrets of the cluster's namespace.

For patches that carry credentials (a CA key, a DNS provider's token): the TalosCluster names
the Secret and key, and the text only ever leaves the Secret into the member configs, which
are Secrets themselves. The text is read as any patch is (:func:`arges.talos.patches.load`:
a strategic merge patch, or a JSON patch) and applied after the pool's own patches.
"""

from __future__ import annotations

import base64
import binascii

from arges.api.cluster import CONTROL_PLANE_POOL, Pool, TalosCluster
from arges.kube.client import KubeClient
from arges.kube.errors import NotFound
from arges.kube.resources import SECRETS
from arges.talos.errors import InvalidInput, PatchError
from arges.talos.patches import PatchSet, patch_set


def uses_secrets(cluster: TalosCluster) -> bool:
    """Whether any pool of ``cluster`` reads patches from Secrets."""
    spec = cluster.spec
    return any(pool.patches_from for pool in [spec.control_plane, *(spec.workers or [])])


async def secret_patch_sets(kube: KubeClient, cluster: TalosCluster) -> dict[str, list[PatchSet]]:
    """Each pool's patch sets from its ``patchesFrom`` (pool name -> sets, in order).

    Raises:
        InvalidInput: a Secret or key that does not exist, or a value that is not a patch
            (naming the Secret and key, never quoting the value).
        KubeError: the API failed.
    """
    spec = cluster.spec
    pools: dict[str, Pool] = {CONTROL_PLANE_POOL: spec.control_plane}
    pools |= {w.name: w for w in spec.workers or []}
    out: dict[str, list[PatchSet]] = {}
    for pool_name, pool in pools.items():
        for ref in pool.patches_from or []:
            source = f"pool {pool_name}: Secret {ref.name} key {ref.key}"
            try:
                secret = await kube.get(SECRETS, ref.name, cluster.namespace)
            except NotFound as exc:
                raise InvalidInput(f"{source}: the Secret does not exist") from exc
            encoded = (secret.get("data") or {}).get(ref.key)
            if not encoded:
                raise InvalidInput(f"{source}: no such key")
            try:
                text = base64.b64decode(encoded, validate=True).decode()
            except (binascii.Error, UnicodeDecodeError) as exc:
                raise InvalidInput(f"{source}: the value is not text") from exc
            try:
                loaded = patch_set(source, [], [text])
            except PatchError as exc:
                # Its message would quote the text: say which Secret only.
                raise InvalidInput(f"{source}: the value is not a Talos patch") from exc
            out.setdefault(pool_name, []).append(loaded)
    return out
