"""``arges talos gen-config``: Talos configs without talosctl, as ``talosctl gen config`` does."""

from __future__ import annotations

from pathlib import Path

import click

from arges.talos.configgen import ClusterInput
from arges.talos.errors import TalosError
from arges.talos.patches import PatchSet, load
from arges.talos.render import render
from arges.talos.secrets import SecretsBundle, generate
from arges.talos.talosconfig import talosconfig


@click.group()
def talos() -> None:
    """Talos machine configs and secrets."""


def _patches(values: tuple[str, ...], source: str) -> PatchSet:
    patches = []
    for value in values:
        text = Path(value[1:]).read_text() if value.startswith("@") else value
        try:
            patches.append(load(text))
        except TalosError as exc:
            raise click.BadParameter(f"{value}: {exc}") from exc
    return PatchSet(source, tuple(patches))


@talos.command("gen-config")
@click.argument("cluster")
@click.argument("endpoint")
@click.option(
    "--output-dir",
    "-o",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(),
    show_default=True,
    help="Where to write the files.",
)
@click.option(
    "--talos-version",
    default="v1.11",
    show_default=True,
    help="Talos config contract to generate for.",
)
@click.option(
    "--kubernetes-version",
    default=None,
    help="Kubernetes version (default: the Talos line's default).",
)
@click.option("--install-disk", default="/dev/sda", show_default=True)
@click.option("--install-image", default=None, help="Installer image (default: this Talos line).")
@click.option("--additional-sans", multiple=True, help="Extra certificate SANs.")
@click.option("--config-patch", multiple=True, help="Patch for every machine (text or @file).")
@click.option(
    "--config-patch-control-plane", multiple=True, help="Patch for control planes (text or @file)."
)
@click.option("--config-patch-worker", multiple=True, help="Patch for workers (text or @file).")
@click.option(
    "--with-secrets",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="Reuse this secrets.yaml instead of generating one.",
)
@click.option("--force", is_flag=True, help="Overwrite existing files.")
def gen_config(
    cluster: str,
    endpoint: str,
    output_dir: Path,
    talos_version: str,
    kubernetes_version: str | None,
    install_disk: str,
    install_image: str | None,
    additional_sans: tuple[str, ...],
    config_patch: tuple[str, ...],
    config_patch_control_plane: tuple[str, ...],
    config_patch_worker: tuple[str, ...],
    with_secrets: Path | None,
    force: bool,
) -> None:
    """Write secrets.yaml, controlplane.yaml, worker.yaml and talosconfig for CLUSTER.

    ENDPOINT is the Kubernetes API URL, e.g. https://10.5.0.10:6443.
    """
    spec = ClusterInput(
        cluster_name=cluster,
        endpoint=endpoint,
        talos_version=talos_version,
        kubernetes_version=kubernetes_version,
        install_disk=install_disk or None,
        install_image=install_image,
        additional_sans=additional_sans,
    )
    outputs = {
        name: output_dir / name
        for name in ("secrets.yaml", "controlplane.yaml", "worker.yaml", "talosconfig")
    }
    if with_secrets is not None:
        outputs.pop("secrets.yaml")
    existing = [str(p) for p in outputs.values() if p.exists()]
    if existing and not force:
        raise click.ClickException(f"refusing to overwrite {', '.join(existing)} (use --force)")
    every = _patches(config_patch, "--config-patch")
    bundle = SecretsBundle.from_yaml(with_secrets.read_text()) if with_secrets else generate()
    files = {
        "controlplane.yaml": render(
            bundle,
            "controlplane",
            spec,
            [every, _patches(config_patch_control_plane, "--config-patch-control-plane")],
        ),
        "worker.yaml": render(
            bundle,
            "worker",
            spec,
            [every, _patches(config_patch_worker, "--config-patch-worker")],
        ),
        "talosconfig": talosconfig(bundle, cluster),
    }
    if with_secrets is None:
        files["secrets.yaml"] = bundle.to_yaml()
    output_dir.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        path = outputs[name]
        path.write_text(text)
        # Private keys live in these files; talosctl's secrets.yaml is 0600 too.
        path.chmod(0o600 if name in ("secrets.yaml", "talosconfig", "controlplane.yaml") else 0o644)
        click.echo(f"wrote {path}")
