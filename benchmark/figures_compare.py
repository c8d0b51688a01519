"""Figures drawn from tables of several runs or groups: a comparison of runs (``compare.build``: per-target top-1
similarity grouped by encoder, the encoders × metrics heatmap, the per-target summary) and a robustness scenario's
metrics by deformation (``tracking_result``: one run's bars; a comparison's encoders × deformations heatmap).
The layout helpers and one run's own figures are in ``figures``."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from .figures import MAX_BARS, MAX_HEIGHT, MAX_WIDTH, blank_figure, plain_text, short_labels, shortened, zero_based_axis
from .measures import lower_is_better

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure


def grouped_top1_bars(per_target: pd.DataFrame, labels: list[str]):
    """(a) Each target's top-1 similarity, one bar per encoder; hatched bars are wrong top-1 hits (when known).
    Above ``MAX_BARS`` targets, each encoder's sorted curve instead; never larger than ``MAX_WIDTH`` inches. Note that
    similarities of different encoders live in different embedding spaces: the figure shows each one's spread."""
    import pandas as pd  # imported by whoever has tables to draw

    targets = list(dict.fromkeys(per_target["target"]))
    values_all = pd.to_numeric(per_target["sim_top1"], errors="coerce").to_numpy(dtype=np.float64)
    know_hits = "hit_rate_at_1" in per_target
    if len(targets) > MAX_BARS:
        fig = blank_figure(10, 4.8, constrained=True)
        ax = fig.subplots()
        for i, label in enumerate(labels):
            rows = per_target[per_target["encoder"] == label]
            values = np.sort(pd.to_numeric(rows["sim_top1"], errors="coerce").dropna().to_numpy())[::-1]
            ax.plot(np.arange(1, len(values) + 1), values, color=f"C{i % 10}", label=plain_text(label), linewidth=1.2)
        ax.set_xlabel(f"target, sorted by its top-1 similarity ({len(targets)} targets)")
        zero_based_axis(ax, values_all, "top-1 cosine similarity", top=1.05)
        ax.legend(fontsize=8, loc="lower left", title="encoder", title_fontsize=8)
        ax.set_title("Top-1 retrieval similarity of every target, sorted, by encoder (each in its own space)")
        return fig
    n = max(len(labels), 1)
    width = 0.8 / n
    fig = blank_figure(min(max(7, 0.35 * len(targets) * n + 3), MAX_WIDTH), 4.8, constrained=True)
    ax = fig.subplots()
    x = np.arange(len(targets))
    for i, label in enumerate(labels):
        rows = per_target[per_target["encoder"] == label].set_index("target")
        values = [float(rows["sim_top1"].get(t, np.nan)) for t in targets]
        bars = ax.bar(x - 0.4 + width * (i + 0.5), values, width, label=plain_text(label), color=f"C{i % 10}")
        if know_hits:
            for bar, target in zip(bars, targets):
                if not rows["hit_rate_at_1"].get(target, 1) > 0:
                    bar.set_hatch("//")
                    bar.set_alpha(0.55)
    ax.set_xticks(x, short_labels(targets, 24), rotation=70, ha="right", fontsize=7)
    zero_based_axis(ax, values_all, "top-1 cosine similarity", top=1.05)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), title="encoder", title_fontsize=8)
    title = "Top-1 retrieval similarity per target, by encoder"
    if know_hits:
        title += " (hatched: top-1 not relevant)"
    ax.set_title(title)
    return fig


def rank_colours(table: pd.DataFrame, metrics: list[str]) -> np.ndarray:
    """Encoders × metrics in [0, 1] by rank within each metric (1 = best, 0 = worst; equal values share a rank);
    NaN for a missing value and for a metric no comparison ranks (``sim_top1_mean``: its own space per encoder)."""
    from .measures import ranked_across_encoders

    raw = table[metrics].astype(float).to_numpy()
    out = np.full_like(raw, np.nan)
    for j, metric in enumerate(metrics):
        column = raw[:, j]
        finite = np.isfinite(column)
        if not finite.any() or not ranked_across_encoders(metric):
            continue
        better = -column if not lower_is_better(metric) else column
        values = np.unique(better[finite])  # ascending: best first
        ranks = np.searchsorted(values, better[finite])
        out[finite, j] = 1.0 - ranks / max(len(values) - 1, 1)
    return out


def metrics_heatmap(table: pd.DataFrame, metrics: list[str]):
    """(b) Encoders × metrics; colour = rank within each metric (1 = best), text = raw value with ★ for the best and
    ≈ for a value tied with it (the comparison's paired test, ``<metric>_vs_best``). A rank, not a min–max scale:
    0.444 against 0.500 with overlapping intervals is not painted as the full colour range, and the ≈ says so."""
    from matplotlib import colormaps

    raw = table[metrics].astype(float).to_numpy()
    norm = rank_colours(table, metrics)
    fig = blank_figure(max(5, 1.2 * len(metrics) + 2.5), max(2.5, 0.6 * len(table) + 1.6), constrained=True)
    ax = fig.subplots()
    cmap = colormaps["viridis"].with_extremes(bad="lightgray")
    image = ax.imshow(np.ma.masked_invalid(norm), cmap=cmap, vmin=0, vmax=1, aspect="auto")
    bar = fig.colorbar(image, ax=ax, label="rank within the metric", ticks=[0, 1])
    bar.ax.set_yticklabels(["worst", "best"])
    for i, label in enumerate(table.index):
        for j, metric in enumerate(metrics):
            text = "–" if not np.isfinite(raw[i, j]) else f"{raw[i, j]:.3f}"
            verdict = table.at[label, f"{metric}_vs_best"] if f"{metric}_vs_best" in table else ""
            text += {"best": " ★", "tied": " ≈"}.get(verdict, "")
            dark = np.isfinite(norm[i, j]) and norm[i, j] < 0.6
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color="white" if dark else "black")
    ax.set_xticks(range(len(metrics)), [plain_text(m) for m in metrics], rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(table)), [shortened(str(i), 24) for i in table.index], fontsize=8)
    ax.set_title("Encoders × metrics: ★ best, ≈ tied with the best (paired 95% test); grey: not ranked")
    return fig


def summary_figure(summary: pd.DataFrame, labels: list[str]):
    """(c) Per metric: each encoder's mean over targets with its bootstrap 95% CI (thick bar; the columns
    ``ci_low``/``ci_high`` of ``summary_stats``) and the min–max range over targets (thin), mean annotated. The
    x-axis starts at 0 (or at the lowest value, when one is negative, said in its label)."""
    metrics = list(dict.fromkeys(summary["metric"])) or ["(no per-target values)"]
    cols = min(3, len(metrics))
    rows = math.ceil(len(metrics) / cols)
    fig = blank_figure(
        min(4.2 * cols, MAX_WIDTH), min(0.45 * len(labels) * rows + 1.6 * rows + 0.6, MAX_HEIGHT), constrained=True
    )
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.ravel()[len(metrics) :]:
        ax.axis("off")
    has_ci = {"ci_low", "ci_high"} <= set(summary.columns)
    for ax, metric in zip(axes.ravel(), metrics):
        part = summary[summary["metric"] == metric].set_index("encoder")
        lows = []
        for y, label in enumerate(labels):
            if label not in part.index or not np.isfinite(part.at[label, "mean"]):
                continue
            row = part.loc[label]
            ax.hlines(y, row["min"], row["max"], color=f"C{y % 10}", linewidth=1)
            low, high = (row["ci_low"], row["ci_high"]) if has_ci else (row["mean"], row["mean"])
            if np.isfinite(low) and np.isfinite(high):
                ax.hlines(y, low, high, color=f"C{y % 10}", linewidth=5, alpha=0.6)
            ax.plot([row["mean"]], [y], "o", color="black", markersize=4)
            interval = f" [{low:.3f}, {high:.3f}]" if has_ci and np.isfinite(low) else ""
            ax.annotate(
                f"{row['mean']:.3f}{interval}",
                (row["mean"], y),
                textcoords="offset points",
                xytext=(0, 6),
                ha="center",
                fontsize=7,
            )
            lows.append(float(row["min"]))
        finite = [v for v in lows if np.isfinite(v)]
        if finite and min(finite) < 0:
            ax.set_xlim(left=min(finite) * 1.05)
            ax.set_xlabel(f"axis from {min(finite) * 1.05:.2f}", fontsize=7)
        else:
            ax.set_xlim(left=0)
        ax.set_yticks(range(len(labels)), [shortened(label, 16) for label in labels], fontsize=8)
        ax.set_ylim(-0.7, len(labels) - 0.3)
        ax.invert_yaxis()
        column = part["column"].iloc[0] if len(part) else ""
        ax.set_title(plain_text(f"{metric} (per-target {column})"), fontsize=9)
        ax.tick_params(axis="x", labelsize=7)
    fig.suptitle("Per-target values: mean with its bootstrap 95% CI (thick), min–max over targets (thin)", fontsize=10)
    return fig


# --- scenarios: metrics by each query's label (a robustness scenario's deformation) --------------------------


def per_label_bars(table: pd.DataFrame, label_name: str, encoder: str) -> Figure:
    """One run: hit@1 and MAP per label (deformation), one group of bars per label in the scenario's order, with
    their bootstrap 95 % intervals as whiskers and hit@1 annotated."""
    labels = [str(v) for v in table[label_name]]
    metrics = [m for m in ("hit_rate_at_1", "map") if m in table]
    n = max(len(labels), 1)
    fig = blank_figure(min(max(6.0, 0.62 * n + 2.5), MAX_WIDTH), 4.4, constrained=True)
    ax = fig.subplots()
    x = np.arange(len(labels))
    width = 0.8 / max(len(metrics), 1)
    for i, metric in enumerate(metrics):
        values = table[metric].astype(float).to_numpy()
        low = table.get(f"{metric}_ci_low", table[metric]).astype(float).to_numpy()
        high = table.get(f"{metric}_ci_high", table[metric]).astype(float).to_numpy()
        errors = np.vstack([np.clip(values - low, 0, None), np.clip(high - values, 0, None)])
        offset = -0.4 + width * (i + 0.5)
        ax.bar(x + offset, values, width, yerr=errors, capsize=2, label=metric, color=f"C{i}")
        if metric == "hit_rate_at_1":
            for xi, value in zip(x + offset, values):
                if np.isfinite(value):
                    ax.annotate(
                        f"{value:.2f}", (xi, value), textcoords="offset points", xytext=(0, 2), ha="center", fontsize=6
                    )
    ax.set_xticks(x, [plain_text(label) for label in labels], rotation=45, ha="right", fontsize=8)
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("value (95% bootstrap CI)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title(f"{plain_text(encoder)}: retrieval by {plain_text(label_name)}")
    return fig


def label_heatmap(matrix: pd.DataFrame, metric: str = "hit_rate_at_1", label_name: str = "deformation") -> Figure:
    """A comparison: encoders × labels (deformations) of ``metric``, colour 0–1, raw values annotated."""
    from matplotlib import colormaps

    raw = matrix.astype(float).to_numpy()
    fig = blank_figure(
        min(max(5.0, 0.75 * raw.shape[1] + 3.0), MAX_WIDTH),
        min(max(2.5, 0.55 * raw.shape[0] + 1.8), MAX_HEIGHT),
        constrained=True,
    )
    ax = fig.subplots()
    cmap = colormaps["viridis"].with_extremes(bad="lightgray")
    image = ax.imshow(np.ma.masked_invalid(raw), cmap=cmap, vmin=0, vmax=1, aspect="auto")
    fig.colorbar(image, ax=ax, label=plain_text(metric))
    for i in range(raw.shape[0]):
        for j in range(raw.shape[1]):
            value = raw[i, j]
            text = "–" if not np.isfinite(value) else f"{value:.2f}"
            dark = np.isfinite(value) and value < 0.6
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color="white" if dark else "black")
    ax.set_xticks(range(raw.shape[1]), [plain_text(c) for c in matrix.columns], rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(raw.shape[0]), [shortened(str(i), 24) for i in matrix.index], fontsize=8)
    ax.set_title(f"Encoders × {plain_text(label_name)}s: {plain_text(metric)} (raw values annotated)")
    return fig
