"""``arges``: the entry point; each subcommand lives in its own module."""

from __future__ import annotations

import logging

import click

from arges import __version__
from arges.cli.agent import agent
from arges.cli.capi import capi
from arges.cli.cluster import cluster
from arges.cli.constellation import constellation
from arges.cli.demo import demo
from arges.cli.importer import import_
from arges.cli.lab import lab
from arges.cli.logs import TEXT_FORMAT
from arges.cli.move import move_command
from arges.cli.secrets import secrets
from arges.cli.status import status
from arges.cli.talos import talos
from arges.cli.ui import ui
from arges.cli.up import up
from arges.errors import ArgesError
from arges.netguard import OncePerInterval


class _Arges(click.Group):
    """The CLI's boundary: an Arges error that no subcommand explained is shown once, as
    ``Error: <message>`` with exit status 1, instead of a traceback; other exceptions are bugs
    and keep theirs."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except ArgesError as exc:
            raise click.ClickException(str(exc)) from exc


@click.group(cls=_Arges, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="arges")
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
    help="How much to log (to standard error).",
)
def main(log_level: str) -> None:
    """Arges: bare-metal Kubernetes management plane."""
    root = logging.getLogger()
    # Handlers someone else installed (a program embedding the CLI, a test runner) are
    # theirs: only the ones configured here get the filter.
    ours = not root.handlers
    logging.basicConfig(
        level=getattr(logging, log_level.upper()),
        format=TEXT_FORMAT,
    )
    if ours:
        # A storm of one failure (a flood of bad packets, descriptors run out) logs a line a
        # minute per cause, not one per occurrence.
        for handler in root.handlers:
            handler.addFilter(OncePerInterval())


main.add_command(up)
main.add_command(talos)
main.add_command(agent)
main.add_command(cluster)
main.add_command(demo)
main.add_command(lab)
main.add_command(capi)
main.add_command(import_)
main.add_command(move_command)
main.add_command(constellation)
main.add_command(status)
main.add_command(ui)
main.add_command(secrets)
