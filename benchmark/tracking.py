"""Everything that writes to MLflow. One run per encoder; a failed run is marked FAILED with the reason.

Default store: ``sqlite:///<cwd>/mlruns/mlflow.db`` with artifacts in ``mlruns/artifacts`` (the card's
``mlruns/`` layout); ``MLFLOW_TRACKING_URI`` overrides. Under ``mlflow run`` the run MLflow started
(``MLFLOW_RUN_ID``) is used.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pandas as pd

from .pipeline import RunResult

TRACKED_PACKAGES = ("musicbench", "mlflow", "numpy", "scipy", "librosa", "soundfile", "soxr", "scikit-learn",
                    "pandas", "torch", "transformers")
FAILURE_REASON_TAG = "failure_reason"


def default_tracking_uri() -> str:
    return "sqlite:///" + str((Path.cwd() / "mlruns" / "mlflow.db").resolve())


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()


def configure(experiment: str) -> str:
    """Point MLflow at the store and return the experiment id (created under mlruns/ when missing)."""
    import mlflow

    uri = tracking_uri()
    if uri.startswith("sqlite:///"):
        Path(uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    found = mlflow.get_experiment_by_name(experiment)
    if found is not None:
        return found.experiment_id
    artifact_location = None
    if uri == default_tracking_uri():
        artifact_location = (Path.cwd() / "mlruns" / "artifacts" / experiment).resolve().as_uri()
    return mlflow.create_experiment(experiment, artifact_location=artifact_location)


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: end the run as KILLED, like Ctrl-C."""


def _raise_terminated(signum, frame):  # pragma: no cover - exercised by the reliability tests
    raise Terminated(f"received signal {signum}")


@contextlib.contextmanager
def started_run(experiment: str, run_name: str | None = None, nested: bool = False,
                tags: dict[str, str] | None = None) -> Iterator[object]:
    """Start (or, under ``mlflow run``, resume) a run; end it FAILED/KILLED with the reason on error."""
    import mlflow

    experiment_id = configure(experiment) if not os.environ.get("MLFLOW_RUN_ID") or nested else None
    previous = signal.getsignal(signal.SIGTERM)
    try:
        signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not the main thread
        previous = None
    if os.environ.get("MLFLOW_RUN_ID") and not nested and mlflow.active_run() is None:
        mlflow.set_tracking_uri(tracking_uri())
        run = mlflow.start_run(run_id=os.environ["MLFLOW_RUN_ID"], tags=tags)
    else:
        run = mlflow.start_run(experiment_id=experiment_id, run_name=run_name, nested=nested, tags=tags)
    try:
        yield run
    except KeyboardInterrupt as error:
        mlflow.set_tag(FAILURE_REASON_TAG, f"interrupted: {error}" if str(error) else "interrupted")
        mlflow.end_run("KILLED")
        raise
    except BaseException as error:
        mlflow.set_tag(FAILURE_REASON_TAG, f"{type(error).__name__}: {error}"[:5000])
        mlflow.end_run("FAILED")
        raise
    else:
        mlflow.end_run("FINISHED")
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def package_versions(extra: tuple[str, ...] = ()) -> dict[str, str]:
    out = {}
    for name in TRACKED_PACKAGES + extra:
        try:
            out[f"version.{name}"] = version(name)
        except PackageNotFoundError:
            continue
    return out


def log_params_once(params: dict[str, object]) -> None:
    """Log params; one already set by ``mlflow run`` with another value is kept and ours goes to ``resolved.<k>``.

    (MLflow params are immutable; ``mlflow run`` logs the raw ``-P`` values, e.g. an empty ``refs``.)
    """
    import mlflow

    existing = mlflow.get_run(mlflow.active_run().info.run_id).data.params
    out = {}
    for key, value in params.items():
        text = str(value)[:6000]
        if key in existing and existing[key] != text:
            out[f"resolved.{key}"] = text
        elif key not in existing:
            out[key] = text
    if out:
        mlflow.log_params(out)


def _manifest(result: RunResult) -> pd.DataFrame:
    hashes = result.dataset.content_hashes
    rows = [{"role": role, "file": f.key, "sha256": hashes.get(f.path, "")}
            for role, files in (("reference", result.dataset.refs), ("target", result.dataset.targets))
            for f in files]
    return pd.DataFrame(rows)


def log_result(result: RunResult) -> None:
    """Params, tags, metrics, tables, figures and the dataset of one finished pipeline run."""
    import matplotlib.pyplot as plt
    import mlflow

    from . import report

    config = result.config
    params = {**config.as_params(), **result.encoder_params, "dataset_fingerprint": result.dataset_fingerprint,
              "ground_truth_given": result.dataset.relevance is not None}
    log_params_once(params)
    package = result.encoder_params.get("encoder_package")
    tags = {**package_versions((package,) if package and package != "none" else ()),
            **{f"encoder.{k}": v for k, v in result.encoder_tags.items()},
            **{f"skipped.{name}": reason[:5000] for name, reason in result.skipped_metrics.items()},
            "musicbench.encoder": config.encoder, "dataset_fingerprint": result.dataset_fingerprint}
    mlflow.set_tags(tags)
    mlflow.log_metrics({name: float(value) for name, value in result.metrics.items()})

    manifest = _manifest(result)
    dataset = mlflow.data.from_pandas(manifest, source=str(Path(config.refs).resolve()),
                                      name=f"musicbench-{result.dataset_fingerprint}")
    mlflow.log_input(dataset, context="benchmark")

    mlflow.log_table(result.topk, "tables/topk.json")
    mlflow.log_table(result.per_target, "tables/per_target.json")
    mlflow.log_text(result.topk.to_csv(index=False), "tables/topk.csv")
    mlflow.log_text(result.per_target.to_csv(index=False), "tables/per_target.csv")
    failures = pd.DataFrame([f.as_row() for f in result.failures], columns=["role", "file", "stage", "message"])
    mlflow.log_text(failures.to_csv(index=False), "failures.csv")
    mlflow.log_text(manifest.to_csv(index=False), "dataset/manifest.csv")
    mlflow.log_dict({"config": {k: str(v) for k, v in config.as_params().items()},
                     "encoder": result.encoder_params, "skipped_metrics": result.skipped_metrics},
                    "config.json")

    if result.similarity is not None:
        figure = report.similarity_heatmap(result.similarity, result.target_keys, result.ref_keys, result.topk,
                                           config.encoder)
        mlflow.log_figure(figure, "figures/similarity_heatmap.png")
        plt.close(figure)
    figure = report.top1_bars(result.per_target, config.encoder)
    mlflow.log_figure(figure, "figures/top1_similarity.png")
    plt.close(figure)


def summary_line(result: RunResult) -> str:
    keys = ("map", "mrr", "recall_at_" + str(result.config.k), "sim_top1_mean", "melody_acc_top1_mean")
    shown = ", ".join(f"{k}={result.metrics[k]:.3f}" for k in keys if k in result.metrics)
    return json.dumps(result.config.encoder) + f": {shown} ({len(result.failures)} failed files)"
