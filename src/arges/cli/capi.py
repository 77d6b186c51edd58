"""``arges capi``: Arges as a Cluster API infrastructure provider, for clusterctl."""

from __future__ import annotations

from pathlib import Path

import click

from arges.api.manifests import COMPONENT_VARIABLES, PROVIDER_VERSION, repository


@click.group()
def capi() -> None:
    """Cluster API: Arges as the infrastructure provider (MetalCluster, MetalMachine)."""


@capi.command("components")
@click.option(
    "--output-dir",
    "-o",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Where to write the clusterctl repository and its configuration.",
)
def components(output_dir: Path) -> None:
    """Write a clusterctl provider repository: infrastructure-components.yaml (CRDs, RBAC,
    the Deployment running `arges up --in-cluster`), metadata.yaml and cluster-template.yaml,
    plus clusterctl.yaml pointing at them."""
    config = repository(output_dir)
    click.echo(f"infrastructure-arges {PROVIDER_VERSION} written under {output_dir}")
    click.echo(f"  clusterctl init --infrastructure arges --config {config}")
    click.echo(
        f"  clusterctl generate cluster NAME --infrastructure arges --config {config} "
        "--kubernetes-version v1.34.1 --control-plane-machine-count 1 "
        "--worker-machine-count 1"
    )
    click.echo("Component variables (all have defaults):")
    for name, meaning in COMPONENT_VARIABLES.items():
        click.echo(f"  {name}: {meaning}")
