"""``musicbench report``: a suite's runs, read back from MLflow, as one self-contained document."""

from __future__ import annotations

import click

from .common import comma_list
from .group import main
from .options import choice_option, optional_path, run_selection_options
from .results import store_checked


@main.command()
@run_selection_options("Report on")
@choice_option(
    "--format",
    "fmt",
    choices=["html", "md", "marp"],
    default="html",
    help="html: one file, images embedded, sortable tables; md: Markdown (images as data: URIs); marp: a Marp deck.",
)
@click.option(
    "--out", callback=optional_path, help="Output folder [default: ./comparison/<parent run id or timestamp>]."
)
def report(parent, runs, experiment, fmt, out) -> None:
    """Write the report of a suite: run set, encoders, metrics, comparison with CIs and paired tests, findings
    (only where the paired CI excludes 0), figures, per-group and per-track tables, failed runs.

    Prints the report's path; logs it under report/ of the parent run. Exit status: 0 written; 1 the runs cannot be
    found or none finished; 2 the store is unusable.
    """
    from .. import report as report_module

    store_checked()
    try:
        outcome = report_module.make_report(
            parent=parent or None, run_ids=comma_list(runs) or None, experiment=experiment or None, fmt=fmt, out_dir=out
        )
    except report_module.ReportError as error:
        raise click.ClickException(str(error)) from None
    for encoder, run_id, why in outcome.failed:
        click.echo(f"Failed run named in the report: {encoder} ({run_id}): {why}", err=True)
    where = f"logged to run {outcome.logged_to}" if outcome.logged_to else "not logged (the runs have no parent run)"
    click.echo(f"Report {where}:", err=True)
    click.echo(str(outcome.path))
