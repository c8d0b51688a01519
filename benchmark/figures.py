"""Every figure musicbench draws.

One run: the targets × references similarity heatmap and per-target top-1 similarity bars (``tracking.log_result``).
A comparison of runs: the report's three figures, per-target top-1 similarity grouped by encoder, the encoders ×
metrics heatmap and the per-target summary (``compare.build``).
"""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import math  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .measures import lower_is_better  # noqa: E402

HEATMAP_MAX_REFS = 80  # beyond this, only references that appear in some top-k are drawn


def _short(name: str, width: int = 28) -> str:
    return name if len(name) <= width else "…" + name[-(width - 1):]


def similarity_heatmap(similarity: np.ndarray, target_keys: list[str], ref_keys: list[str], topk: pd.DataFrame,
                       encoder: str, relevance: dict[str, dict[str, float]] | None = None) -> plt.Figure:
    """Cosine similarity of every target (rows) to every reference (columns).

    White dots mark each target's top-1 reference; black rings mark ground-truth relevant references.
    """
    columns = list(range(len(ref_keys)))
    if len(ref_keys) > HEATMAP_MAX_REFS:
        shown = set(topk["reference"])
        columns = [i for i, k in enumerate(ref_keys) if k in shown][:HEATMAP_MAX_REFS]
    data = similarity[:, columns]
    width = min(4 + 0.22 * len(columns), 40)
    height = min(2.5 + 0.3 * len(target_keys), 40)
    fig, ax = plt.subplots(figsize=(width, height), constrained_layout=True)
    image = ax.imshow(data, aspect="auto", cmap="viridis")
    fig.colorbar(image, ax=ax, label="cosine similarity")
    ax.set_yticks(range(len(target_keys)), [_short(k) for k in target_keys], fontsize=7)
    ax.set_xticks(range(len(columns)), [_short(ref_keys[i]) for i in columns], rotation=90, fontsize=6)
    position = {ref_keys[i]: c for c, i in enumerate(columns)}
    row = {k: r for r, k in enumerate(target_keys)}
    top1 = topk[topk["rank"] == 1]
    xs = [position[r] for r in top1["reference"] if r in position]
    ys = [row[t] for t, r in zip(top1["target"], top1["reference"]) if r in position]
    ax.scatter(xs, ys, s=14, c="white", label="top-1")
    if relevance:
        pairs = [(row[t], position[r]) for t, refs in relevance.items() if t in row for r in refs if r in position]
        ax.scatter([x for _, x in pairs], [y for y, _ in pairs], s=60, facecolors="none", edgecolors="black",
                   label="relevant (ground truth)")
    ax.legend(loc="upper right", fontsize=7, framealpha=0.6)
    ax.set_title(f"{encoder}: target × reference cosine similarity")
    ax.set_xlabel("reference")
    ax.set_ylabel("target")
    return fig


def top1_bars(per_target: pd.DataFrame, encoder: str) -> plt.Figure:
    """Each target's top-1 retrieval similarity; bars of correct top-1 hits (when known) are highlighted."""
    fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(per_target) + 2), 4.5), constrained_layout=True)
    colors = "tab:blue"
    if "hit_rate_at_1" in per_target:
        colors = ["tab:green" if hit else "tab:gray" for hit in per_target["hit_rate_at_1"].fillna(0) > 0]
    ax.bar(range(len(per_target)), per_target["sim_top1"], color=colors)
    ax.set_xticks(range(len(per_target)), [_short(t, 24) for t in per_target["target"]], rotation=70,
                  ha="right", fontsize=7)
    ax.set_ylabel("top-1 cosine similarity")
    low = float(np.nanmin(per_target["sim_top1"])) if len(per_target) else 0.0
    bottom = min(0.0, low) if low < 0.5 else low - 0.05  # zoom in when every similarity is high
    ax.set_ylim(bottom, 1.0)
    title = f"{encoder}: top-1 retrieval similarity per target"
    if "hit_rate_at_1" in per_target:
        title += " (green = relevant)"
    ax.set_title(title)
    return fig


# --- a comparison of runs -------------------------------------------------------------------------------------

def grouped_top1_bars(per_target: pd.DataFrame, labels: list[str]):
    """(a) Each target's top-1 similarity, one bar per encoder; hatched bars are wrong top-1 hits (when known)."""
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
    ax.set_xticks(x, [_short(t, 24) for t in targets], rotation=70, ha="right", fontsize=7)
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
    ax.set_yticks(range(len(table)), [_short(str(i), 24) for i in table.index], fontsize=8)
    ax.set_title("Encoders × metrics (raw values annotated)")
    return fig


def summary_figure(summary: pd.DataFrame, labels: list[str]):
    """(c) Per metric: each encoder's mean ± std over targets (thick) and min–max range (thin), mean annotated."""
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
