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

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

HEADLINE = ("map", "mrr", "recall_at_{k}", "ndcg_at_{k}", "hit_rate_at_1", "sim_top1_mean", "melody_acc_top1_mean")
LOWER_IS_BETTER = frozenset({"mean_first_relevant_rank", "n_failed"})
COMPARISON_TAG = "musicbench.comparison"
PER_TARGET_TABLE = "tables/per_target.json"
ARTIFACT_DIR = "comparison"
FIGURES = ("per_target_top1_similarity", "metrics_heatmap", "per_target_summary")


class CompareError(ValueError):
    """The runs to compare cannot be found or read (the message says which and why)."""


def lower_is_better(metric: str) -> bool:
    return metric in LOWER_IS_BETTER or metric.endswith("_seconds")


def per_target_column(metric: str) -> str | None:
    """The per_target table column whose mean is ``metric`` (``map`` → ``average_precision``), if any."""
    from metrics.ir import per_query_column

    if metric.endswith("_top1_mean"):
        return metric[: -len("_mean")]
    try:
        return per_query_column(metric)
    except KeyError:
        return None


def headline_metrics(ks: list[int]) -> list[str]:
    out: list[str] = []
    for name in HEADLINE:
        for k in sorted(set(ks)) if "{k}" in name else [None]:
            metric = name.format(k=k)
            if metric not in out:
                out.append(metric)
    return out


def encoder_of(run) -> str:
    return run.data.tags.get("musicbench.encoder") or run.data.params.get("encoder") or run.info.run_name


def _client():
    import mlflow
    from mlflow.tracking import MlflowClient

    from .tracking import tracking_uri

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # load_table downloads quietly
    mlflow.set_tracking_uri(tracking_uri())
    return MlflowClient()


def _latest_first(runs: list) -> list:
    return sorted(runs, key=lambda r: (r.info.start_time or 0, r.info.end_time or 0), reverse=True)


def encoder_runs(client, experiment_id: str, status: str | None = "FINISHED") -> list:
    """Every encoder run (tagged ``musicbench.encoder``) of an experiment, newest first."""
    from mlflow.entities import ViewType

    filters = ["tags.`musicbench.encoder` != ''"]
    if status:
        filters.append(f"attributes.status = '{status}'")
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], " and ".join(filters), ViewType.ACTIVE_ONLY, 1000,
                                  ["attributes.start_time DESC"], token)
        runs.extend(page)
        token = page.token
        if not token:
            return _latest_first(runs)


@dataclass
class Selection:
    runs: list  # mlflow Run objects, FINISHED
    parent_run_id: str | None = None
    experiment_id: str | None = None
    skipped: list[tuple[str, str, str]] = field(default_factory=list)  # (encoder, run id, why)


def select_runs(client, parent: str | None = None, experiment: str | None = None,
                run_ids: list[str] | None = None) -> Selection:
    """Resolve exactly one of parent / run_ids / experiment into the runs to compare."""
    given = [name for name, value in (("--parent", parent), ("--runs", run_ids), ("--experiment", experiment))
             if value]
    if len(given) != 1:
        raise CompareError(f"give exactly one of --parent, --runs, --experiment (got {', '.join(given) or 'none'})")
    from mlflow.exceptions import MlflowException

    if parent:
        try:
            parent_run = client.get_run(parent)
        except MlflowException as error:
            raise CompareError(f"parent run {parent} not found: {error.message}") from None
        children = _latest_first(client.search_runs([parent_run.info.experiment_id],
                                                    f"tags.`mlflow.parentRunId` = '{parent}'", max_results=1000))
        children.reverse()  # in the order the suite ran them
        if not children:
            raise CompareError(f"run {parent} has no child runs (is it a suite parent?)")
        selection = Selection([], parent, parent_run.info.experiment_id)
        for child in children:
            if child.info.status == "FINISHED":
                selection.runs.append(child)
            else:
                reason = child.data.tags.get("failure_reason", "")
                selection.skipped.append((encoder_of(child), child.info.run_id, f"{child.info.status} {reason}"))
        if not selection.runs:
            raise CompareError(f"no child of {parent} finished: "
                               + "; ".join(f"{e} {why}" for e, _, why in selection.skipped))
        return selection
    if run_ids:
        runs = []
        for run_id in run_ids:
            try:
                run = client.get_run(run_id)
            except MlflowException as error:
                raise CompareError(f"run {run_id} not found: {error.message}") from None
            if run.info.status != "FINISHED":
                raise CompareError(f"run {run_id} ({encoder_of(run)}) is {run.info.status}, not FINISHED")
            runs.append(run)
        return Selection(runs, None, runs[0].info.experiment_id)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise CompareError(f"experiment '{experiment}' not found")
    latest: dict[str, object] = {}
    for run in encoder_runs(client, found.experiment_id):
        latest.setdefault(encoder_of(run), run)
    if not latest:
        raise CompareError(f"experiment '{experiment}' has no FINISHED encoder runs")
    return Selection(list(reversed(list(latest.values()))), None, found.experiment_id)


def _labels(runs: list) -> list[str]:
    encoders = [encoder_of(r) for r in runs]
    return [e if encoders.count(e) == 1 else f"{e} ({r.info.run_id[:8]})" for e, r in zip(encoders, runs)]


def _vs_best(table: pd.DataFrame, metric: str) -> pd.Series:
    values = table[metric]
    out = pd.Series("", index=table.index, dtype=object)
    if values.notna().sum() == 0:
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
        elif (table.at[label, high_col] >= table.at[best_label, low_col]
              and table.at[best_label, high_col] >= table.at[label, low_col]):
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
    lines.append("value [bootstrap 95% CI]; ★ best; ≈ CI overlaps the best's CI (statistically "
                 "indistinguishable from the best).")
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
    comparison = Comparison(labels, [r.info.run_id for r in runs], present, table, per_target, top1, summary,
                            warnings)
    if figures:
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
            rows.append({"encoder": label, "metric": metric, "column": column, "n": int(len(values)),
                         "mean": float(values.mean()) if len(values) else np.nan,
                         "std": float(values.std(ddof=1)) if len(values) > 1 else np.nan,
                         "min": float(values.min()) if len(values) else np.nan,
                         "max": float(values.max()) if len(values) else np.nan})
    return pd.DataFrame(rows, columns=["encoder", "metric", "column", "n", "mean", "std", "min", "max"])


# --- figures -------------------------------------------------------------------------------------------------

def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _short(name: str, width: int = 24) -> str:
    return name if len(name) <= width else "…" + name[-(width - 1):]


def grouped_top1_bars(per_target: pd.DataFrame, labels: list[str]):
    """(a) Each target's top-1 similarity, one bar per encoder; hatched bars are wrong top-1 hits (when known)."""
    plt = _plt()
    targets = list(dict.fromkeys(per_target["target"]))
    n = max(len(labels), 1)
    width = 0.8 / n
    fig, ax = plt.subplots(figsize=(min(max(7, 0.35 * len(targets) * n + 3), 40), 4.8), constrained_layout=True)
    x = np.arange(len(targets))
    know_hits = "hit_rate_at_1" in per_target
    for i, label in enumerate(labels):
        rows = per_target[per_target["encoder"] == label].set_index("target")
        values = [float(rows["sim_top1"].get(t, np.nan)) for t in targets]
        bars = ax.bar(x - 0.4 + width * (i + 0.5), values, width, label=label, color=f"C{i % 10}")
        if know_hits:
            for bar, target in zip(bars, targets):
                if not rows["hit_rate_at_1"].get(target, 1) > 0:
                    bar.set_hatch("//")
                    bar.set_alpha(0.55)
    ax.set_xticks(x, [_short(t) for t in targets], rotation=70, ha="right", fontsize=7)
    ax.set_ylabel("top-1 cosine similarity")
    low = np.nanmin(pd.to_numeric(per_target["sim_top1"], errors="coerce")) if len(per_target) else 0.0
    ax.set_ylim(min(0.0, float(low)), 1.05)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), title="encoder", title_fontsize=8)
    title = "Top-1 retrieval similarity per target, by encoder"
    if know_hits:
        title += " (hatched: top-1 not relevant)"
    ax.set_title(title)
    return fig


def metrics_heatmap(table: pd.DataFrame, metrics: list[str]):
    """(b) Encoders × metrics; colour = min–max normalised per metric (1 = best), text = raw value."""
    plt = _plt()
    raw = table[metrics].astype(float).to_numpy()
    norm = np.full_like(raw, np.nan)
    for j, metric in enumerate(metrics):
        column = raw[:, j]
        if not np.isfinite(column).any():
            continue
        low, high = np.nanmin(column), np.nanmax(column)
        if high > low:
            norm[:, j] = (column - low) / (high - low)
            if lower_is_better(metric):
                norm[:, j] = 1.0 - norm[:, j]
        else:  # every encoder equal: all best
            norm[:, j] = np.where(np.isfinite(column), 1.0, np.nan)
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(metrics) + 2.5), max(2.5, 0.6 * len(table) + 1.6)),
                           constrained_layout=True)
    cmap = plt.get_cmap("viridis").with_extremes(bad="lightgray")
    image = ax.imshow(np.ma.masked_invalid(norm), cmap=cmap, vmin=0, vmax=1, aspect="auto")
    fig.colorbar(image, ax=ax, label="normalised per metric (1 = best)")
    for i in range(raw.shape[0]):
        for j in range(raw.shape[1]):
            text = "–" if not np.isfinite(raw[i, j]) else f"{raw[i, j]:.3f}"
            dark = np.isfinite(norm[i, j]) and norm[i, j] < 0.6
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color="white" if dark else "black")
    ax.set_xticks(range(len(metrics)), metrics, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(table)), [_short(str(i)) for i in table.index], fontsize=8)
    ax.set_title("Encoders × metrics (raw values annotated)")
    return fig


def summary_figure(summary: pd.DataFrame, labels: list[str]):
    """(c) Per metric: each encoder's mean ± std over targets (thick) and min–max range (thin), mean annotated."""
    plt = _plt()
    metrics = list(dict.fromkeys(summary["metric"])) or ["(no per-target values)"]
    cols = min(3, len(metrics))
    rows = math.ceil(len(metrics) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 0.45 * len(labels) * rows + 1.6 * rows + 0.6),
                             squeeze=False, constrained_layout=True)
    for ax in axes.ravel()[len(metrics):]:
        ax.axis("off")
    for ax, metric in zip(axes.ravel(), metrics):
        part = summary[summary["metric"] == metric].set_index("encoder")
        for y, label in enumerate(labels):
            if label not in part.index or not np.isfinite(part.at[label, "mean"]):
                continue
            row = part.loc[label]
            ax.hlines(y, row["min"], row["max"], color=f"C{y % 10}", linewidth=1)
            std = row["std"] if np.isfinite(row["std"]) else 0.0
            ax.hlines(y, row["mean"] - std, row["mean"] + std, color=f"C{y % 10}", linewidth=5, alpha=0.6)
            ax.plot([row["mean"]], [y], "o", color="black", markersize=4)
            ax.annotate(f"{row['mean']:.3f}±{std:.3f}", (row["mean"], y), textcoords="offset points",
                        xytext=(0, 6), ha="center", fontsize=7)
        ax.set_yticks(range(len(labels)), [_short(label, 16) for label in labels], fontsize=8)
        ax.set_ylim(-0.7, len(labels) - 0.3)
        ax.invert_yaxis()
        column = part["column"].iloc[0] if len(part) else ""
        ax.set_title(f"{metric} (per-target {column})", fontsize=9)
        ax.tick_params(axis="x", labelsize=7)
    fig.suptitle("Per-target values: mean ± std (thick), min–max (thin)", fontsize=10)
    return fig


# --- output --------------------------------------------------------------------------------------------------

def _json_ready(frame: pd.DataFrame) -> pd.DataFrame:
    """NaN → None so that the logged JSON table is valid JSON."""
    return frame.astype(object).where(frame.notna(), None)


def write(comparison: Comparison, out_dir: Path) -> list[Path]:
    out_dir = Path(out_dir)
    (out_dir / "figures").mkdir(parents=True, exist_ok=True)
    written = []
    for name, frame, index in (("comparison", comparison.table, True), ("per_target_top1", comparison.top1, False),
                               ("per_target_summary", comparison.summary, False)):
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


def log(client, run_id: str, comparison: Comparison) -> None:
    """Log the comparison under ``comparison/`` of ``run_id`` (tables, CSV, markdown, figures, tags)."""
    base = ARTIFACT_DIR
    client.log_table(run_id, _json_ready(comparison.table.reset_index()), f"{base}/comparison.json")
    client.log_table(run_id, _json_ready(comparison.top1), f"{base}/per_target_top1.json")
    client.log_table(run_id, _json_ready(comparison.summary), f"{base}/per_target_summary.json")
    client.log_text(run_id, comparison.table.to_csv(), f"{base}/comparison.csv")
    client.log_text(run_id, comparison.top1.to_csv(index=False), f"{base}/per_target_top1.csv")
    client.log_text(run_id, comparison.summary.to_csv(index=False), f"{base}/per_target_summary.csv")
    client.log_text(run_id, comparison.markdown() + "\n", f"{base}/comparison.md")
    for name, figure in comparison.figures.items():
        client.log_figure(run_id, figure, f"{base}/figures/{name}.png")
    client.set_tag(run_id, f"{COMPARISON_TAG}.runs", ",".join(comparison.run_ids)[:5000])
    client.set_tag(run_id, f"{COMPARISON_TAG}.encoders", ",".join(comparison.labels)[:5000])
    for metric in comparison.metrics:
        best = [label for label in comparison.labels if comparison.table.at[label, f"{metric}_vs_best"] == "best"]
        client.set_tag(run_id, f"{COMPARISON_TAG}.best.{metric}", ",".join(best)[:5000])
    if comparison.warnings:
        client.set_tag(run_id, f"{COMPARISON_TAG}.warnings", " | ".join(comparison.warnings)[:5000])


def default_out_dir(parent_run_id: str | None) -> Path:
    return Path.cwd() / "comparison" / (parent_run_id or time.strftime("%Y%m%d-%H%M%S"))


@dataclass
class Outcome:
    comparison: Comparison
    selection: Selection
    logged_to: list[str]
    written: list[Path]
    out_dir: Path


def compare(parent: str | None = None, experiment: str | None = None, run_ids: list[str] | None = None,
            metrics: list[str] | None = None, out_dir: Path | None = None, log_run_id: str | None = None,
            new_run_experiment: str | None = None) -> Outcome:
    """Select runs, build the comparison, write it to ``out_dir`` and log it to MLflow.

    Logged to ``log_run_id`` when given (the suite passes its parent), else to the ``parent`` run, else to a new
    run tagged ``musicbench.comparison=true`` (in the compared runs' experiment unless ``new_run_experiment``).
    Under ``mlflow run`` (``MLFLOW_RUN_ID`` set) the run MLflow started is the new run / also gets the comparison.
    """
    client = _client()
    selection = select_runs(client, parent=parent, experiment=experiment, run_ids=run_ids)
    comparison = build(client, selection.runs, metrics)
    try:
        out = Path(out_dir) if out_dir else default_out_dir(log_run_id or selection.parent_run_id)
        written = write(comparison, out)
        targets = [r for r in (log_run_id or selection.parent_run_id,) if r]
        for run_id in targets:
            log(client, run_id, comparison)
        mlflow_run = os.environ.get("MLFLOW_RUN_ID")
        if not targets or (mlflow_run and mlflow_run not in targets):
            from . import tracking

            name = new_run_experiment or client.get_experiment(selection.experiment_id).name
            with tracking.started_run(name, "comparison", tags={COMPARISON_TAG: "true"}) as run:
                log(client, run.info.run_id, comparison)
            targets.append(run.info.run_id)
    finally:
        comparison.close()
    return Outcome(comparison, selection, targets, written, out)
