"""``arges agent ...``: the discovery agent's boot image."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import click

from arges.agent.image import BuildError, Image, ensure, prebuilt
from arges.agent.image.iso import build_iso
from arges.api.environment import EnvironmentSpec
from arges.cli import options
from arges.metal.environments import AGENT_KERNEL_ARGS, agent_default


@click.group()
def agent() -> None:
    """The discovery agent's boot image (a kernel and an initramfs from Debian packages)."""


@agent.command()
@options.data_dir("Where images are cached (DATA_DIR/agent/<key>) and packages kept.")
@click.option(
    "--output-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Also copy vmlinuz, initramfs.img and manifest.json here (for --agent-image).",
)
@click.option(
    "--iso",
    is_flag=True,
    help="Also make agent.iso: the image as an ISO that boots on BIOS and UEFI (for BMC "
    "virtual media; Arges makes one per Server itself, this one is for other uses).",
)
@click.option(
    "--arges-url",
    default=None,
    metavar="URL",
    help="With --iso: the boot HTTP URL the agent registers with (arges.url=, e.g. "
    "http://10.0.0.1:8081); without it the ISO's agent has nowhere to register.",
)
def build(data_dir: Path, output_dir: Path | None, iso: bool, arges_url: str | None) -> None:
    """Build the agent image, or reuse the cached one built from the same inputs.

    Downloads the Debian packages with apt-get the first time (about 80 MB).
    """
    started = time.monotonic()
    try:
        image = ensure(data_dir)
    except BuildError as exc:
        raise click.ClickException(f"cannot build the agent image: {exc}") from exc
    took = time.monotonic() - started
    click.echo(f"{'cached' if image.reused else 'built'} in {took:.1f} s: {image.directory}")
    for path, digest in ((image.kernel, image.kernel_sha512), (image.initrd, image.initrd_sha512)):
        size = path.stat().st_size / 2**20
        click.echo(f"  {path.name:<14} {size:6.1f} MiB  sha512 {digest[:32]}...")
    names = ["vmlinuz", "initramfs.img", "manifest.json"]
    if iso:
        args = list(AGENT_KERNEL_ARGS) + (
            [f"arges.url={arges_url.rstrip('/')}"] if arges_url else []
        )
        started = time.monotonic()
        try:
            path = build_iso(image.kernel, image.initrd, args, image.directory / "agent.iso")
        except BuildError as exc:
            raise click.ClickException(f"cannot build the agent ISO: {exc}") from exc
        size = path.stat().st_size / 2**20
        click.echo(f"  {path.name:<14} {size:6.1f} MiB  in {time.monotonic() - started:.1f} s")
        click.echo(f"  kernel arguments: {' '.join(args)}")
        names.append(path.name)
    if output_dir is not None:
        output_dir.mkdir(parents=True, exist_ok=True)
        for name in names:
            shutil.copyfile(image.directory / name, output_dir / name)
        click.echo(f"copied to {output_dir}")


def agent_environment(data_dir: Path, prebuilt_dir: Path | None) -> EnvironmentSpec | None:
    """The ``agent`` Environment for ``arges up``: the prebuilt image in ``prebuilt_dir``,
    else the cached or newly built one; None (after saying why) when there is none."""
    try:
        image: Image
        if prebuilt_dir is not None:
            image = prebuilt(prebuilt_dir)
        else:
            click.echo("agent image: building or reusing the cached one ...", err=True)
            image = ensure(data_dir)
    except BuildError as exc:
        click.echo(
            f"warning: no agent image ({exc}); the 'agent' Environment is left out, so "
            "network-booting servers cannot be discovered until one exists (try "
            "`arges agent build`, or pass --agent-image DIR)",
            err=True,
        )
        return None
    click.echo(f"agent image: {image.directory}", err=True)
    return agent_default(image.kernel, image.kernel_sha512, image.initrd, image.initrd_sha512)
