"""One machine's config: generated for its role, then patched (cluster, pool, class, server)."""

from __future__ import annotations

from collections.abc import Sequence

from arges.talos.configgen import ClusterInput, MachineType, machine_config
from arges.talos.documents import encode
from arges.talos.patches import PatchSet, apply
from arges.talos.secrets import SecretsBundle


def render(
    bundle: SecretsBundle,
    machine_type: MachineType,
    spec: ClusterInput,
    patch_sets: Sequence[PatchSet] = (),
) -> str:
    """The machine config YAML of one machine, with ``patch_sets`` applied in order.

    Raises:
        InvalidInput: a bad endpoint or patch; UnsupportedVersion: an unknown Talos version;
        PatchError: a patch that does not apply, naming it.
    """
    return encode(apply([machine_config(bundle, machine_type, spec)], patch_sets))
