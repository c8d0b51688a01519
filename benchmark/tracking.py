"""Everything that writes to MLflow. One run per encoder; a failed run is marked FAILED with the reason.

``run_and_record`` is the one way to run an encoder and record it: ``musicbench run``, ``suite``, ``mlflow run``
and every engine call it. The suite's parent, the comparison, regression verdicts and baseline pins are also
written here; reading runs back is ``runs.py``.

Where the store is: ``store.py``. Under ``mlflow run`` the run MLflow started (``MLFLOW_RUN_ID``) is used.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pandas as pd

from .config import RunConfig
from .data import Dataset, shown
from .interrupts import Terminated, raise_terminated  # noqa: F401 - Terminated: re-exported
from .measures import logged_name
from .pipeline import RunResult
from .runs import ENCODER_TAG
from .store import configure, tracking_uri

TRACKED_PACKAGES = (
    "musicbench",
    "mlflow",
    "numpy",
    "scipy",
    "librosa",
    "soundfile",
    "soxr",
    "scikit-learn",
    "pandas",
    "torch",
    "transformers",
)
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


def package_versions(extra: tuple[str, ...] = ()) -> dict[str, str]:
    """``version.<name>`` of each tracked distribution that is installed. Versions come from the ``<name>-<version>
    .dist-info`` folder names on ``sys.path`` (one listing per folder, first match wins, as in ``importlib.metadata``:
    ≈2 ms instead of ≈100 ms of parsing METADATA files); a name found no other way asks ``importlib.metadata``."""
    import re
    import sys

    def key(name: str) -> str:
        return re.sub(r"[-_.]+", "_", name).lower()

    installed: dict[str, str] = {}
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for folder in names:
            if folder.endswith(".dist-info"):
                name, sep, found = folder[: -len(".dist-info")].partition("-")
                if sep:
                    installed.setdefault(key(name), found)
    out = {}
    for name in TRACKED_PACKAGES + extra:
        try:
            out[f"version.{name}"] = installed.get(key(name)) or version(name)
        except PackageNotFoundError:
            continue
    return out


#: params that describe this machine, not the run: recorded as tags ``path.<name>`` (a diff of two runs' params then
#: shows what differs between the runs, not between the machines they ran on)
MACHINE_PARAMS = ("cache_dir",)
#: tag prefix of a value of ours for a param that ``mlflow run`` had already logged with its raw ``-P`` value (e.g.
#: ``refs=demo`` → ``resolved.refs=/…/demo/v1/refs``); params are immutable, and a tag keeps the params of a run
#: made with ``mlflow run`` and with ``musicbench run`` the same set
RESOLVED_TAG = "resolved"


def log_params_once(params: dict[str, object], fill_only: bool = False) -> None:
    """Log params, each once (MLflow params are immutable).

    A param already logged with another value (``mlflow run`` logs the raw ``-P`` values first, e.g. ``refs=demo``)
    is kept, and ours goes to the tag ``resolved.<name>``; with ``fill_only`` it is dropped instead (the run's inputs
    in their canonical form, logged so that every run has the same params whichever way it was started).
    ``MACHINE_PARAMS`` become ``path.<name>`` tags.
    """
    import mlflow

    existing = mlflow.get_run(mlflow.active_run().info.run_id).data.params
    out, tags = {}, {}
    for key, value in params.items():
        text = str(value)[:6000]
        if key in MACHINE_PARAMS:
            tags[f"path.{key}"] = tag_text(text)
        elif key in existing and existing[key] != text:
            if not fill_only:
                tags[f"{RESOLVED_TAG}.{key}"] = tag_text(text)
        elif key not in existing:
            out[key] = text
    if out:
        mlflow.log_params(out)
    if tags:
        mlflow.set_tags(tags)


def params_of(config: RunConfig) -> dict[str, object]:
    """The config's params, flags written as ``true``/``false`` as the MLproject parameters give them."""
    return {**config.as_params(), "allow_download": str(bool(config.allow_download)).lower()}


def run_inputs(config: RunConfig) -> dict[str, object]:
    """The run's inputs under the names and in the canonical form of the MLproject parameters (``none`` /
    ``default`` / ``demo`` for an option not given: MLflow would log an empty parameter as the literal ``''``)."""
    return {
        "weights": config.weights or "default",
        "window": config.window_seconds if config.window_seconds is not None else "default",
        "hop": config.hop_seconds if config.hop_seconds is not None else "default",
        "index": config.index.kind,
        "scenario": config.scenario or "none",
        "deformations": ",".join(config.deformations) or "default",
        "query_seconds": config.query_seconds,
        "allow_download": str(bool(config.allow_download)).lower(),
        "system_metrics": str(system_metrics_wanted()).lower(),
    }


def _manifest(result: RunResult) -> pd.DataFrame:
    hashes = result.dataset.content_hashes
    rows = [
        {"role": role, "file": f.key, "sha256": hashes.get(f.path, "")}
        for role, files in (("reference", result.dataset.refs), ("target", result.dataset.targets))
        for f in files
    ]
    return pd.DataFrame(rows)


def failures_csv(failures) -> str:
    """One row per (file, stage) that failed: role, file, stage, message."""
    rows = [f.as_row() for f in failures]
    text = pd.DataFrame(rows, columns=["role", "file", "stage", "message"]).to_csv(index=False)
    return shown(text)  # a non-UTF-8 file name in a message must not make the artifact unwritable


#: tag prefix of an artifact (figure, table, file, the dataset input, a group of params or tags) that could not be
#: produced or logged after the work; the value is the reason. The metrics stand and the run still finishes.
SKIPPED_ARTIFACT_TAG = "skipped_artifact"


def _reason(error: BaseException) -> str:
    """An error as one short line (a tag value)."""
    text = " ".join(str(error).split())
    return tag_text(f"{type(error).__name__}: {text}" if text else type(error).__name__)[:500]


class _Skipped(dict):
    """What could not be produced after the work: {artifact name: reason}. ``attempt`` runs one step of the
    recording and turns its failure into an entry, so that nothing after the work can fail the run."""

    def attempt(self, name: str, step, *args, **kwargs):
        try:
            return step(*args, **kwargs)
        except Exception as error:  # noqa: BLE001 - recorded as a skipped artifact, with the reason
            self[name] = _reason(error)
            warnings.warn(f"{name} was not recorded: {self[name]}", stacklevel=2)
            return None

    def record(self) -> None:
        """Tag every skipped artifact on the active run (best effort: a warning already said it)."""
        if self:
            import mlflow

            with contextlib.suppress(Exception):
                mlflow.set_tags({f"{SKIPPED_ARTIFACT_TAG}.{name}": reason for name, reason in self.items()})


def log_result(result: RunResult) -> None:
    """Params, tags, metrics, tables, figures and the dataset of one finished pipeline run.

    Nothing here can fail the run once its metrics are logged (they are logged first): a figure that cannot be
    drawn, a table that cannot be written, a tag or param MLflow refuses, the dataset input or the upload failing,
    is left out and tagged ``skipped_artifact.<name>`` with the reason, and the run finishes.

    Every artifact file is written to one temporary folder and logged with one ``log_artifacts`` call, in the
    formats ``log_table`` / ``log_text`` / ``log_dict`` / ``log_figure`` write; the two tables are registered
    for ``mlflow.load_table`` with the tag ``log_table`` sets. (``log_table`` itself lists the run's artifacts
    and reads the run back for each table: about half of this function's time outside the figures, profiled.)

    The figures are drawn in a process of their own while the dataset and the tables are recorded, when the run's
    fork server is up (``parallel.background_call``; it imported matplotlib meanwhile); a figure not drawn there
    (no such process, or it failed) is drawn here, where its error is recorded.
    """
    import tempfile

    from . import figures

    skipped = _Skipped()
    config_params = skipped.attempt("params", params_of, result.config) or {}  # once: asks git for the code version
    _log_values(result, config_params, skipped)
    figure_args = skipped.attempt(
        "figures",
        lambda: (  # plain columns: the drawing process needs no pandas
            result.similarity,
            result.target_keys,
            result.ref_keys,
            figures.table_columns(result.topk, ("target", "rank", "reference")),
            figures.table_columns(result.per_target, ("target", "sim_top1", "hit_rate_at_1")),
            result.config.encoder,
            result.dataset.relevance,
        ),
    )
    with tempfile.TemporaryDirectory() as folder:
        with contextlib.ExitStack() as stack:
            drawing = None
            if figure_args is not None:
                drawing = skipped.attempt("figures", _background_figures, stack, folder, figure_args)
                skipped.pop("figures", None)  # no helper process: drawn here below
            _log_dataset_and_files(result, config_params, Path(folder), skipped)
            drawn: list[str] = []
            if drawing is not None:
                with contextlib.suppress(Exception):  # drawn again here, where an error is recorded
                    drawn = list(drawing.result())
        if figure_args is not None:
            for name in figures.run_figure_names(result.similarity):
                if name not in drawn:
                    skipped.attempt(name, figures.save_run_figure, name, folder, *figure_args)
        extra_tables = []
        if result.groups is not None:  # metrics by each query's label (a scenario's deformation): table, figure
            extra_tables = skipped.attempt(result.groups.table_name, _write_groups, result, folder) or []
        skipped.attempt("artifacts", _log_artifacts, folder, extra_tables)
    skipped.record()


def _write_groups(result: RunResult, folder: str) -> list[str]:
    """``tables/per_<label>.{csv,json}`` and ``figures/per_<label>.png``; returns the table to register."""
    from . import figures

    groups, root = result.groups, Path(folder)
    (root / "tables").mkdir(parents=True, exist_ok=True)
    (root / f"{groups.table_name}.csv").write_text(groups.table.to_csv(index=False), encoding="utf-8")
    _json_ready(groups.table).to_json(root / f"{groups.table_name}.json", orient="split", index=False)
    figures.save_figure(
        figures.per_label_bars(groups.table, groups.label_name, result.config.encoder), folder, groups.figure_name
    )
    return [f"{groups.table_name}.json"]


def _background_figures(stack: contextlib.ExitStack, folder: str, figure_args: tuple):
    from . import figures
    from .parallel import background_call

    return stack.enter_context(background_call(figures.save_run_figures, folder, *figure_args))


def _log_values(result: RunResult, config_params: dict, skipped: _Skipped) -> None:
    """A run's metrics (first: what the run is for), then its params and tags (each group may be skipped)."""
    import mlflow

    config = result.config
    metrics = {name: float(value) for name, value in result.metrics.items()}
    dropped = sorted(name for name, value in metrics.items() if not math.isfinite(value))
    mlflow.log_metrics({logged_name(name): value for name, value in metrics.items() if name not in dropped})

    params = {
        **config_params,
        **result.encoder_params,
        "dataset_fingerprint": result.dataset_fingerprint,
        "ground_truth_given": result.dataset.relevance is not None,
        **result.params,
    }
    skipped.attempt("params", log_params_once, params)
    package = result.encoder_params.get("encoder_package")
    tags = {
        **package_versions((package,) if package and package != "none" else ()),
        **{f"encoder.{k}": v for k, v in result.encoder_tags.items()},
        **{f"skipped.{name}": tag_text(reason) for name, reason in result.skipped_metrics.items()},
        ENCODER_TAG: config.encoder,
        "dataset_fingerprint": result.dataset_fingerprint,
    }
    ground_truth = result.dataset.ground_truth
    if ground_truth is not None and ground_truth.notes():
        tags["ground_truth_notes"] = tag_text("\n".join(ground_truth.notes()))
    if getattr(result.dataset, "notes", None):  # a scenario's (shortened queries, skipped excerpts)
        tags["scenario_notes"] = tag_text("\n".join(result.dataset.notes))
    if dropped:  # the pipeline already drops them; never log NaN/inf as if it were a score
        tags["dropped_non_finite_metrics"] = tag_text(",".join(dropped))
    if skipped.attempt("tags", mlflow.set_tags, tags) is None and "tags" in skipped:
        for key, value in tags.items():  # one refused tag must not take the others with it
            skipped.attempt(f"tags/{key}", mlflow.set_tag, key, value)
        del skipped["tags"]


def _log_dataset_and_files(result: RunResult, config_params: dict, root: Path, skipped: _Skipped) -> None:
    """The dataset (``log_input``), and the tables and texts of a run written under ``root``; each one that cannot
    be produced is skipped with its reason."""
    import mlflow

    config = result.config
    manifest = skipped.attempt("dataset/manifest.csv", _manifest, result)

    def log_input() -> None:
        with warnings.catch_warnings():  # a local path matches two of MLflow's own (equivalent) source types
            warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted")
            dataset = mlflow.data.from_pandas(
                manifest, source=str(Path(config.refs).resolve()), name=f"musicbench-{result.dataset_fingerprint}"
            )
        mlflow.log_input(dataset, context="benchmark")

    if manifest is not None:
        skipped.attempt("dataset", log_input)

    texts = {
        "tables/topk.csv": lambda: result.topk.to_csv(index=False),
        "tables/per_target.csv": lambda: result.per_target.to_csv(index=False),
        "failures.csv": lambda: failures_csv(result.failures),
        "dataset/manifest.csv": (lambda: manifest.to_csv(index=False)) if manifest is not None else None,
        "config.json": lambda: json.dumps(
            {
                "config": {k: str(v) for k, v in config_params.items()},
                "encoder": result.encoder_params,
                "skipped_metrics": result.skipped_metrics,
            },
            indent=2,
            default=str,
        ),
    }

    def write_table(name: str, attribute: str) -> None:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        getattr(result, attribute).to_json(root / name, orient="split", index=False, date_format="iso")  # as log_table

    def write_text(name: str, text) -> None:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text(), encoding="utf-8")

    for name, attribute in _TABLES.items():
        if skipped.attempt(name, write_table, name, attribute) is None and name in skipped:
            (root / name).unlink(missing_ok=True)  # never a half-written table
    for name, text in texts.items():
        if text is not None:
            skipped.attempt(name, write_text, name, text)


#: a run's tables (artifact name → ``RunResult`` attribute), registered for ``mlflow.load_table``
_TABLES = {"tables/topk.json": "topk", "tables/per_target.json": "per_target"}


def _log_artifacts(folder: str, extra_tables: list[str] = ()) -> None:
    """Upload ``folder``, then register the tables (those written) with the tag through which ``mlflow.load_table``
    finds a run's tables, as ``log_table`` sets it."""
    import mlflow
    from mlflow.utils.mlflow_tags import MLFLOW_LOGGED_ARTIFACTS

    if mlflow.active_run() is None:  # MLflow would start a run of its own, left RUNNING
        raise RuntimeError("no active MLflow run to log the artifacts to")
    mlflow.log_artifacts(folder)
    logged = json.loads(mlflow.get_run(mlflow.active_run().info.run_id).data.tags.get(MLFLOW_LOGGED_ARTIFACTS, "[]"))
    tables = [name for name in (*_TABLES, *extra_tables) if (Path(folder) / name).is_file()]
    logged += [entry for entry in ({"path": name, "type": "table"} for name in tables) if entry not in logged]
    mlflow.set_tag(MLFLOW_LOGGED_ARTIFACTS, json.dumps(logged))


def _prestart_figures() -> None:
    """A spare process imports matplotlib and warms it up while the pipeline runs, for ``log_result`` to draw the
    figures there (``parallel.prestart_helper``). Started now rather than with the process: a run's start-up is
    busy already (MLflow here, the encoder's packages in the workers' fork server)."""
    from . import figures
    from .parallel import prestart_helper

    prestart_helper(figures.MODULES, figures.warm_up)


def summary_line(result: RunResult) -> str:
    keys = ("map", "mrr", "recall_at_" + str(result.config.k), "sim_top1_mean", "melody_acc_top1_mean")
    shown = ", ".join(f"{k}={result.metrics[k]:.3f}" for k in keys if k in result.metrics)
    return json.dumps(result.config.encoder) + f": {shown} ({len(result.failures)} failed files)"


# --- the one run path -----------------------------------------------------------------------------------------


@dataclass
class RunOutcome:
    """What became of one encoder's run: FINISHED with its result, or FAILED with the error (already recorded)."""

    encoder: str
    run_id: str | None
    status: str  # FINISHED | FAILED
    result: RunResult | None = None
    error: Exception | None = None
    seconds: float = 0.0

    @property
    def failure_reason(self) -> str:
        return f"{type(self.error).__name__}: {self.error}" if self.error is not None else ""


def run_and_record(
    config: RunConfig,
    dataset: Dataset | None = None,
    progress: bool = True,
    nested: bool = False,
    tags: dict[str, str] | None = None,
) -> RunOutcome:
    """Start the MLflow run, prepare the encoder and metrics, run the pipeline, record the result.

    The run starts before anything is built, so a failure of any kind (unknown encoder, missing weights, every
    file failing, a bug) ends it FAILED with its ``failure_reason`` and encoder tag, and is returned, not raised.
    The encoder is always closed. Ctrl-C / SIGTERM end the run KILLED and propagate.
    """
    from . import pipeline

    started = time.perf_counter()
    run_id = None
    try:
        with started_run(
            config.experiment,
            config.run_name or config.encoder,
            nested=nested,
            tags={ENCODER_TAG: config.encoder, **(tags or {})},
        ) as run:
            run_id = run.info.run_id
            log_params_once(params_of(config))
            log_params_once(run_inputs(config), fill_only=True)
            prepared = pipeline.prepare(config, dataset)
            _prestart_figures()
            try:
                result = pipeline.run(config, progress=progress, prepared=prepared)
                log_result(result)
            finally:
                prepared.encoder.close()
    except Exception as error:  # noqa: BLE001 - recorded on the run and returned to the caller
        return RunOutcome(config.encoder, run_id, "FAILED", None, error, time.perf_counter() - started)
    return RunOutcome(config.encoder, run_id, "FINISHED", result, None, time.perf_counter() - started)


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


def _json_ready(frame: pd.DataFrame) -> pd.DataFrame:
    """NaN → None so that the logged JSON table is valid JSON."""
    return frame.astype(object).where(frame.notna(), None)


def log_comparison(client, run_id: str, comparison, base: str = "comparison") -> None:
    """Log a ``compare.Comparison`` under ``comparison/`` of ``run_id`` (tables, CSV, markdown, figures, tags)."""
    from .compare import COMPARISON_TAG

    client.log_table(run_id, _json_ready(comparison.table.reset_index()), f"{base}/comparison.json")
    client.log_table(run_id, _json_ready(comparison.top1), f"{base}/per_target_top1.json")
    client.log_table(run_id, _json_ready(comparison.summary), f"{base}/per_target_summary.json")
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
