"""What a finished pipeline run records on its MLflow run (``log_result``): metrics first, then params and tags,
the dataset input, tables, texts and figures. Nothing here can fail the run once its metrics are logged."""

from __future__ import annotations

import contextlib
import json
import math
import warnings
from pathlib import Path

import pandas as pd

from .data import shown
from .measures import logged_name
from .pipeline import RunResult
from .runs import ENCODER_TAG
from .tracking import json_ready, tag_text
from .tracking_params import log_params_once, package_versions, params_of


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

    The figures are drawn in a process of their own while the metrics, params, dataset and tables are recorded,
    when the run's fork server is up (``parallel.background_call``; it imported matplotlib meanwhile); a figure not
    drawn there (no such process, or it failed) is drawn here, where its error is recorded.
    """
    import tempfile

    from . import figures

    skipped = _Skipped()
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
            config_params = skipped.attempt("params", params_of, result.config) or {}  # once: asks git for the code
            _log_values(result, config_params, skipped)  # the first MLflow writes: metrics, then params and tags
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
    from . import figures, figures_compare

    groups, root = result.groups, Path(folder)
    (root / "tables").mkdir(parents=True, exist_ok=True)
    (root / f"{groups.table_name}.csv").write_text(groups.table.to_csv(index=False), encoding="utf-8")
    json_ready(groups.table).to_json(root / f"{groups.table_name}.json", orient="split", index=False)
    figures.save_figure(
        figures_compare.per_label_bars(groups.table, groups.label_name, result.config.encoder),
        folder,
        groups.figure_name,
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
