"""``musicbench run``, ``suite`` and ``demo``: run encoders and record them."""

from __future__ import annotations

import gc
import sys

import click

from .checks import check_options, hf_names
from .common import (
    DEMO_ENCODERS,
    DEMO_SCENARIO_ENCODERS,
    comma_list,
    echo_comparison,
    friendly,
    name_path_pairs,
    shown_tracking_uri,
)
from .group import main
from .options import optional_path, run_options
from .run_config import make_config, run_and_report

SUITE_PARENT_META = "musicbench.suite_parent"  # ctx.meta: the parent run of the suite just run
DEMO_QUERY_SECONDS = 7.0  # robustness queries on the demo set (its pieces are 14-20 s: two excerpts fit)


def prestart(encoders: list[str], workers: int, folders: tuple = (), cache_dir=None) -> None:
    """First thing a run does: the fork server of the encoders' worker processes starts importing their packages
    (librosa, laion_clap, …), in the background, while this process imports MLflow and sets the store up
    (``embedding_workers.prestart_workers``); once it is up, a process forked from it hashes the files of
    ``folders`` (``prehash``). Unknown names are left for the run to refuse."""
    from encoders.registry import ENCODERS, encoder_class, plugin_names

    from ..embedding_workers import prestart_workers

    known = {*ENCODERS, *plugin_names()}  # hf: and module:Class names are resolved by the run itself
    classes = []
    for name in (name for name in encoders if name in known):
        try:
            classes.append(encoder_class(name))
        except Exception:  # noqa: BLE001 - a plug-in that cannot be imported is reported by its run
            continue
    prestart_workers(classes, workers, extra=("benchmark.cli",))  # the console script workers import as main
    from .. import prehash
    from ..config import default_cache_dir
    from ..tracking_run import prestart_figures

    prehash.start(folders, cache_dir or default_cache_dir())
    prestart_figures()


@main.command()
@click.option(
    "--encoder",
    "-e",
    required=True,
    help="Encoder: a name (see `musicbench encoders`; plug-ins included), hf:<model> or package.module:Class.",
)
@click.option("--weights", callback=optional_path, help="Encoder weights: checkpoint file or directory.")
@click.option("--run-name", help="MLflow run name [default: the encoder name].")
@run_options
@friendly
def run(encoder, weights, run_name, **kw) -> None:
    """Embed, retrieve and score with one encoder; record everything in one MLflow run.

    Exit status: 0 the run finished; 1 it ended FAILED (the reason is printed and tagged); 2 refused before any
    run (an option, the dataset, the ground truth or the store); 130 / 143 interrupted (Ctrl-C / SIGTERM).
    """
    encoder = hf_names([encoder], kw.pop("hf_layer"))[0]
    check_options([encoder], kw, {encoder: str(weights)} if weights else {})
    prestart([encoder], kw["workers"], (kw["refs"], kw["targets"]), kw["cache_dir"])
    progress = not kw["no_progress"]
    config = make_config(encoder, weights=str(weights) if weights else None, run_name=run_name, **kw)
    # What exists now (MLflow, pandas, … ≈300k objects) lives as long as this process: out of the garbage
    # collector's sight, so that its collections during the run (and at exit) stop walking it.
    gc.freeze()
    run_and_report(config, progress)


@main.command()
@click.option(
    "--encoders",
    default=None,
    help=f"Encoders to run on the demo set [default: {DEMO_ENCODERS}; with --scenario: {DEMO_SCENARIO_ENCODERS}].",
)
@click.option("--build-only", is_flag=True, help="Only build (or find) the demo set and print where it is.")
@click.option("--force", is_flag=True, help="Rebuild the demo set even if it exists.")
@click.option("--no-progress", is_flag=True)
@click.option(
    "--scenario",
    default="",
    help="robustness: run the robustness scenario on the demo set's references instead (queries of "
    f"{DEMO_QUERY_SECONDS:g} s: the demo pieces are 14-20 s long).",
)
@click.pass_context
@friendly
def demo(ctx, encoders, build_only, force, no_progress, scenario) -> None:
    """Build the embedded demo set (offline), run a suite of encoders on it with their comparison, and write its
    report (`musicbench report`): its path is the last line printed."""
    from ..demo import build_demo

    demo_set = build_demo(force=force, progress=not no_progress)
    click.echo(
        f"Demo set: {demo_set.root} (refs: {demo_set.refs}, targets: {demo_set.targets}, "
        f"ground truth: {demo_set.ground_truth})",
        err=True,
    )
    if build_only:
        return
    dataset = {"targets": demo_set.targets, "ground_truth": demo_set.ground_truth}
    if scenario:  # queries made from the references (benchmark/scenarios)
        dataset = {"targets": None, "ground_truth": None, "scenario": scenario, "query_seconds": DEMO_QUERY_SECONDS}
    encoders = encoders or (DEMO_SCENARIO_ENCODERS if scenario else DEMO_ENCODERS)
    status = 0
    try:
        ctx.invoke(suite, encoders=encoders, refs=demo_set.refs, no_progress=no_progress, **dataset)
    except SystemExit as error:  # an encoder failed (exit 1): the report still shows the others and names it
        status = error.code
    finally:
        click.echo(f"Open the results: mlflow ui --backend-store-uri {shown_tracking_uri()}", err=True)
    parent = ctx.meta.get(SUITE_PARENT_META)
    if parent:  # last: the report of the suite just run (musicbench report --parent <id>)
        from ..report import make_report

        click.echo(f"Report: {make_report(parent=parent).path}")
    if status:
        sys.exit(status)


@main.command()
@click.option(
    "--encoders",
    default=DEMO_ENCODERS,
    show_default=True,
    help="Comma-separated encoders: names, hf:<model>[:layer-N] or package.module:Class.",
)
@click.option(
    "--weights",
    "weights",
    multiple=True,
    metavar="ENCODER=PATH",
    help="Weights of one encoder of the suite, e.g. clap=/path/630k-audioset-best.pt (repeatable).",
)
@click.option("--run-name", help="MLflow name of the parent run [default: what it compares, e.g. 'mfcc vs chroma'].")
@click.option(
    "--out", callback=optional_path, help="Folder for the comparison files [default: ./comparison/<parent run id>]."
)
@run_options
@friendly
def suite(encoders, weights, run_name, out, **kw) -> None:
    """Run several encoders as child runs of one parent run, then compare them.

    Each encoder gets its own nested MLflow run; an encoder that fails (missing weights, any error) ends its
    child FAILED with a failure_reason tag and the others still run. The parent ends FINISHED when at least
    one child finished (FAILED when none did) and gets the comparison of the finished children (see
    `musicbench compare`).

    Exit status: 0 when every encoder finished and the comparison was logged; 1 when any encoder failed
    (or the comparison could not be made); 2 when an option, the dataset or the store is refused before any
    run; 130 / 143 when interrupted (Ctrl-C / SIGTERM).
    """
    from .. import pipeline
    from .. import suite as suite_module

    names = comma_list(encoders)
    if not names:
        raise click.BadParameter("give at least one encoder", param_hint="--encoders")
    names = hf_names(names, kw.pop("hf_layer"))
    encoder_weights = name_path_pairs(weights, "ENCODER", "--weights")
    check_options(names, kw, encoder_weights)
    prestart(names, kw["workers"], (kw["refs"], kw["targets"]), kw["cache_dir"])
    progress = not kw["no_progress"]
    base = make_config(names[0], **kw)
    dataset = pipeline.load(base)
    if not run_name:  # chart legends and the runs list then say what each suite compared
        run_name = " vs ".join(names) + (f" ({base.scenario})" if base.scenario else "")
    try:
        result = suite_module.run_suite(
            base,
            names,
            encoder_weights,
            progress=progress,
            run_name=run_name,
            out_dir=out,
            echo=lambda line: click.echo(line, err=True),
            dataset=dataset,
        )
    except suite_module.SuiteFailed as error:
        raise click.ClickException(str(error)) from None
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    click.get_current_context().meta[SUITE_PARENT_META] = result.parent_run_id  # for demo's report
    if result.comparison is not None:
        echo_comparison(result.comparison)
    click.echo(
        f"Suite parent run {result.parent_run_id} ({len(result.finished)} finished, "
        f"{len(result.failed)} failed) in {shown_tracking_uri()}",
        err=True,
    )
    problems = [f"{c.encoder}: {c.failure_reason}" for c in result.failed]
    if result.comparison_error:
        problems.append(f"comparison: {result.comparison_error}")
    if problems:
        click.echo("Failed: " + "; ".join(problems), err=True)
        sys.exit(1)
