"""The rmq-watchdog command line (click): one entry point, subcommands per job."""

from __future__ import annotations

import click

from . import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rmq-watchdog")
def cli() -> None:
    """Automatic, explained master failover for Apache RocketMQ 4.x master/slave clusters."""


def main() -> None:
    cli()
