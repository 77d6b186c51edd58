"""The built-in Environments' specs."""

from __future__ import annotations

from pathlib import Path

from arges.api.environment import Asset, EnvironmentSpec, Kernel

TALOS_VERSION = "v1.11.6"
TALOS_RELEASES = "https://github.com/siderolabs/talos/releases/download"

TALOS_KERNEL_ARGS = (
    "console=tty0",
    "console=ttyS0,115200n8",
    "consoleblank=0",
    "init_on_alloc=1",
    "initrd=initramfs.xz",
    "nvme_core.io_timeout=4294967295",
    "printk.devkmsg=on",
    "pti=on",
    "selinux=1",
    "slab_nomerge=",
    "talos.platform=metal",
)
"""Talos v1.11's ``kernel.DefaultArgs()`` for metal/amd64 plus a serial console
(``reference/talos-capi.md`` §4.1); ``talos.config=`` is added per request by the boot
service."""


def talos_default(
    version: str = TALOS_VERSION, kernel_url: str | None = None, initrd_url: str | None = None
) -> EnvironmentSpec:
    """The ``default`` Environment: Talos ``version`` from its GitHub release, or the URLs
    given (``file://`` for an offline mirror)."""
    base = f"{TALOS_RELEASES}/{version}"
    return EnvironmentSpec(
        kernel=Kernel(url=kernel_url or f"{base}/vmlinuz-amd64", args=list(TALOS_KERNEL_ARGS)),
        initrd=Asset(url=initrd_url or f"{base}/initramfs-amd64.xz"),
    )


AGENT_KERNEL_ARGS = ("console=ttyS0,115200n8", "console=tty0")
"""The agent's kernel arguments: both consoles (its ``/init`` writes to every active one);
``arges.url=`` and ``arges.mac=`` are added per request by the boot service."""


def agent_default(
    kernel: Path, kernel_sha512: str, initrd: Path, initrd_sha512: str
) -> EnvironmentSpec:
    """The ``agent`` Environment: the image ``arges agent build`` made (or one given with
    ``--agent-image``), as ``file://`` URLs pinned by SHA-512."""
    return EnvironmentSpec(
        kernel=Kernel(url=kernel.as_uri(), sha512=kernel_sha512, args=list(AGENT_KERNEL_ARGS)),
        initrd=Asset(url=initrd.as_uri(), sha512=initrd_sha512),
    )


def talos_stand_in(agent: EnvironmentSpec, initrd: Path, initrd_sha512: str) -> EnvironmentSpec:
    """A ``default`` Environment for a lab that cannot have Talos: the agent's kernel with
    Talos' kernel arguments and the stand-in initramfs (``initrd``: the agent's with the fake
    apid added, :mod:`arges.lab.standin`). Given ``talos.config=`` (as every target
    Environment is), the agent does what Talos does at that point: it fetches its machine
    config from the metadata service, checks it, writes it to the first disk and reports it
    installed; beside it the fake apid answers Talos' API for that config. In production
    ``default`` is Talos' own kernel and initramfs."""
    return EnvironmentSpec(
        kernel=Kernel(
            url=agent.kernel.url, sha512=agent.kernel.sha512, args=list(TALOS_KERNEL_ARGS)
        ),
        initrd=Asset(url=initrd.as_uri(), sha512=initrd_sha512),
    )
