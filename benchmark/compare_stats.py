"""How each encoder stands against the best one on a metric: the paired test over shared targets, the unpaired CI
check for runs without per-target values, and the per-target summary statistics (see ``compare``'s docstring)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .measures import lower_is_better, ranked_across_encoders


def per_target_column(metric: str) -> str | None:
    """The per_target table column whose mean is ``metric`` (``map`` → ``average_precision``), if any."""
    from metrics.ir import per_query_column

    if metric.endswith("_top1_mean"):
        return metric[: -len("_mean")]
    try:
        return per_query_column(metric)
    except KeyError:
        return None


def best_encoder(table: pd.DataFrame, metric: str):
    values = table[metric]
    if values.notna().sum() == 0 or not ranked_across_encoders(metric):
        return None
    return values.idxmin() if lower_is_better(metric) else values.idxmax()


def paired_vs_best(table: pd.DataFrame, per_target: pd.DataFrame, metric: str) -> pd.DataFrame | None:
    """Per encoder, the paired comparison with the best on ``metric`` over the targets both scored: columns
    ``<m>_vs_best``, ``<m>_test``, ``<m>_diff``, ``<m>_diff_ci_low``, ``<m>_diff_ci_high``, ``<m>_n_paired`` and,
    for a hit rate, ``<m>_mcnemar_p``. None when some run has no per-target column for it (or no best exists)."""
    from .stats import CONFIDENCE, mcnemar_exact, paired_bootstrap

    column = per_target_column(metric)
    best_label = best_encoder(table, metric)
    if best_label is None or column is None or column not in per_target:
        return None
    by_encoder = {
        label: pd.to_numeric(rows.set_index("target")[column], errors="coerce")
        for label, rows in per_target.groupby("encoder", sort=False)
    }
    if any(label not in by_encoder or by_encoder[label].notna().sum() == 0 for label in table.index):
        return None
    sign = -1.0 if lower_is_better(metric) else 1.0
    best = by_encoder[best_label]
    out = pd.DataFrame(index=table.index)
    out[f"{metric}_vs_best"] = ""
    out[f"{metric}_test"] = "paired bootstrap"
    for label in table.index:
        if pd.isna(table.at[label, metric]):
            continue
        if table.at[label, metric] == table.at[best_label, metric]:
            out.at[label, f"{metric}_vs_best"] = "best"
            if label == best_label:
                continue
        own = by_encoder[label]
        shared = own.index.intersection(best.index)
        try:
            diff = paired_bootstrap(own[shared].to_numpy(), best[shared].to_numpy())
        except ValueError:
            out.at[label, f"{metric}_vs_best"] = "no pairs"
            continue
        out.at[label, f"{metric}_diff"] = diff.mean
        out.at[label, f"{metric}_diff_ci_low"] = diff.low
        out.at[label, f"{metric}_diff_ci_high"] = diff.high
        out.at[label, f"{metric}_n_paired"] = diff.n
        # encoder − best, in "better" units: > 0 better than the best, < 0 worse
        low, high = sorted((sign * diff.low, sign * diff.high))
        if metric.startswith("hit_rate_at_"):  # paired 0/1 outcomes: McNemar's exact test decides
            p_value = mcnemar_exact(own[shared].to_numpy(), best[shared].to_numpy()).p_value
            out.at[label, f"{metric}_mcnemar_p"] = p_value
            out.at[label, f"{metric}_test"] = "McNemar exact (paired)"
            low, high = (sign * diff.mean,) * 2 if p_value < 1 - CONFIDENCE else (-1.0, 1.0)
        if out.at[label, f"{metric}_vs_best"] != "best":
            out.at[label, f"{metric}_vs_best"] = "below" if high < 0 else "above" if low > 0 else "tied"
    return out


def unpaired_vs_best(table: pd.DataFrame, metric: str) -> pd.Series:
    """Per encoder, "best", "tied" (the two runs' own CIs overlap), "below" or "no CI": for runs without per-target
    values."""
    values = table[metric]
    out = pd.Series("", index=table.index, dtype=object)
    best_label = best_encoder(table, metric)
    if best_label is None:
        return out
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


def summary_stats(per_target: pd.DataFrame, labels: list[str], metrics: list[str]) -> pd.DataFrame:
    """mean with its percentile-bootstrap 95% CI (``metrics.ir.bootstrap_ci``: 1,000 resamples of the targets, seed 0;
    the runs' own ``<metric>_ci_low/_high`` for the mean metrics), std (ddof 1), min, max and n over targets of each
    metric's per-target values, per encoder."""
    from metrics.ir import bootstrap_ci

    rows = []
    for metric in metrics:
        column = per_target_column(metric)
        if column is None or column not in per_target:
            continue
        for label in labels:
            values = pd.to_numeric(per_target.loc[per_target["encoder"] == label, column], errors="coerce").dropna()
            low, high = bootstrap_ci(values.to_numpy(dtype=np.float64)) if len(values) else (np.nan, np.nan)
            rows.append(
                {
                    "encoder": label,
                    "metric": metric,
                    "column": column,
                    "n": int(len(values)),
                    "mean": float(values.mean()) if len(values) else np.nan,
                    "ci_low": float(low),
                    "ci_high": float(high),
                    "std": float(values.std(ddof=1)) if len(values) > 1 else np.nan,
                    "min": float(values.min()) if len(values) else np.nan,
                    "max": float(values.max()) if len(values) else np.nan,
                }
            )
    columns = ["encoder", "metric", "column", "n", "mean", "ci_low", "ci_high", "std", "min", "max"]
    return pd.DataFrame(rows, columns=columns)
