"""The ``musicbench`` click group; the commands are added by the modules of this package."""

from __future__ import annotations

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="musicbench")
def main() -> None:
    """musicbench: which audio embedding finds the right song? One MLflow run per encoder."""
    from encoders.runtime import set_offline_defaults

    set_offline_defaults()
