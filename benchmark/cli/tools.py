"""``musicbench encoders`` and ``random-weights``: what can run here, and checkpoints for smoke tests."""

from __future__ import annotations

from pathlib import Path

import click

from .common import friendly
from .group import main


@main.command("encoders")
@click.argument("names", nargs=-1)
@click.option("--weights", type=click.Path(path_type=Path), help="Check this weights path for every encoder.")
@click.option("--detail", is_flag=True, help="Import the plug-ins too: their model cards and whether they run here.")
@click.option("--trust-remote-code", is_flag=True, help="hf: names: allow a model's own code (see run --help).")
def list_encoders(names, weights, detail, trust_remote_code) -> None:
    """List every encoder: the built-in ones with their model card and whether they can run here (and why not),
    then the plug-ins (musicbench.encoders entry points) with the package they come from.

    Plug-ins are not imported by the plain listing (only found); --detail imports them, and NAMES (any encoder
    names, also hf:<model> or package.module:Class) describes just those, in full. A plug-in that cannot be imported
    is listed as unavailable with its error.
    """
    from encoders import registry

    options = registry.EncoderOptions(weights=str(weights) if weights else None, trust_remote_code=trust_remote_code)
    if names:
        for name in names:
            _echo_row(registry.describe(name, options))
        return
    for row in registry.describe_all(options):
        _echo_row(row)
    rows = registry.describe_plugins(load=detail, options=options)
    if rows:
        click.echo(f"\nPlug-ins ({'imported' if detail else 'not imported: --detail or NAME describes them'}):")
    for row in rows:
        _echo_row(row)


def _echo_row(row: dict) -> None:
    if row["runs_here"] is None:
        status = click.style("found", fg="yellow")
    else:
        status = click.style("ready", fg="green") if row["runs_here"] else click.style("unavailable", fg="red")
    click.echo(f"{row['name']:<14} {status}  {row.get('description', row.get('target', ''))}")
    if row.get("source") and row["source"] != "musicbench (built-in)":
        click.echo(f"    from {row['source']}" + (f", entry point {row['target']}" if row.get("target") else ""))
    if "sample_rate" in row:
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
