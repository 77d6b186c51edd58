"""Environment: what a server boots, a kernel and an initrd (``metal.arges.dev/v1alpha1``).

Assets are fetched into Arges' asset cache (``file://``, ``http://`` or ``https://`` URLs),
checked against their sha512 when one is given, and served to servers over HTTP. Two exist out
of the box: ``agent`` (the discovery image Arges builds) and ``default`` (Talos).
"""

from __future__ import annotations

from pydantic import Field

from arges.api.base import Condition, Model, Object

AGENT_ENVIRONMENT = "agent"
DEFAULT_ENVIRONMENT = "default"
BUILT_IN = "metal.arges.dev/built-in"
"""Annotation (``"true"``) on the Environments Arges creates and keeps in step with its
configuration; removing it hands one over to its users."""


class Asset(Model):
    """A file to fetch: where from, and its expected digest."""

    url: str = Field(description="file://, http:// or https:// URL of the file.")
    sha512: str | None = Field(
        default=None, description="Expected SHA-512 (hex); a mismatch is never served."
    )


class Kernel(Asset):
    """The kernel, with its command line."""

    args: list[str] | None = Field(default=None, description="Kernel command-line arguments.")


class EnvironmentSpec(Model):
    """The kernel and initrd to boot."""

    kernel: Kernel
    initrd: Asset


class AssetStatus(Model):
    """What is in the cache for one asset."""

    url: str = Field(description="The URL the cached copy came from.")
    sha512: str = Field(description="SHA-512 of the cached copy.")
    size: int = Field(description="Size in bytes.")


class EnvironmentStatus(Model):
    """Whether the assets are cached and verified (condition Ready)."""

    kernel: AssetStatus | None = None
    initrd: AssetStatus | None = None
    conditions: list[Condition] | None = None


class Environment(Object):
    """Environment is what a server network-boots: a kernel with its arguments and an initrd,
    fetched into Arges' asset cache and verified before they are served."""

    api_version: str = "metal.arges.dev/v1alpha1"
    kind: str = "Environment"
    spec: EnvironmentSpec
    status: EnvironmentStatus = Field(default_factory=EnvironmentStatus)
