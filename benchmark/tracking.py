"""Everything that writes to MLflow. One run per encoder; a failed run is marked FAILED with the reason.

Default store: ``sqlite:///<cwd>/mlruns/mlflow.db`` with artifacts in ``mlruns/artifacts`` (the card's
``mlruns/`` layout); ``MLFLOW_TRACKING_URI`` overrides. Under ``mlflow run`` the run MLflow started
(``MLFLOW_RUN_ID``) is used.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import warnings
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pandas as pd

from .data import shown
from .pipeline import RunResult

TRACKED_PACKAGES = ("musicbench", "mlflow", "numpy", "scipy", "librosa", "soundfile", "soxr", "scikit-learn",
                    "pandas", "torch", "transformers")
FAILURE_REASON_TAG = "failure_reason"


def default_tracking_uri() -> str:
    return "sqlite:///" + str((Path.cwd() / "mlruns" / "mlflow.db").resolve())


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()


@contextlib.contextmanager
def _store_lock(uri: str) -> Iterator[None]:
    """Serialise the first touch of a local sqlite store across processes.

    MLflow creates and migrates the tables on first use; two runs starting at once on a fresh store would both
    migrate and one would crash (alembic "expected to match one row"), and both could create the same
    experiment. A lock file next to the database makes the second one wait a moment instead.
    """
    if not uri.startswith("sqlite:///"):
        yield
        return
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    with open(uri[len("sqlite:///"):] + ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def configure(experiment: str) -> str:
    """Point MLflow at the store and return the experiment id (created under mlruns/ when missing)."""
    import mlflow

    uri = tracking_uri()
    if uri.startswith("sqlite:///"):
        Path(uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    with _store_lock(uri):
        found = mlflow.get_experiment_by_name(experiment)
        if found is not None:
            return found.experiment_id
        artifact_location = None  # other stores: the server's default artifact root
        if uri.startswith("sqlite:///"):  # keep artifacts beside the database (mlruns/artifacts by default)
            artifact_location = (Path(uri[len("sqlite:///"):]).parent / "artifacts" / experiment).resolve().as_uri()
        return mlflow.create_experiment(experiment, artifact_location=artifact_location)


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: end the run as KILLED, like Ctrl-C."""


def _raise_terminated(signum, frame):  # pragma: no cover - exercised by the reliability tests
    raise Terminated(f"received signal {signum}")


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Ignore SIGINT/SIGTERM while the final status is written: a second Ctrl-C must not leave a RUNNING run."""
    try:
        saved = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread: signals are not delivered here anyway
        saved = {}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def _end_run(status: str, reason: str, error: BaseException) -> None:
    """Record why the run did not finish (best effort), then end it with ``status`` whatever happens."""
    import mlflow

    with _signals_held():
        try:
            mlflow.set_tag(FAILURE_REASON_TAG, reason[:5000])
            failures = getattr(error, "failures", None)  # RunError: every file failed; keep the per-file reasons
            if failures:
                mlflow.log_metric("n_failed", len(failures))
                mlflow.log_text(failures_csv(failures), "failures.csv")
        except Exception as problem:  # noqa: BLE001 - the original error is the one to raise
            warnings.warn(f"could not record why the run ended {status}: {problem}", stacklevel=2)
        finally:
            mlflow.end_run(status)


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
        # mlflow.start_run resumes $MLFLOW_RUN_ID whenever it is set, even for nested runs: consume it here,
        # so runs started inside this one (a suite's children) become real children.
        run = mlflow.start_run(run_id=os.environ.pop("MLFLOW_RUN_ID"), tags=tags)
    else:
        run = mlflow.start_run(experiment_id=experiment_id, run_name=run_name, nested=nested, tags=tags)
    try:
        yield run
    except KeyboardInterrupt as error:
        _end_run("KILLED", f"interrupted: {error}" if str(error) else "interrupted", error)
        raise
    except BaseException as error:
        _end_run("FAILED", f"{type(error).__name__}: {error}", error)
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


def failures_csv(failures) -> str:
    """One row per (file, stage) that failed: role, file, stage, message."""
    rows = [f.as_row() for f in failures]
    text = pd.DataFrame(rows, columns=["role", "file", "stage", "message"]).to_csv(index=False)
    return shown(text)  # a non-UTF-8 file name in a message must not make the artifact unwritable


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
    metrics = {name: float(value) for name, value in result.metrics.items()}
    dropped = sorted(name for name, value in metrics.items() if not math.isfinite(value))
    if dropped:  # the pipeline already drops them; never log NaN/inf as if it were a score
        mlflow.set_tag("dropped_non_finite_metrics", ",".join(dropped)[:5000])
    mlflow.log_metrics({name: value for name, value in metrics.items() if name not in dropped})

    manifest = _manifest(result)
    with warnings.catch_warnings():  # a local path matches two of MLflow's own (equivalent) source types
        warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted")
        dataset = mlflow.data.from_pandas(manifest, source=str(Path(config.refs).resolve()),
                                          name=f"musicbench-{result.dataset_fingerprint}")
    mlflow.log_input(dataset, context="benchmark")

    mlflow.log_table(result.topk, "tables/topk.json")
    mlflow.log_table(result.per_target, "tables/per_target.json")
    mlflow.log_text(result.topk.to_csv(index=False), "tables/topk.csv")
    mlflow.log_text(result.per_target.to_csv(index=False), "tables/per_target.csv")
    mlflow.log_text(failures_csv(result.failures), "failures.csv")
    mlflow.log_text(manifest.to_csv(index=False), "dataset/manifest.csv")
    mlflow.log_dict({"config": {k: str(v) for k, v in config.as_params().items()},
                     "encoder": result.encoder_params, "skipped_metrics": result.skipped_metrics},
                    "config.json")

    if result.similarity is not None:
        figure = report.similarity_heatmap(result.similarity, result.target_keys, result.ref_keys, result.topk,
                                           config.encoder, result.dataset.relevance)
        mlflow.log_figure(figure, "figures/similarity_heatmap.png")
        plt.close(figure)
    figure = report.top1_bars(result.per_target, config.encoder)
    mlflow.log_figure(figure, "figures/top1_similarity.png")
    plt.close(figure)


def summary_line(result: RunResult) -> str:
    keys = ("map", "mrr", "recall_at_" + str(result.config.k), "sim_top1_mean", "melody_acc_top1_mean")
    shown = ", ".join(f"{k}={result.metrics[k]:.3f}" for k in keys if k in result.metrics)
    return json.dumps(result.config.encoder) + f": {shown} ({len(result.failures)} failed files)"
