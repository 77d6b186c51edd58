"""etcd's bootstrap and the admin kubeconfig of a TalosCluster.

etcd is bootstrapped once, on the oldest control plane (:func:`arges.metal.clusters.
bootstrap_member`), when it is installed (Talos ``Bootstrap``; AlreadyExists means done, so a
controller restarted between the call and recording it asks the same node again), recorded as
condition ``Bootstrapped``; then the admin kubeconfig is fetched once (Talos ``Kubeconfig``)
into ``<cluster>-kubeconfig`` (condition ``KubeconfigAvailable``).
"""

from __future__ import annotations

from arges.controllers.clusters.observe import Talos
from arges.controllers.clusters.owned import KUBECONFIG_KEY, create_once, kubeconfig_name, read
from arges.controllers.clusters.state import BOOTSTRAPPED, KUBECONFIG, Round
from arges.metal.clusters import MemberView, bootstrap_member
from arges.metal.conditions import is_true
from arges.talos.errors import TalosApiError


async def bootstrap(
    state: Round, talos: Talos, views: list[MemberView], addresses: dict[str, str | None]
) -> None:
    """Bootstrap etcd once and fetch the kubeconfig once (see the module docstring);
    ``addresses`` maps members to their Talos API addresses."""
    first = bootstrap_member(views)
    if first is None:
        return
    address = addresses.get(first.server)
    if not is_true(state.conditions, BOOTSTRAPPED):
        if not first.installed:
            state.set(
                BOOTSTRAPPED,
                "False",
                "WaitingForInstall",
                f"etcd is bootstrapped on {first.server} once it is installed",
            )
            return
        if address is None:
            state.set(
                BOOTSTRAPPED,
                "False",
                "NoAddress",
                f"no address is known for {first.server}'s Talos API",
            )
            state.requeue = True
            return
        try:
            fresh = await talos.api.bootstrap(address, talos.port)
        except TalosApiError as exc:
            state.set(
                BOOTSTRAPPED,
                "False",
                "TalosApiNotReady",
                f"bootstrap on {first.server} ({address}) failed, retrying: {exc}",
            )
            state.requeue = True
            return
        what = "bootstrapped" if fresh else "found already bootstrapped"
        state.set(BOOTSTRAPPED, "True", "Bootstrapped", f"etcd {what} on {first.server}")
        await state.event("Bootstrapped", f"etcd {what} on {first.server}")
    name = kubeconfig_name(state.cluster.name)
    if await read(state.kube, state.cluster, name, KUBECONFIG_KEY) is not None:
        state.set(KUBECONFIG, "True", "Fetched", "the admin kubeconfig is in its Secret")
        return
    if address is None:
        state.set(KUBECONFIG, "False", "NoAddress", f"no address is known for {first.server}")
        state.requeue = True
        return
    try:
        kubeconfig = await talos.api.kubeconfig(address, talos.port)
    except TalosApiError as exc:
        state.set(KUBECONFIG, "False", "TalosApiNotReady", f"fetching it failed: {exc}")
        state.requeue = True
        return
    await create_once(state.kube, state.cluster, name, KUBECONFIG_KEY, lambda: kubeconfig)
    state.set(KUBECONFIG, "True", "Fetched", "the admin kubeconfig is in its Secret")
