"""``musicbench encoders`` and ``random-weights``: what can run here, and checkpoints for smoke tests."""

from __future__ import annotations

from pathlib import Path

import click

from .common import friendly
from .group import main


@main.command("encoders")
@click.option("--weights", type=click.Path(path_type=Path), help="Check this weights path for every encoder.")
def list_encoders(weights) -> None:
    """List every registered encoder, its model card, and whether it can run here (and why not)."""
    from encoders.registry import EncoderOptions, describe_all

    for row in describe_all(EncoderOptions(weights=str(weights) if weights else None)):
        status = click.style("ready", fg="green") if row["runs_here"] else click.style("unavailable", fg="red")
        click.echo(f"{row['name']:<14} {status}  {row['description']}")
        click.echo(
            f"    sample rate {row['sample_rate']} Hz, dim {row['dim']}, {row['window']}, "
            f"package {row['package']}, weights {row['weights']}, license {row['license']}"
        )
        click.echo(f"    {row['detail']}")


@main.command("random-weights")
@click.argument("name")
@click.argument("directory", type=click.Path(path_type=Path))
@friendly
def random_weights(name, directory) -> None:
    """Write a RANDOM-INIT checkpoint of encoder or metric NAME in its library's own format.

    For smoke tests of the real loading path only: scores computed with it are noise.
    """
    from encoders.registry import ENCODERS, write_random_weights
    from metrics import registry as metric_registry

    directory.mkdir(parents=True, exist_ok=True)
    if name in ENCODERS:
        path = write_random_weights(name, directory)
        hint = f"musicbench run --encoder {name} --weights {path}"
    else:
        metric = type(metric_registry.create(name))
        if not hasattr(metric, "write_random_weights"):
            raise click.ClickException(f"'{name}' has no weights to write")
        path = metric.write_random_weights(directory)
        hint = f"musicbench run ... --metric-weights {name}={path}"
    click.echo(f"wrote random-init weights for {name}: {path}")
    click.echo(f"use: {hint}")
