"""``musicbench compare``, ``regress`` and ``baseline``: read runs back, compare them, gate on regressions."""

from __future__ import annotations

import click

from .common import Refused, comma_list, echo_comparison
from .group import main
from .options import choice_option, experiment_option, optional_path, optional_text, run_selection_options


def store_checked() -> None:
    """The bounded pre-flight of the tracking store (``store.check``): an unusable store is one line, exit 2."""
    from ..store import StoreError, check

    try:
        check()
    except StoreError as error:
        raise Refused(str(error)) from None


@main.command()
@run_selection_options("Compare")
@click.option(
    "--metrics",
    "metric_names",
    default="",
    callback=optional_text,
    help="Metrics to compare, m,m,… [default: the headline (retrieval quality) metrics logged: map, mrr, "
    "recall_at_k, ndcg_at_k, hit_rate_at_1, melody_acc_top1_mean]. sim_top1_mean, a cosine in each encoder's own "
    "space, can be listed but is never ranked.",
)
@click.option(
    "--out", callback=optional_path, help="Output folder [default: ./comparison/<parent run id or timestamp>]."
)
def compare(parent, experiment, runs, metric_names, out) -> None:
    """Compare encoder runs read back from MLflow: table, per-target top-1 table and figures.

    Writes CSV/markdown/PNG files to --out and logs them under comparison/ of the parent run (or of a new run
    tagged musicbench.comparison=true). Values come with their bootstrap 95% CIs; per metric, `<m>_vs_best`
    says best / tied (the paired 95% bootstrap CI of the per-target difference to the best includes 0; hit
    rates: McNemar's exact p ≥ 0.05) / below (a difference the data support); runs without per-target values
    fall back to whether the two CIs overlap (no CI: one has none).
    """
    from .. import compare as compare_module

    store_checked()
    run_ids = comma_list(runs)
    try:
        outcome = compare_module.compare(
            parent=parent or None,
            experiment=experiment or None,
            run_ids=run_ids or None,
            metrics=comma_list(metric_names) or None,
            out_dir=out,
        )
    except compare_module.CompareError as error:
        raise click.ClickException(str(error)) from None
    for encoder, run_id, why in outcome.selection.skipped:
        click.echo(f"Skipped {encoder} ({run_id}): {why}", err=True)
    echo_comparison(outcome)
    click.echo(f"Logged to run {', '.join(outcome.logged_to)}", err=True)


class _NothingToCheck(click.ClickException):
    exit_code = 2


class Regression(click.ClickException):
    """A metric dropped: exit status 3, distinct from a failure of the command itself (1)."""

    exit_code = 3


@main.command()
@click.option(
    "--baseline",
    required=True,
    metavar="RUN_ID|tag|previous",
    help="A run id; 'tag' = each encoder's latest run tagged baseline=true; 'previous' = each "
    "encoder's previous finished run.",
)
@click.option(
    "--tolerance",
    type=click.FloatRange(min=0),
    default=0.02,
    show_default=True,
    help="Allowed drop (absolute units, or a fraction of the baseline in relative mode).",
)
@choice_option(
    "--mode",
    choices=["absolute", "relative", "ci"],
    default="absolute",
    help="absolute: drop > tol; relative: drop > tol × baseline; ci: below the baseline's CI low.",
)
@click.option(
    "--experiment",
    default=None,
    callback=experiment_option,
    help="Experiment searched for the candidate and for 'tag'/'previous' baselines [default: every experiment of "
    "the tracking store, runs found by their musicbench.encoder tag].",
)
@click.option(
    "--metrics",
    "metric_names",
    default="",
    callback=optional_text,
    help="Metrics to check, m,m,… (with or without their MLflow section: map or retrieval/map) [default: the "
    "headline metrics present in both runs].",
)
def regress(baseline, tolerance, mode, experiment, metric_names) -> None:
    """Check each encoder's latest finished run against a baseline run; fail on any metric drop.

    Prints metric, baseline, candidate, delta and verdict per encoder and tags the candidate run
    (regress.verdict=pass|fail, regress.baseline, regress.failed_metrics). Exit status: 0 no drop; 3 a
    metric dropped (named); 2 nothing could be checked (no baseline found) or the store is unusable.
    """
    from .. import regress as regress_module

    store_checked()
    try:
        report = regress_module.regress(baseline, tolerance, mode, experiment, comma_list(metric_names) or None)
    except regress_module.RegressError as error:
        raise _NothingToCheck(str(error)) from None
    click.echo(regress_module.format_report(report))
    if report.failed:
        raise Regression(
            "regression: " + "; ".join(f"{p.encoder} dropped on {', '.join(p.failed_metrics)}" for p in report.failed)
        )
    click.echo("no regression")


@main.group()
def baseline() -> None:
    """Pin or unpin regression baselines (the run tag baseline=true, used by `regress --baseline tag`)."""


def _set_baseline_tag(run_id: str, pinned: bool) -> str:
    from .. import runs, tracking

    store_checked()
    client = runs.client()
    try:
        run = runs.get_run(client, run_id)
    except runs.RunNotFound as error:
        raise click.ClickException(str(error)) from None
    tracking.set_baseline(client, run_id, pinned)
    return runs.encoder_of(run)


@baseline.command("pin")
@click.argument("run_id")
def baseline_pin(run_id) -> None:
    """Tag RUN_ID baseline=true."""
    encoder = _set_baseline_tag(run_id, True)
    click.echo(f"pinned {run_id} ({encoder}) as baseline")


@baseline.command("unpin")
@click.argument("run_id")
def baseline_unpin(run_id) -> None:
    """Remove the baseline tag of RUN_ID."""
    encoder = _set_baseline_tag(run_id, False)
    click.echo(f"unpinned {run_id} ({encoder})")
