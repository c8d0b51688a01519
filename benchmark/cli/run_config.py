"""``run`` / ``suite``'s options turned into a ``RunConfig`` (``make_config``: engine and index, the experiment and
the store's pre-flight, the dataset or the scenario's queries, the demo set when no folder is given), and
``musicbench run``'s one run (``run_and_report``)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from ..config import RunConfig, default_cache_dir
from .common import Refused, name_path_pairs, user_errors


def scale_options(kw: dict) -> dict:
    """Takes ``--engine``/``--ray-*`` and ``--index``/``--faiss-*`` out of ``kw`` as ``RunConfig`` fields; an engine or
    index whose package is not installed is refused here, before any work, in one line naming the extra."""
    from ..config import IndexOptions, RayOptions
    from ..index import FAISS_EXTRA, faiss_available
    from ..ray_engine import RAY_EXTRA, ray_available

    engine = kw.pop("engine", "local") or "local"
    ray = RayOptions(
        address=kw.pop("ray_address", "") or None,
        actors=kw.pop("ray_actors", 2),
        batch_size=kw.pop("ray_batch_size", 4),
        num_gpus=kw.pop("ray_num_gpus", 0.0),
    )
    index = IndexOptions(
        kind=kw.pop("index_kind", "exact") or "exact",
        faiss_type=kw.pop("faiss_type", "ivf"),
        nlist=kw.pop("faiss_nlist", 0),
        nprobe=kw.pop("faiss_nprobe", 32),
        hnsw_m=kw.pop("faiss_hnsw_m", 32),
        ef_search=kw.pop("faiss_ef_search", 128),
    )
    if engine == "ray" and not ray_available():
        raise Refused(f"--engine ray needs Ray, which is not installed: {RAY_EXTRA}")
    if index.kind == "faiss" and not faiss_available():
        raise Refused(f"--index faiss needs FAISS, which is not installed: {FAISS_EXTRA}")
    return {"engine": engine, "ray": ray, "index": index}


def dataset_paths(refs, targets, ground_truth, progress: bool):
    if refs is None and targets is None:
        from ..demo import build_demo

        demo = build_demo(progress=progress)
        click.echo(f"Using the embedded demo set at {demo.root}", err=True)
        return demo.refs, demo.targets, ground_truth or demo.ground_truth
    if refs is None or targets is None:
        raise click.UsageError("give both --refs and --targets (or neither, for the demo set)")
    return refs, targets, ground_truth


def scenario_paths(kw: dict, refs, targets, ground_truth):
    """A scenario run's (refs, targets, ground truth): its options checked (one line, exit 2), ``--refs`` (the demo
    set's references when omitted), the deformed-audio cache as the targets' folder, no ground-truth file."""
    from .. import scenarios

    try:
        scenarios.check(kw["scenario"], kw["deformations"], kw["query_seconds"], targets, ground_truth)
        missing = scenarios.pedalboard_available()
    except scenarios.ScenarioOptionError as error:
        raise Refused(str(error)) from None
    if missing:
        raise Refused(missing)
    kw["deformations"] = tuple(name.strip() for name in kw["deformations"].split(",") if name.strip())
    if kw["query_seconds"] is None:
        kw["query_seconds"] = scenarios.DEFAULT_QUERY_SECONDS
    if refs is None:
        from ..demo import build_demo

        refs = build_demo(progress=not kw["no_progress"]).refs
        click.echo(f"Using the embedded demo set's references at {refs}", err=True)
    cache_dir = Path(kw.get("cache_dir") or default_cache_dir()).expanduser()
    return refs, cache_dir / "deformed", None


def no_scenario(kw: dict) -> None:
    """Without ``--scenario``, its options are refused (one line, exit 2), and set to the config's defaults."""
    from .. import scenarios

    if kw["query_seconds"] == scenarios.DEFAULT_QUERY_SECONDS:  # the MLproject parameter's default (a float)
        kw["query_seconds"] = None
    try:
        scenarios.check(None, kw["deformations"], kw["query_seconds"], None, None)
    except scenarios.ScenarioOptionError as error:
        raise Refused(str(error)) from None
    kw["deformations"], kw["query_seconds"] = (), scenarios.DEFAULT_QUERY_SECONDS


def make_config(encoder: str, **kw) -> RunConfig:
    from ..store import check_resolved

    kw.update(scale_options(kw))  # --engine / --index: grouped, and refused (exit 2) when their extra is missing
    # the experiment (--experiment, $MLFLOW_EXPERIMENT_NAME / _ID, an enclosing `mlflow run`, "musicbench") and the
    # bounded pre-flight of the tracking store, before any work (StoreError: exit 2)
    kw["experiment"] = check_resolved(kw["experiment"])
    if kw.get("scenario"):  # queries made from --refs (benchmark/scenarios); they live in the cache
        refs, targets, ground_truth = scenario_paths(kw, kw.pop("refs"), kw.pop("targets"), kw.pop("ground_truth"))
    else:
        no_scenario(kw)
        refs, targets, ground_truth = dataset_paths(
            kw.pop("refs"), kw.pop("targets"), kw.pop("ground_truth"), not kw["no_progress"]
        )
    kw.pop("no_progress")
    if kw.pop("system_metrics", False):  # every run of this process (a suite's parent and children)
        os.environ["MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING"] = "true"
    if kw.get("allow_download"):
        os.environ["MUSICBENCH_ALLOW_DOWNLOAD"] = "1"
    cache_dir = kw.pop("cache_dir") or default_cache_dir()
    return RunConfig(
        encoder=encoder,
        refs=refs,
        targets=targets,
        ground_truth=ground_truth,
        cache_dir=cache_dir,
        metric_weights=tuple(name_path_pairs(kw.pop("metric_weights"), "METRIC", "--metric-weights").items()),
        **kw,
    )


def run_and_report(config: RunConfig, progress: bool) -> None:
    """``musicbench run``: the dataset is checked at the edge (no MLflow run for a missing folder), then the one
    run path runs and records the encoder; a failure is one line (with its run), a bug keeps its traceback."""
    from .. import pipeline, tracking_run
    from ..store import tracking_uri

    dataset = pipeline.load(config)
    outcome = tracking_run.run_and_record(config, dataset, progress)
    if outcome.error is not None:
        if isinstance(outcome.error, user_errors()):
            raise click.ClickException(f"{outcome.error} [run {outcome.run_id} FAILED]")
        raise outcome.error
    click.echo(tracking_run.summary_line(outcome.result))
    click.echo(f"MLflow run {outcome.run_id} in {tracking_uri()}")
