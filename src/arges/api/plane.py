"""ManagementPlane: the switch every Arges instance on one API honours (``metal.arges.dev``).

One cluster-scoped object named ``arges`` per API server, created unpaused by the first
instance that finds none. While ``spec.paused`` is true (as Cluster API's ``spec.paused``: the
objects stay, nothing acts on them), no controller of any Arges instance using that API starts
a reconcile, and the boot HTTP service answers 503 (retry) to ``/ipxe``, ``/configdata`` and
the agent: nothing writes. Each running instance says so in ``status.instances`` (its id,
whether it is paused, the generation it has seen, a heartbeat), once the reconciles it had
under way have finished: that acknowledgement is what a person (or a move between API servers,
issue #18) waits for before touching the objects.
"""

from __future__ import annotations

from pydantic import Field

from arges.api.base import Model, Object, Time

PLANE_NAME = "arges"
"""The one ManagementPlane object of an API server."""


class ManagementPlaneSpec(Model):
    """Whether the plane acts."""

    paused: bool = Field(
        default=False,
        description="Stop every controller and refuse boot requests (503) on this API.",
    )
    reason: str | None = Field(default=None, description="Why it is paused, for people.")


class PlaneInstance(Model):
    """One running Arges process, as it last reported itself."""

    id: str = Field(description="host/pid/random of the process.")
    paused: bool = Field(description="Whether it holds its controllers and refuses boots.")
    observed_generation: int = Field(
        description="The spec generation this state answers (acknowledges)."
    )
    heartbeat: Time = Field(description="When it last reported (every 30 s).")


class ManagementPlaneStatus(Model):
    """The instances using this API."""

    instances: list[PlaneInstance] | None = None


class ManagementPlane(Object):
    """ManagementPlane pauses every Arges instance using this API (``spec.paused``). One
    object, named ``arges``."""

    api_version: str = "metal.arges.dev/v1alpha1"
    kind: str = "ManagementPlane"
    spec: ManagementPlaneSpec = Field(default_factory=ManagementPlaneSpec)
    status: ManagementPlaneStatus = Field(default_factory=ManagementPlaneStatus)
