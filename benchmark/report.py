"""Figures of one run: the targets × references similarity heatmap and per-target top-1 similarity bars."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

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
