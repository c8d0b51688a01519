"""IR metrics grouped by each query's label (a robustness scenario's deformation), from a run's per-target rows.

For every label ``d``: ``map.d``, ``mrr.d``, ``hit_rate_at_1.d``, ``recall_at_<k>.d`` — the means of the per-query
``average_precision``, ``reciprocal_rank``, ``hit_rate_at_1``, ``recall_at_<k>`` over that label's queries, exactly
as the overall ``map`` … are over all of them — each with ``<name>_ci_low`` / ``<name>_ci_high``, the 95 % percentile
bootstrap over those queries (``metrics.ir.bootstrap_ci``: 1000 resamples, seed 0, as the overall intervals), and
``n_queries.d``. The table (one row per label, in the scenario's order) is logged as ``tables/per_deformation``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

#: (logged name, per-query column); ``{k}`` is the run's k
GROUPED = (
    ("hit_rate_at_1", "hit_rate_at_1"),
    ("map", "average_precision"),
    ("mrr", "reciprocal_rank"),
    ("recall_at_{k}", "recall_at_{k}"),
)


@dataclass
class Grouped:
    label_name: str
    metrics: dict[str, float]  # name.label (+ _ci_low/_ci_high), n_queries.label
    table: pd.DataFrame  # one row per label
    per_target: pd.DataFrame  # the run's per-target rows with the label column

    @property
    def table_name(self) -> str:
        return f"tables/per_{self.label_name}"

    @property
    def figure_name(self) -> str:
        return f"figures/per_{self.label_name}.png"


def per_label(
    per_target: pd.DataFrame,
    labels: dict[str, str],
    order: Sequence[str] = (),
    k: int = 5,
    label_name: str = "deformation",
) -> Grouped:
    """Group ``per_target`` (one row per query, ``target`` + the per-query IR columns) by ``labels[target]``."""
    from metrics.ir import bootstrap_ci

    frame = per_target.copy()
    frame.insert(1, label_name, frame["target"].map(labels))
    present = list(dict.fromkeys(frame[label_name].dropna()))
    ordered = [label for label in order if label in present] + [label for label in present if label not in order]
    metrics: dict[str, float] = {}
    rows = []
    for label in ordered:
        part = frame[frame[label_name] == label]
        row: dict = {label_name: label, "n_queries": 0}
        for name, column in GROUPED:
            name, column = name.format(k=k), column.format(k=k)
            if column not in part:
                continue
            values = pd.to_numeric(part[column], errors="coerce").to_numpy(dtype=np.float64)
            values = values[np.isfinite(values)]
            if not values.size:
                continue
            low, high = bootstrap_ci(values)
            mean = float(values.mean())
            row.update({name: mean, f"{name}_ci_low": low, f"{name}_ci_high": high})
            row["n_queries"] = max(row["n_queries"], int(values.size))
            metrics.update({f"{name}.{label}": mean, f"{name}.{label}_ci_low": low, f"{name}.{label}_ci_high": high})
        metrics[f"n_queries.{label}"] = row["n_queries"]
        rows.append(row)
    columns = [label_name, "n_queries"] + [
        c
        for name, _ in GROUPED
        for c in (name.format(k=k), f"{name.format(k=k)}_ci_low", f"{name.format(k=k)}_ci_high")
    ]
    table = pd.DataFrame(rows, columns=columns)
    return Grouped(label_name, metrics, table, frame)


# --- reading scenario runs back (compare) ------------------------------------------------------------------------


def label_matrix(runs: list, labels: list[str], metric: str = "hit_rate_at_1") -> pd.DataFrame | None:
    """encoders × deformations of ``metric.<d>`` from runs' logged metrics (columns in the runs' ``deformations``
    param order), with ``_ci_low`` / ``_ci_high`` frames folded into a long table by ``label_table``; None when
    no run logged any."""
    order: list[str] = []
    for run in runs:
        for name in (run.data.params.get("deformations") or "").split(","):
            if name and name not in order:
                order.append(name)
    from ..measures import plain_metrics  # logged as robustness/hit_rate_at_1.<d> (before the sections: without)

    logged = [plain_metrics(run.data.metrics) for run in runs]
    prefix = f"{metric}."
    found = [
        name[len(prefix) :]
        for values in logged
        for name in values
        if name.startswith(prefix) and not name.endswith(("_ci_low", "_ci_high"))
    ]
    if not found:
        return None
    columns = [d for d in order if d in found] + [d for d in dict.fromkeys(found) if d not in order]
    data = [[values.get(f"{prefix}{d}", np.nan) for d in columns] for values in logged]
    return pd.DataFrame(data, index=labels, columns=columns)


def label_table(runs: list, labels: list[str], metric: str = "hit_rate_at_1") -> pd.DataFrame | None:
    """The long form of ``label_matrix``: deformation, encoder, value, CI (one row per deformation × encoder)."""
    matrix = label_matrix(runs, labels, metric)
    if matrix is None:
        return None
    rows = []
    for d in matrix.columns:
        for run, label in zip(runs, labels):
            from ..measures import plain_metrics

            values = plain_metrics(run.data.metrics)
            rows.append(
                {
                    "deformation": d,
                    "encoder": label,
                    metric: values.get(f"{metric}.{d}", np.nan),
                    f"{metric}_ci_low": values.get(f"{metric}.{d}_ci_low", np.nan),
                    f"{metric}_ci_high": values.get(f"{metric}.{d}_ci_high", np.nan),
                }
            )
    return pd.DataFrame(rows)


def markdown(matrix: pd.DataFrame, metric: str = "hit_rate_at_1", digits: int = 3) -> str:
    """deformations as rows, encoders as columns."""
    lines = [f"| deformation | {' | '.join(str(c) for c in matrix.index)} |", "|---|" + "---|" * len(matrix.index)]
    for d in matrix.columns:
        cells = ["–" if pd.isna(v) else f"{v:.{digits}f}" for v in matrix[d]]
        lines.append(f"| {d} | {' | '.join(cells)} |")
    lines.append("")
    lines.append(f"{metric} per deformation (robustness scenario).")
    return "\n".join(lines)
