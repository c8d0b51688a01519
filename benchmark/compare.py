"""Compare encoders: read finished runs back from MLflow, build the comparison table and figures, log them.

Which runs (``select_runs``):

- ``parent``: the FINISHED children of a suite parent run (``tags.mlflow.parentRunId``); FAILED children are
  listed as skipped.
- ``run_ids``: exactly these runs (each must be FINISHED).
- ``experiment``: the latest FINISHED run of every encoder in the experiment (runs tagged
  ``musicbench.encoder``; suite parents and comparison runs carry no such tag).

What comes out (``Comparison``), written to a folder and logged under ``comparison/`` of a run:

- ``comparison.csv`` / ``comparison.json`` (MLflow table) / ``comparison.md``: encoders as rows, headline
  metrics as columns with their bootstrap 95% CI (``<m>_ci_low``/``<m>_ci_high`` when the run logged one) and
  ``<m>_vs_best``, one of:

  * ``best``   – the highest value (lowest for lower-is-better metrics such as ``mean_first_relevant_rank``);
  * ``tied``   – the paired 95% bootstrap CI of the per-target difference to the best includes 0;
  * ``below``  – it excludes 0 on the worse side: a difference the data support (``above``: on the better side,
    possible only when the two runs scored different target sets);
  * without per-target values for the metric (an older run): the unpaired check, ``tied`` when the two runs'
    own CIs overlap, ``below`` when they are disjoint, ``no CI`` when one has none;
  * ``<m>_test`` names which of the two was used.

  The paired test (``stats.paired_bootstrap``, 10,000 resamples, seed 0) takes each run's per-target values from
  its ``tables/per_target.json``, joins them on the target, and resamples targets: every encoder answers the same
  queries, so query difficulty cancels in the difference. Alongside: ``<m>_diff`` (encoder − best, mean over the
  ``<m>_n_paired`` shared targets), ``<m>_diff_ci_low`` / ``<m>_diff_ci_high``. For a hit rate (paired 0/1
  outcomes) McNemar's exact test decides instead (``<m>_mcnemar_p`` < 0.05: ``below``/``above``;
  ``stats.mcnemar_exact``): on few targets the percentile bootstrap of a 0/1 difference is too narrow (the demo:
  CI [-0.611, -0.056] while the exact p is 0.070). In the markdown table the best cell is marked ``★`` and tied
  cells ``≈``; a second table lists the differences to the best.
- ``per_target_top1.csv`` / ``.json``: every target's top-1 reference and similarity, encoders side by side.
- ``per_target_summary.csv`` / ``.json``: mean, std, min, max (and n) over targets of each headline metric's
  per-target values (from each run's ``tables/per_target.json``; ``map`` → ``average_precision``, …).
- ``figures/per_target_top1_similarity.png`` (grouped bars), ``figures/metrics_heatmap.png`` (encoders ×
  metrics, colour min–max normalised per metric, raw values annotated), ``figures/per_target_summary.png``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .compare_stats import paired_vs_best, summary_stats, unpaired_vs_best
from .compare_table import markdown_table
from .measures import headline_metrics, plain_metrics, plain_name, ranked_across_encoders
from .runs import Selection, SelectionError, encoder_of, select_runs

COMPARISON_TAG = "musicbench.comparison"
PER_TARGET_TABLE = "tables/per_target.json"
FIGURES = ("per_target_top1_similarity", "metrics_heatmap", "per_target_summary")


#: the runs to compare cannot be found or read (the message says which and why)
CompareError = SelectionError


def _labels(runs: list) -> list[str]:
    encoders = [encoder_of(r) for r in runs]
    return [e if encoders.count(e) == 1 else f"{e} ({r.info.run_id[:8]})" for e, r in zip(encoders, runs)]


@dataclass
class Comparison:
    labels: list[str]
    run_ids: list[str]
    metrics: list[str]
    table: pd.DataFrame  # index: encoder label
    per_target: pd.DataFrame  # the runs' per_target tables stacked, with "encoder" and "run_id"
    top1: pd.DataFrame  # target × encoder: top-1 reference and similarity
    summary: pd.DataFrame  # encoder, metric, column, n, mean, std, min, max
    warnings: list[str] = field(default_factory=list)
    figures: dict = field(default_factory=dict)  # name → matplotlib Figure
    per_deformation: pd.DataFrame | None = None  # robustness runs: encoders × deformations of hit@1

    def markdown(self, digits: int = 3) -> str:
        text = markdown_table(self.table, self.metrics, digits)
        if self.per_deformation is not None:
            from .scenarios.report import markdown

            text += "\n\n" + markdown(self.per_deformation, digits=digits)
        return text

    def close(self) -> None:
        import matplotlib.pyplot as plt

        for figure in self.figures.values():
            plt.close(figure)
        self.figures = {}


def load_per_target(client, runs: list, labels: list[str]) -> pd.DataFrame:
    """The runs' ``tables/per_target.json`` via ``MlflowClient.load_table``, stacked, with encoder and run_id."""
    from mlflow.exceptions import MlflowException

    frames = []
    by_experiment: dict[str, list[str]] = {}
    for run in runs:
        by_experiment.setdefault(run.info.experiment_id, []).append(run.info.run_id)
    for experiment_id, ids in by_experiment.items():
        try:
            frames.append(client.load_table(experiment_id, PER_TARGET_TABLE, run_ids=ids, extra_columns=["run_id"]))
        except MlflowException as error:
            raise CompareError(f"cannot read {PER_TARGET_TABLE} of runs {', '.join(ids)}: {error.message}") from None
    table = pd.concat(frames, ignore_index=True)
    missing = {r.info.run_id for r in runs} - set(table["run_id"])
    if missing:
        raise CompareError(f"runs without {PER_TARGET_TABLE}: {', '.join(sorted(missing))}")
    label_of = {r.info.run_id: label for r, label in zip(runs, labels)}
    table.insert(0, "encoder", table["run_id"].map(label_of))
    order = {r.info.run_id: i for i, r in enumerate(runs)}
    return table.sort_values("run_id", key=lambda s: s.map(order), kind="stable").reset_index(drop=True)


def build(client, runs: list, metrics: list[str] | None = None, figures: bool = True) -> Comparison:
    """The comparison of ``runs`` (FINISHED, each with a per_target table)."""
    if not runs:
        raise CompareError("no runs to compare")
    labels = _labels(runs)
    ks = sorted({int(r.data.params["k"]) for r in runs if str(r.data.params.get("k", "")).isdigit()}) or [5]
    logged = {r.info.run_id: plain_metrics(r.data.metrics) for r in runs}  # retrieval/map → map; old runs: map
    wanted = [plain_name(m) for m in metrics] if metrics else headline_metrics(ks)
    present = [m for m in wanted if any(m in logged[r.info.run_id] for r in runs)]
    unknown = [m for m in wanted if m not in present]
    warnings = []
    if metrics and unknown:
        warnings.append(f"no run logged: {', '.join(unknown)}")
    if not present:
        raise CompareError(f"none of the metrics {', '.join(wanted)} was logged by these runs")

    rows = []
    for run, label in zip(runs, labels):
        row = {"encoder": label, "run_id": run.info.run_id}
        for metric in present:
            values = logged[run.info.run_id]
            row[metric] = values.get(metric, np.nan)
            row[f"{metric}_ci_low"] = values.get(f"{metric}_ci_low", np.nan)
            row[f"{metric}_ci_high"] = values.get(f"{metric}_ci_high", np.nan)
        rows.append(row)
    table = pd.DataFrame(rows).set_index("encoder")
    per_target = load_per_target(client, runs, labels)
    extra: dict[str, list[str]] = {}
    for metric in present:
        paired = paired_vs_best(table, per_target, metric)
        if not ranked_across_encoders(metric):  # e.g. sim_top1_mean: a cosine in each encoder's own space
            table[f"{metric}_vs_best"] = ""
            table[f"{metric}_test"] = "not ranked: comparable within an encoder only"
            extra[metric] = []
        elif paired is None:
            table[f"{metric}_vs_best"] = unpaired_vs_best(table, metric)
            table[f"{metric}_test"] = "CI overlap (unpaired: no per-target values)"
            extra[metric] = []
        else:
            for column in paired.columns:
                table[column] = paired[column]
            extra[metric] = [c for c in paired.columns if c not in (f"{metric}_vs_best", f"{metric}_test")]
    ordered = ["run_id"] + [
        c for m in present for c in (m, f"{m}_ci_low", f"{m}_ci_high", f"{m}_vs_best", f"{m}_test", *extra[m])
    ]
    table = table[ordered]

    fingerprints = {r.data.params.get("dataset_fingerprint") for r in runs}
    if len(fingerprints) > 1:
        warnings.append("the runs were made on different datasets (dataset_fingerprint differs)")
    if len(ks) > 1:
        warnings.append(f"the runs used different k: {ks}")

    top1 = side_by_side(per_target, labels)
    summary = summary_stats(per_target, labels, present)
    comparison = Comparison(labels, [r.info.run_id for r in runs], present, table, per_target, top1, summary, warnings)
    from .scenarios.report import label_matrix

    comparison.per_deformation = label_matrix(runs, labels)  # None unless robustness-scenario runs
    if figures:
        from .figures_compare import grouped_top1_bars, metrics_heatmap, summary_figure

        comparison.figures = {
            "per_target_top1_similarity": grouped_top1_bars(per_target, labels),
            "metrics_heatmap": metrics_heatmap(table, present),
            "per_target_summary": summary_figure(summary, labels),
        }
        if comparison.per_deformation is not None:
            from .figures_compare import label_heatmap

            comparison.figures["deformation_heatmap"] = label_heatmap(comparison.per_deformation)
    return comparison


def side_by_side(per_target: pd.DataFrame, labels: list[str]) -> pd.DataFrame:
    """target × encoder: ``<encoder>.top1_reference`` and ``<encoder>.sim_top1`` columns, one row per target."""
    targets = list(dict.fromkeys(per_target["target"]))
    out = pd.DataFrame({"target": targets})
    for label in labels:
        rows = per_target[per_target["encoder"] == label].set_index("target")
        out[f"{label}.top1_reference"] = out["target"].map(rows["top1_reference"])
        out[f"{label}.sim_top1"] = out["target"].map(rows["sim_top1"])
    return out


# --- output --------------------------------------------------------------------------------------------------


def _json_ready(frame: pd.DataFrame) -> pd.DataFrame:
    """NaN → None so that the logged JSON table is valid JSON."""
    return frame.astype(object).where(frame.notna(), None)


def write(comparison: Comparison, out_dir: Path) -> list[Path]:
    out_dir = Path(out_dir)
    (out_dir / "figures").mkdir(parents=True, exist_ok=True)
    written = []
    for name, frame, index in (
        ("comparison", comparison.table, True),
        ("per_target_top1", comparison.top1, False),
        ("per_target_summary", comparison.summary, False),
    ):
        path = out_dir / f"{name}.csv"
        frame.to_csv(path, index=index)
        written.append(path)
    if comparison.per_deformation is not None:
        path = out_dir / "per_deformation_hit_rate_at_1.csv"
        comparison.per_deformation.to_csv(path, index_label="encoder")
        written.append(path)
    path = out_dir / "comparison.md"
    path.write_text(comparison.markdown() + "\n" + "".join(f"\nWarning: {w}\n" for w in comparison.warnings))
    written.append(path)
    for name, figure in comparison.figures.items():
        path = out_dir / "figures" / f"{name}.png"
        figure.savefig(path, dpi=110)
        written.append(path)
    return written


def default_out_dir(parent_run_id: str | None) -> Path:
    return Path.cwd() / "comparison" / (parent_run_id or time.strftime("%Y%m%d-%H%M%S"))


@dataclass
class Outcome:
    comparison: Comparison
    selection: Selection
    logged_to: list[str]
    written: list[Path]
    out_dir: Path


def compare(
    parent: str | None = None,
    experiment: str | None = None,
    run_ids: list[str] | None = None,
    metrics: list[str] | None = None,
    out_dir: Path | None = None,
    log_run_id: str | None = None,
    new_run_experiment: str | None = None,
) -> Outcome:
    """Select runs, build the comparison, write it to ``out_dir`` and log it to MLflow.

    Logged to ``log_run_id`` when given (the suite passes its parent), else to the ``parent`` run, else to the
    experiment's one comparison run (tagged ``musicbench.comparison=true``, named after what it compares), which
    replaces the previous one: a bare ``compare`` run again and again leaves one comparison run per experiment, not
    one more each time. Its experiment follows the rule of ``store.resolve_experiment`` (``new_run_experiment`` or
    ``experiment``, else ``$MLFLOW_EXPERIMENT_NAME`` / ``_ID``, else an enclosing ``mlflow run``'s), else the compared
    runs' experiment when they share one, else "musicbench". Under ``mlflow run`` (``MLFLOW_RUN_ID`` set) the run
    MLflow started is that run.
    """
    from . import tracking
    from .runs import client as runs_client
    from .store import configure, resolve_experiment

    client = runs_client()
    selection = select_runs(client, parent=parent, experiment=experiment, run_ids=run_ids)
    comparison = build(client, selection.runs, metrics)
    try:
        out = Path(out_dir) if out_dir else default_out_dir(log_run_id or selection.parent_run_id)
        written = write(comparison, out)
        targets = [r for r in (log_run_id or selection.parent_run_id,) if r]
        for run_id in targets:
            tracking.log_comparison(client, run_id, comparison)
        mlflow_run = os.environ.get("MLFLOW_RUN_ID")
        if not targets or (mlflow_run and mlflow_run not in targets):
            name, source = resolve_experiment(new_run_experiment or experiment)
            shared = {r.info.experiment_id for r in selection.runs}
            if source == "default" and len(shared) == 1:  # nothing said where: beside the runs it compares
                name = client.get_experiment(shared.pop()).name
            experiment_id = configure(name)
            previous = [
                r.info.run_id
                for r in client.search_runs([experiment_id], f"tags.`{COMPARISON_TAG}` = 'true'", max_results=1000)
                if r.info.run_id != mlflow_run and not r.data.tags.get("musicbench.suite")
            ]
            run_name = "comparison: " + " vs ".join(comparison.labels)
            with tracking.started_run(name, run_name, tags={COMPARISON_TAG: "true"}) as run:
                tracking.log_comparison(client, run.info.run_id, comparison)
            tracking.delete_runs(client, previous)
            targets.append(run.info.run_id)
    finally:
        comparison.close()
    return Outcome(comparison, selection, targets, written, out)
