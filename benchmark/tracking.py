"""Runs and the MLflow writes about them: a run's start and end (FAILED/KILLED with the reason), a refused command's
reason on the run ``mlflow run`` made, MLflow's system metrics, and the writes about runs that already exist: the
suite's parent, the comparison, regression verdicts, baseline pins.

Every MLflow write lives in a ``tracking*`` module: here; ``tracking_run.py`` (``run_and_record``, the one way to
run an encoder and record it: ``musicbench run``, ``suite``, ``mlflow run`` and every engine call it);
``tracking_result.py`` (``log_result``: what a finished pipeline run records); ``tracking_params.py`` (a run's params
and version tags). Reading runs back is ``runs.py``.

Where the store is: ``store.py``. Under ``mlflow run`` the run MLflow started (``MLFLOW_RUN_ID``) is used.
"""

from __future__ import annotations

import contextlib
import os
import signal
import warnings
from collections.abc import Iterator

import pandas as pd

from .interrupts import raise_terminated
from .measures import logged_name
from .store import configure, tracking_uri

FAILURE_REASON_TAG = "failure_reason"
MLFLOW_RUN_NAME = "mlflow.runName"
#: MLflow refuses longer tag values; every tag written here is cut to this length
TAG_LIMIT = 5000


def tag_text(value: object) -> str:
    return str(value)[:TAG_LIMIT]


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

    from .tracking_result import failures_csv

    with _signals_held():
        try:
            mlflow.set_tag(FAILURE_REASON_TAG, tag_text(reason))
            failures = getattr(error, "failures", None)  # RunError: every file failed; keep the per-file reasons
            if failures:
                mlflow.log_metric(logged_name("n_failed"), len(failures))
                mlflow.log_text(failures_csv(failures), "failures.csv")
        except Exception as problem:  # noqa: BLE001 - the original error is the one to raise
            warnings.warn(f"could not record why the run ended {status}: {problem}", stacklevel=2)
        finally:
            mlflow.end_run(status)


@contextlib.contextmanager
def started_run(
    experiment: str, run_name: str | None = None, nested: bool = False, tags: dict[str, str] | None = None
) -> Iterator[object]:
    """Start (or, under ``mlflow run``, resume) a run; end it FAILED/KILLED with the reason on error."""
    import mlflow

    experiment_id = configure(experiment) if not os.environ.get("MLFLOW_RUN_ID") or nested else None
    previous = signal.getsignal(signal.SIGTERM)
    try:
        signal.signal(signal.SIGTERM, raise_terminated)
    except ValueError:  # not the main thread
        previous = None
    resumed = bool(os.environ.get("MLFLOW_RUN_ID") and not nested and mlflow.active_run() is None)
    # system metrics are started below, inside the try: mlflow.start_run starts them after creating the run, and a
    # failure there (psutil missing) raised with the run left RUNNING for ever
    if resumed:
        mlflow.set_tracking_uri(tracking_uri())
        # mlflow.start_run resumes $MLFLOW_RUN_ID whenever it is set, even for nested runs: consume it here,
        # so runs started inside this one (a suite's children) become real children.
        run = mlflow.start_run(run_id=os.environ.pop("MLFLOW_RUN_ID"), tags=tags, log_system_metrics=False)
    else:
        run = mlflow.start_run(
            experiment_id=experiment_id, run_name=run_name, nested=nested, tags=tags, log_system_metrics=False
        )
    try:
        if resumed and run_name:  # MLflow named it at random (youthful-wasp-864): say what it is
            mlflow.set_tag(MLFLOW_RUN_NAME, run_name)
        if system_metrics_wanted():
            start_system_metrics(run.info.run_id, resumed)
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


def record_refusal(reason: str, tags: dict[str, str] | None = None) -> None:
    """Under ``mlflow run``: the command was refused before its run started (a bad option, the dataset, the store),
    and MLflow will mark the run it created FAILED for the non-zero exit. Say why on that run (``failure_reason``,
    the encoder tag, a meaningful name). Best effort, bounded: nothing to do outside ``mlflow run``."""
    run_id = os.environ.get("MLFLOW_RUN_ID")
    if not run_id:
        return
    with contextlib.suppress(Exception):
        import mlflow

        from .store import _bounded_http, check_timeout

        with _bounded_http(check_timeout()):
            mlflow.set_tracking_uri(tracking_uri())
            client = mlflow.tracking.MlflowClient()
            for key, value in {FAILURE_REASON_TAG: reason, **(tags or {})}.items():
                client.set_tag(run_id, key, tag_text(value))


def system_metrics_wanted() -> bool:
    """``--system-metrics`` (which sets it) or ``MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING=true``."""
    return os.environ.get("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "").strip().lower() in ("true", "1")


def start_system_metrics(run_id: str, resumed: bool = False) -> None:
    """MLflow's system metrics monitor (CPU, memory, disk, network; GPU when ``nvidia-ml-py`` is installed) on the
    active run, as ``mlflow.start_run(log_system_metrics=True)`` starts it, registered where ``mlflow.end_run`` finds
    and stops it. Called inside ``started_run``'s error handling: a monitor that cannot start ends the run FAILED
    with the reason, never RUNNING."""
    import importlib.util

    from mlflow.tracking import fluent

    if importlib.util.find_spec("psutil") is None:
        raise RuntimeError("system metrics need psutil, which is not installed: pip install psutil")
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    monitor = SystemMetricsMonitor(run_id, resume_logging=resumed)
    fluent.run_id_to_system_metrics_monitor[run_id] = monitor
    try:
        monitor.start()
    except BaseException:
        fluent.run_id_to_system_metrics_monitor.pop(run_id, None)
        raise


# --- writes about runs that already exist: suites, comparisons, regression verdicts, baselines --------------


def record_suite(children: list, tag_prefix: str) -> None:
    """On the active suite parent: which children finished or failed (tags, metrics, table)."""
    import mlflow

    finished = [c for c in children if c.status == "FINISHED"]
    failed = [c for c in children if c.status != "FINISHED"]
    mlflow.set_tags(
        {
            f"{tag_prefix}.finished": ",".join(c.encoder for c in finished) or "none",
            f"{tag_prefix}.failed": ",".join(c.encoder for c in failed) or "none",
            **{f"{tag_prefix}.child.{c.encoder}": c.run_id or "none" for c in children},
        }
    )
    mlflow.log_metrics(
        {logged_name("suite_children_finished"): len(finished), logged_name("suite_children_failed"): len(failed)}
    )
    table = pd.DataFrame(
        [
            {
                "encoder": c.encoder,
                "run_id": c.run_id or "",
                "status": c.status,
                "failure_reason": c.failure_reason,
                "seconds": round(c.seconds, 3),
            }
            for c in children
        ],
        columns=["encoder", "run_id", "status", "failure_reason", "seconds"],
    )
    mlflow.log_table(table, "tables/suite_children.json")


def tag_active_run(tags: dict[str, object]) -> None:
    import mlflow

    mlflow.set_tags({key: tag_text(value) for key, value in tags.items()})


def json_ready(frame: pd.DataFrame) -> pd.DataFrame:
    """NaN → None so that the logged JSON table is valid JSON."""
    return frame.astype(object).where(frame.notna(), None)


def log_comparison(client, run_id: str, comparison, base: str = "comparison") -> None:
    """Log a ``compare.Comparison`` under ``comparison/`` of ``run_id`` (tables, CSV, markdown, figures, tags)."""
    from .compare import COMPARISON_TAG

    client.log_table(run_id, json_ready(comparison.table.reset_index()), f"{base}/comparison.json")
    client.log_table(run_id, json_ready(comparison.top1), f"{base}/per_target_top1.json")
    client.log_table(run_id, json_ready(comparison.summary), f"{base}/per_target_summary.json")
    client.log_text(run_id, comparison.table.to_csv(), f"{base}/comparison.csv")
    client.log_text(run_id, comparison.top1.to_csv(index=False), f"{base}/per_target_top1.csv")
    client.log_text(run_id, comparison.summary.to_csv(index=False), f"{base}/per_target_summary.csv")
    client.log_text(run_id, comparison.markdown() + "\n", f"{base}/comparison.md")
    for name, figure in comparison.figures.items():
        client.log_figure(run_id, figure, f"{base}/figures/{name}.png")
    tags = {
        f"{COMPARISON_TAG}.runs": ",".join(comparison.run_ids),
        f"{COMPARISON_TAG}.encoders": ",".join(comparison.labels),
    }
    for metric in comparison.metrics:
        best = [label for label in comparison.labels if comparison.table.at[label, f"{metric}_vs_best"] == "best"]
        if best:  # a metric that is not ranked across encoders (sim_top1_mean) has no best
            tags[f"{COMPARISON_TAG}.best.{metric}"] = ",".join(best)
    if comparison.warnings:
        tags[f"{COMPARISON_TAG}.warnings"] = " | ".join(comparison.warnings)
    tags[MLFLOW_NOTE] = comparison_note(comparison, base)
    for key, value in tags.items():
        client.set_tag(run_id, key, tag_text(value))


#: the run's description in the MLflow UI (markdown, shown on the run's page)
MLFLOW_NOTE = "mlflow.note.content"


def comparison_note(comparison, base: str = "comparison") -> str:
    """The run's description: the comparison table in markdown (cut to the tag limit, saying where the rest is)."""
    head = f"**{' vs '.join(comparison.labels)}**: the comparison of these encoder runs (files under `{base}/`).\n\n"
    warnings = "".join(f"\n\nWarning: {w}" for w in comparison.warnings)
    text = head + comparison.markdown() + warnings
    if len(text) > TAG_LIMIT:
        more = f"\n\n… (cut; the whole table is `{base}/comparison.md`)"
        text = text[: TAG_LIMIT - len(more)] + more
    return text


def set_tags(client, run_id: str, tags: dict[str, object]) -> None:
    """Tags on an existing run (regression verdicts)."""
    for key, value in tags.items():
        client.set_tag(run_id, key, tag_text(value))


def set_baseline(client, run_id: str, pinned: bool, tag: str = "baseline") -> None:
    """Pin (``baseline=true``) or unpin a run as its encoder's regression baseline."""
    if pinned:
        client.set_tag(run_id, tag, "true")
    elif tag in client.get_run(run_id).data.tags:
        client.delete_tag(run_id, tag)


def delete_runs(client, run_ids: list[str]) -> None:
    """Soft-delete runs (an experiment's previous comparison run, replaced by a new one); ``mlflow gc`` removes them
    for good, ``mlflow runs restore`` brings one back."""
    for run_id in run_ids:
        client.delete_run(run_id)


def log_report(client, run_id: str, path) -> None:
    """Log a written report document (``musicbench report``) under ``report/`` of ``run_id``."""
    client.log_artifact(run_id, str(path), "report")
