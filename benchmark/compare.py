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
  * ``tied``   – the encoder's CI overlaps the best encoder's CI: statistically indistinguishable from the
    best at this sample size;
  * ``below``  – the CIs are disjoint: a difference the data support;
  * ``no CI``  – one of the two has no CI (e.g. ``melody_acc_top1_mean``): no statement.

  CI overlap is a conservative test (disjoint 95% intervals imply p < 0.05; overlapping ones do not imply
  the opposite), and it ignores that every encoder answers the same queries (a paired test would be sharper).
  In the markdown table the best cell is marked ``★`` and tied cells ``≈``.
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

from .measures import has_direction, headline_metrics, lower_is_better
from .runs import Selection, SelectionError, encoder_of, select_runs

COMPARISON_TAG = "musicbench.comparison"
PER_TARGET_TABLE = "tables/per_target.json"
FIGURES = ("per_target_top1_similarity", "metrics_heatmap", "per_target_summary")


#: the runs to compare cannot be found or read (the message says which and why)
CompareError = SelectionError


def per_target_column(metric: str) -> str | None:
    """The per_target table column whose mean is ``metric`` (``map`` → ``average_precision``), if any."""
    from metrics.ir import per_query_column

    if metric.endswith("_top1_mean"):
        return metric[: -len("_mean")]
    try:
        return per_query_column(metric)
    except KeyError:
        return None


def _labels(runs: list) -> list[str]:
    encoders = [encoder_of(r) for r in runs]
    return [e if encoders.count(e) == 1 else f"{e} ({r.info.run_id[:8]})" for e, r in zip(encoders, runs)]


def _vs_best(table: pd.DataFrame, metric: str) -> pd.Series:
    values = table[metric]
    out = pd.Series("", index=table.index, dtype=object)
    if values.notna().sum() == 0 or not has_direction(metric):
        return out
    best_label = values.idxmin() if lower_is_better(metric) else values.idxmax()
    best = values[best_label]
    low_col, high_col = f"{metric}_ci_low", f"{metric}_ci_high"
    for label, value in values.items():
        if pd.isna(value):
            continue
        if value == best:
            out[label] = "best"
        elif low_col not in table or pd.isna(table.at[label, low_col]) or pd.isna(table.at[best_label, low_col]):
            out[label] = "no CI"
        elif (
            table.at[label, high_col] >= table.at[best_label, low_col]
            and table.at[best_label, high_col] >= table.at[label, low_col]
        ):
            out[label] = "tied"
        else:
            out[label] = "below"
    return out


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

    def markdown(self, digits: int = 3) -> str:
        return markdown_table(self.table, self.metrics, digits)

    def close(self) -> None:
        import matplotlib.pyplot as plt

        for figure in self.figures.values():
            plt.close(figure)
        self.figures = {}


def markdown_table(table: pd.DataFrame, metrics: list[str], digits: int = 3) -> str:
    def cell(label, metric):
        value = table.at[label, metric]
        if pd.isna(value):
            return "–"
        text = f"{value:.{digits}f}"
        low, high = table.get(f"{metric}_ci_low"), table.get(f"{metric}_ci_high")
        if low is not None and pd.notna(low[label]):
            text += f" [{low[label]:.{digits}f}, {high[label]:.{digits}f}]"
        mark = {"best": " ★", "tied": " ≈"}.get(table.at[label, f"{metric}_vs_best"], "")
        return text + mark

    lines = ["| encoder | " + " | ".join(metrics) + " |", "|---|" + "---|" * len(metrics)]
    for label in table.index:
        lines.append(f"| {label} | " + " | ".join(cell(label, m) for m in metrics) + " |")
    lines.append("")
    lines.append(
        "value [bootstrap 95% CI]; ★ best; ≈ CI overlaps the best's CI (statistically indistinguishable from the best)."
    )
    return "\n".join(lines)


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
    wanted = metrics or headline_metrics(ks)
    present = [m for m in wanted if any(m in r.data.metrics for r in runs)]
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
            values = run.data.metrics
            row[metric] = values.get(metric, np.nan)
            row[f"{metric}_ci_low"] = values.get(f"{metric}_ci_low", np.nan)
            row[f"{metric}_ci_high"] = values.get(f"{metric}_ci_high", np.nan)
        rows.append(row)
    table = pd.DataFrame(rows).set_index("encoder")
    for metric in present:
        table[f"{metric}_vs_best"] = _vs_best(table, metric)
    ordered = ["run_id"] + [c for m in present for c in (m, f"{m}_ci_low", f"{m}_ci_high", f"{m}_vs_best")]
    table = table[ordered]

    fingerprints = {r.data.params.get("dataset_fingerprint") for r in runs}
    if len(fingerprints) > 1:
        warnings.append("the runs were made on different datasets (dataset_fingerprint differs)")
    if len(ks) > 1:
        warnings.append(f"the runs used different k: {ks}")

    per_target = load_per_target(client, runs, labels)
    top1 = side_by_side(per_target, labels)
    summary = summary_stats(per_target, labels, present)
    comparison = Comparison(labels, [r.info.run_id for r in runs], present, table, per_target, top1, summary, warnings)
    if figures:
        from .figures import grouped_top1_bars, metrics_heatmap, summary_figure

        comparison.figures = {
            "per_target_top1_similarity": grouped_top1_bars(per_target, labels),
            "metrics_heatmap": metrics_heatmap(table, present),
            "per_target_summary": summary_figure(summary, labels),
        }
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


def summary_stats(per_target: pd.DataFrame, labels: list[str], metrics: list[str]) -> pd.DataFrame:
    """mean, std (ddof 1), min, max and n over targets of each metric's per-target values, per encoder."""
    rows = []
    for metric in metrics:
        column = per_target_column(metric)
        if column is None or column not in per_target:
            continue
        for label in labels:
            values = pd.to_numeric(per_target.loc[per_target["encoder"] == label, column], errors="coerce").dropna()
            rows.append(
                {
                    "encoder": label,
                    "metric": metric,
                    "column": column,
                    "n": int(len(values)),
                    "mean": float(values.mean()) if len(values) else np.nan,
                    "std": float(values.std(ddof=1)) if len(values) > 1 else np.nan,
                    "min": float(values.min()) if len(values) else np.nan,
                    "max": float(values.max()) if len(values) else np.nan,
                }
            )
    return pd.DataFrame(rows, columns=["encoder", "metric", "column", "n", "mean", "std", "min", "max"])


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

    Logged to ``log_run_id`` when given (the suite passes its parent), else to the ``parent`` run, else to a new
    run tagged ``musicbench.comparison=true`` (in the compared runs' experiment unless ``new_run_experiment``).
    Under ``mlflow run`` (``MLFLOW_RUN_ID`` set) the run MLflow started is the new run / also gets the comparison.
    """
    from . import tracking
    from .runs import client as runs_client

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
            name = new_run_experiment or client.get_experiment(selection.experiment_id).name
            with tracking.started_run(name, "comparison", tags={COMPARISON_TAG: "true"}) as run:
                tracking.log_comparison(client, run.info.run_id, comparison)
            targets.append(run.info.run_id)
    finally:
        comparison.close()
    return Outcome(comparison, selection, targets, written, out)
