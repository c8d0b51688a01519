"""The ``musicbench`` command line. The only module that knows click; heavy imports happen inside commands."""
from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

import click

from .config import DEFAULT_BATCH_SIZE, DEFAULT_EXPERIMENT, DEFAULT_K, RunConfig, default_cache_dir

DEMO_ENCODERS = "mfcc,chroma"


def _user_errors():
    """The exception types that are the user's to fix: shown as one line, no traceback."""
    from encoders.base import EncoderUnavailable
    from encoders.registry import UnknownEncoder
    from metrics.base import MetricUnavailable

    from .data import DatasetError
    from .pipeline import RunError

    return (DatasetError, EncoderUnavailable, UnknownEncoder, MetricUnavailable, RunError)


def _friendly(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except _user_errors() as error:
            raise click.ClickException(str(error)) from None

    return wrapper


def _name_path_pairs(values: tuple[str, ...], what: str, option: str) -> dict[str, str]:
    """``NAME=PATH`` options (repeatable) → {name: path}; '' (an empty ``mlflow run`` parameter) is skipped."""
    out = {}
    for value in values:
        if not value:
            continue
        name, sep, path = value.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise click.BadParameter(f"expected {what}=PATH, got '{value}'", param_hint=option)
        out[name.strip()] = str(Path(path.strip()).expanduser())
    return out


def _comma_list(text: str | None) -> list[str]:
    """``a, b,,a`` → ``[a, b]``: stripped, empty parts dropped, duplicates dropped in order."""
    return list(dict.fromkeys(part.strip() for part in (text or "").split(",") if part.strip()))


def _optional_path(ctx, param, value):
    """Paths may arrive as '' from ``mlflow run`` parameters: treat that as not given."""
    return Path(value).expanduser() if value else None


def _optional_float(ctx, param, value):
    if value in (None, ""):
        return None
    try:
        number = float(value)
    except ValueError:
        raise click.BadParameter(f"'{value}' is not a number") from None
    if number <= 0:
        raise click.BadParameter("must be positive")
    return number


def run_options(fn):
    """Options shared by ``run`` and ``suite``."""
    options = [
        click.option("--refs", callback=_optional_path, help="Folder of reference songs (recursive). "
                     "Omit --refs and --targets to use the embedded demo set."),
        click.option("--targets", callback=_optional_path, help="Folder of target (query) songs."),
        click.option("--ground-truth", callback=_optional_path,
                     help="CSV with columns target,reference[,relevance] (enables MAP, MRR, recall, nDCG)."),
        click.option("--k", "k", type=click.IntRange(min=1), default=DEFAULT_K, show_default=True,
                     help="How many references to retrieve per target."),
        click.option("--metrics", default="auto", show_default=True,
                     help="Pair metrics: auto (what can run; skipped ones are tagged), all, none, or name,name."),
        click.option("--metric-weights", multiple=True, metavar="METRIC=PATH",
                     help="Weights of a pair metric's model, e.g. aesthetics=/path/checkpoint.pt (repeatable)."),
        click.option("--allow-download", is_flag=True,
                     help="Let model packages download missing weights from the Hugging Face hub."),
        click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True),
        click.option("--batch-size", type=click.IntRange(min=1), default=DEFAULT_BATCH_SIZE, show_default=True,
                     help="Windows per encoder call."),
        click.option("--window", "window_seconds", callback=_optional_float,
                     help="Embed in windows of this many seconds (mean-pooled) instead of the encoder's default."),
        click.option("--hop", "hop_seconds", callback=_optional_float,
                     help="Hop between windows in seconds (default: the window)."),
        click.option("--cache-dir", callback=_optional_path,
                     help=f"Embedding cache [default: {default_cache_dir()}]"),
        click.option("--experiment", default=DEFAULT_EXPERIMENT, show_default=True, help="MLflow experiment."),
        click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True,
                     help="Decode threads."),
        click.option("--no-progress", is_flag=True, help="Hide progress bars."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _dataset_paths(refs, targets, ground_truth, progress: bool):
    if refs is None and targets is None:
        from .demo import build_demo

        demo = build_demo(progress=progress)
        click.echo(f"Using the embedded demo set at {demo.root}", err=True)
        return demo.refs, demo.targets, ground_truth or demo.ground_truth
    if refs is None or targets is None:
        raise click.UsageError("give both --refs and --targets (or neither, for the demo set)")
    return refs, targets, ground_truth


def make_config(encoder: str, **kw) -> RunConfig:
    refs, targets, ground_truth = _dataset_paths(kw.pop("refs"), kw.pop("targets"), kw.pop("ground_truth"),
                                                 not kw["no_progress"])
    kw.pop("no_progress")
    if kw.get("allow_download"):
        os.environ["MUSICBENCH_ALLOW_DOWNLOAD"] = "1"
    cache_dir = kw.pop("cache_dir") or default_cache_dir()
    return RunConfig(encoder=encoder, refs=refs, targets=targets, ground_truth=ground_truth, cache_dir=cache_dir,
                     metric_weights=tuple(_name_path_pairs(kw.pop("metric_weights"), "METRIC",
                                                                  "--metric-weights").items()), **kw)


def run_and_report(config: RunConfig, progress: bool) -> None:
    """``musicbench run``: the dataset is checked at the edge (no MLflow run for a missing folder), then the one
    run path runs and records the encoder; a failure is one line (with its run), a bug keeps its traceback."""
    from . import pipeline, tracking

    dataset = pipeline.load(config)
    outcome = tracking.run_and_record(config, dataset, progress)
    if outcome.error is not None:
        if isinstance(outcome.error, _user_errors()):
            raise click.ClickException(f"{outcome.error} [run {outcome.run_id} FAILED]")
        raise outcome.error
    click.echo(tracking.summary_line(outcome.result))
    click.echo(f"MLflow run {outcome.run_id} in {tracking.tracking_uri()}")


def _echo_comparison(outcome) -> None:
    """A ``compare.Outcome`` on the terminal: the markdown table, then its warnings and where the files are."""
    click.echo(outcome.comparison.markdown())
    for warning in outcome.comparison.warnings:
        click.echo(f"Warning: {warning}", err=True)
    click.echo(f"Comparison files: {outcome.out_dir}", err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="musicbench")
def main() -> None:
    """musicbench: which audio embedding finds the right song? One MLflow run per encoder."""
    from encoders.runtime import set_offline_defaults

    set_offline_defaults()


@main.command()
@click.option("--encoder", "-e", required=True, help="Encoder name (see `musicbench encoders`).")
@click.option("--weights", callback=_optional_path, help="Encoder weights: checkpoint file or directory.")
@click.option("--run-name", help="MLflow run name [default: the encoder name].")
@run_options
@_friendly
def run(encoder, weights, run_name, **kw) -> None:
    """Embed, retrieve and score with one encoder; record everything in one MLflow run."""
    progress = not kw["no_progress"]
    config = make_config(encoder, weights=str(weights) if weights else None, run_name=run_name, **kw)
    run_and_report(config, progress)


@main.command()
@click.option("--encoders", default=DEMO_ENCODERS, show_default=True, help="Encoders to run on the demo set.")
@click.option("--build-only", is_flag=True, help="Only build (or find) the demo set and print where it is.")
@click.option("--force", is_flag=True, help="Rebuild the demo set even if it exists.")
@click.option("--no-progress", is_flag=True)
@click.pass_context
@_friendly
def demo(ctx, encoders, build_only, force, no_progress) -> None:
    """Build the embedded demo set (offline) and run a suite of encoders on it, with their comparison."""
    from .demo import build_demo

    demo_set = build_demo(force=force, progress=not no_progress)
    click.echo(f"Demo set: {demo_set.root} (refs: {demo_set.refs}, targets: {demo_set.targets}, "
               f"ground truth: {demo_set.ground_truth})", err=True)
    if build_only:
        return
    try:
        ctx.invoke(suite, encoders=encoders, refs=demo_set.refs, targets=demo_set.targets,
                   ground_truth=demo_set.ground_truth, no_progress=no_progress)
    finally:
        click.echo(f"Open the results: mlflow ui --backend-store-uri {_tracking_uri()}", err=True)


@main.command("encoders")
@click.option("--weights", type=click.Path(path_type=Path), help="Check this weights path for every encoder.")
def list_encoders(weights) -> None:
    """List every registered encoder, its model card, and whether it can run here (and why not)."""
    from encoders.registry import EncoderOptions, describe_all

    for row in describe_all(EncoderOptions(weights=str(weights) if weights else None)):
        status = click.style("ready", fg="green") if row["runs_here"] else click.style("unavailable", fg="red")
        click.echo(f"{row['name']:<14} {status}  {row['description']}")
        click.echo(f"    sample rate {row['sample_rate']} Hz, dim {row['dim']}, {row['window']}, "
                   f"package {row['package']}, weights {row['weights']}, license {row['license']}")
        click.echo(f"    {row['detail']}")


@main.command("random-weights")
@click.argument("name")
@click.argument("directory", type=click.Path(path_type=Path))
@_friendly
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


@main.command()
@click.option("--encoders", default=DEMO_ENCODERS, show_default=True, help="Comma-separated encoder names.")
@click.option("--weights", "weights", multiple=True, metavar="ENCODER=PATH",
              help="Weights of one encoder of the suite, e.g. clap=/path/630k-audioset-best.pt (repeatable).")
@click.option("--run-name", default="suite", show_default=True, help="MLflow name of the parent run.")
@click.option("--out", callback=_optional_path,
              help="Folder for the comparison files [default: ./comparison/<parent run id>].")
@run_options
@_friendly
def suite(encoders, weights, run_name, out, **kw) -> None:
    """Run several encoders as child runs of one parent run, then compare them.

    Each encoder gets its own nested MLflow run; an encoder that fails (missing weights, any error) ends its
    child FAILED with a failure_reason tag and the others still run. The parent ends FINISHED when at least
    one child finished (FAILED when none did) and gets the comparison of the finished children (see
    `musicbench compare`).

    Exit status: 0 when every encoder finished and the comparison was logged; 1 when any encoder failed
    (or the comparison could not be made).
    """
    from . import pipeline
    from . import suite as suite_module

    names = _comma_list(encoders)
    if not names:
        raise click.BadParameter("give at least one encoder", param_hint="--encoders")
    encoder_weights = _name_path_pairs(weights, "ENCODER", "--weights")
    progress = not kw["no_progress"]
    base = make_config(names[0], **kw)
    dataset = pipeline.load(base)
    try:
        result = suite_module.run_suite(base, names, encoder_weights, progress=progress, run_name=run_name,
                                        out_dir=out, echo=lambda line: click.echo(line, err=True), dataset=dataset)
    except suite_module.SuiteFailed as error:
        raise click.ClickException(str(error)) from None
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    if result.comparison is not None:
        _echo_comparison(result.comparison)
    click.echo(f"Suite parent run {result.parent_run_id} ({len(result.finished)} finished, "
               f"{len(result.failed)} failed) in {_tracking_uri()}", err=True)
    problems = [f"{c.encoder}: {c.failure_reason}" for c in result.failed]
    if result.comparison_error:
        problems.append(f"comparison: {result.comparison_error}")
    if problems:
        click.echo("Failed: " + "; ".join(problems), err=True)
        sys.exit(1)


def _tracking_uri() -> str:
    from .store import tracking_uri

    return tracking_uri()


@main.command()
@click.option("--parent", help="Compare the finished children of this suite parent run.")
@click.option("--experiment", help="Compare the latest finished run of every encoder in this experiment "
              f"[the default, with '{DEFAULT_EXPERIMENT}', when no option is given].")
@click.option("--runs", help="Compare exactly these runs: RUN_ID,RUN_ID,…")
@click.option("--metrics", "metric_names", default="",
              help="Metrics to compare, m,m,… [default: map, mrr, recall_at_k, ndcg_at_k, hit_rate_at_1, "
                   "sim_top1_mean, melody_acc_top1_mean — those logged].")
@click.option("--out", callback=_optional_path,
              help="Output folder [default: ./comparison/<parent run id or timestamp>].")
def compare(parent, experiment, runs, metric_names, out) -> None:
    """Compare encoder runs read back from MLflow: table, per-target top-1 table and figures.

    Writes CSV/markdown/PNG files to --out and logs them under comparison/ of the parent run (or of a new run
    tagged musicbench.comparison=true). Values come with their bootstrap 95% CIs; per metric, `<m>_vs_best`
    says best / tied (CI overlaps the best's CI: statistically indistinguishable) / below (CIs disjoint) /
    no CI.
    """
    from . import compare as compare_module

    run_ids = _comma_list(runs)
    if not (parent or run_ids or experiment):
        experiment = DEFAULT_EXPERIMENT
    try:
        outcome = compare_module.compare(parent=parent or None, experiment=experiment or None,
                                         run_ids=run_ids or None, metrics=_comma_list(metric_names) or None,
                                         out_dir=out)
    except compare_module.CompareError as error:
        raise click.ClickException(str(error)) from None
    for encoder, run_id, why in outcome.selection.skipped:
        click.echo(f"Skipped {encoder} ({run_id}): {why}", err=True)
    _echo_comparison(outcome)
    click.echo(f"Logged to run {', '.join(outcome.logged_to)}", err=True)


class _NothingToCheck(click.ClickException):
    exit_code = 2


@main.command()
@click.option("--baseline", required=True, metavar="RUN_ID|tag|previous",
              help="A run id; 'tag' = each encoder's latest run tagged baseline=true; 'previous' = each "
                   "encoder's previous finished run.")
@click.option("--tolerance", type=click.FloatRange(min=0), default=0.02, show_default=True,
              help="Allowed drop (absolute units, or a fraction of the baseline in relative mode).")
@click.option("--mode", type=click.Choice(["absolute", "relative", "ci"]), default="absolute", show_default=True,
              help="absolute: drop > tol; relative: drop > tol × baseline; ci: below the baseline's CI low.")
@click.option("--experiment", default=DEFAULT_EXPERIMENT, show_default=True,
              help="Experiment searched with 'tag'/'previous' (with a run id: the baseline's experiment).")
@click.option("--metrics", "metric_names", default="",
              help="Metrics to check, m,m,… [default: the headline metrics present in both runs].")
def regress(baseline, tolerance, mode, experiment, metric_names) -> None:
    """Check each encoder's latest finished run against a baseline run; fail on any metric drop.

    Prints metric, baseline, candidate, delta and verdict per encoder and tags the candidate run
    (regress.verdict=pass|fail, regress.baseline, regress.failed_metrics). Exit status: 0 no drop; 1 a
    metric dropped (named); 2 nothing could be checked (no baseline found).
    """
    from . import regress as regress_module

    try:
        report = regress_module.regress(baseline, tolerance, mode, experiment, _comma_list(metric_names) or None)
    except regress_module.RegressError as error:
        raise _NothingToCheck(str(error)) from None
    click.echo(regress_module.format_report(report))
    if report.failed:
        raise click.ClickException("regression: " + "; ".join(
            f"{p.encoder} dropped on {', '.join(p.failed_metrics)}" for p in report.failed))
    click.echo("no regression")


@main.group()
def baseline() -> None:
    """Pin or unpin regression baselines (the run tag baseline=true, used by `regress --baseline tag`)."""


def _set_baseline_tag(run_id: str, pinned: bool) -> str:
    from . import runs, tracking

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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
