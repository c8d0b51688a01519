"""The figures of one run, and the layout helpers every figure uses.

One run: the targets × references similarity heatmap, per-target top-1 similarity bars and their distribution
(``tracking_result``). Figures drawn from tables of several runs (a comparison) or of groups (a scenario's
deformations) are in ``figures_compare``.

Figures are ``matplotlib.figure.Figure`` objects drawn by the Agg canvas: no pyplot, so no global figure registry
to close and no change to the backend of a notebook that imports this module; matplotlib is imported on first
use. A run's two figures are laid out by measuring their widest labels once (``_Layout``) instead of with the
constrained-layout engine, which measures every label again and lays the figure out again when it is saved
(measured: drawing and saving both take a third less time).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Union

import numpy as np

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

#: what drawing a run's figures imports (pandas is not needed: ``table_columns``), for a process that will draw them to
#: import ahead of time (``parallel.prestart_helper``; ``tracking_result`` draws them there)
MODULES = ("benchmark.figures", "matplotlib.figure", "matplotlib.backends.backend_agg", "matplotlib.font_manager")
#: a table: a ``pandas.DataFrame``, or a mapping of column name → sequence of values (``table_columns``)
Table = Union["pd.DataFrame", Mapping[str, Sequence]]
HEATMAP_MAX_REFS = 80  # beyond this, only references that appear in some top-k are drawn
_EDGE = 0.08  # inches of white space around a figure laid out by _Layout
_TICK = (3.5 + 3.5) / 72  # inches from an axis to its tick labels (major tick length + pad)
_LABEL_PAD = 4 / 72  # between tick labels and the axis label
_TITLE_PAD = 6 / 72  # between the axes and its title


def blank_figure(width: float, height: float, constrained: bool = False) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained" if constrained else None)
    FigureCanvasAgg(figure)
    return figure


class _Layout:
    """Sizes of text on a figure, in inches, measured with the Agg renderer's font metrics."""

    def __init__(self, figure: Figure):
        from matplotlib.font_manager import FontProperties

        self.figure, self._font = figure, FontProperties
        self.renderer = figure.canvas.get_renderer()

    def size(self, text: str, fontsize: float) -> tuple[float, float]:
        """(width, height) of one line of ``text``."""
        width, height, _ = self.renderer.get_text_width_height_descent(text, self._font(size=fontsize), ismath=False)
        return width / self.figure.dpi, height / self.figure.dpi

    def widest(self, texts, fontsize: float) -> float:
        return max((self.size(t, fontsize)[0] for t in texts), default=0.0)

    def height(self, fontsize: float) -> float:
        return self.size("Tg", fontsize)[1]

    def place(self, left: float, bottom: float, right: float, top: float, title: str):
        """Axes filling the figure less these margins (inches), with ``title`` above them; the figure grows when
        less than an inch (or the title's width) would be left for the axes."""
        width, height = self.figure.get_size_inches()
        width = max(width, left + right + max(1.0, self.size(title, 12)[0]))
        height = max(height, bottom + top + 1.0)
        self.figure.set_size_inches(width, height)
        return self.figure.add_axes(
            (left / width, bottom / height, 1 - (left + right) / width, 1 - (bottom + top) / height)
        )


def table_columns(table: Table, names: Sequence[str]) -> dict[str, list]:
    """The columns ``names`` of ``table`` (those it has) as lists: what a run's figures read, picklable and light
    (a process drawing them need not import pandas)."""
    return {name: list(table[name]) for name in names if name in table}


def plain_text(text: object) -> str:
    """``text`` shown literally: matplotlib reads a pair of ``$`` as math-text (``$$.wav`` and ``a$^$b.wav`` are
    file names it would refuse or garble); an escaped ``\\$`` is drawn as ``$``."""
    return str(text).replace("$", r"\$")


def shortened(name: str, width: int = 28) -> str:
    """A label (a file name, an encoder) at most ``width`` characters, shown literally (``_text``): its start (a
    piece's name comes first) and its last characters (a version's suffix), the middle cut with "…"."""
    name = str(name)
    if len(name) > width:
        tail = max(4, (width - 1) // 3)
        name = name[: width - 1 - tail] + "…" + name[-tail:]
    return plain_text(name)


def short_labels(names: Sequence[str], width: int = 28) -> list[str]:
    """Labels for file keys that tell them apart: the folder part they all share dropped (a relative path), the
    extension they all share dropped, then ``_short``; where two still read the same, the longer form is kept."""
    names = [str(n) for n in names]
    parts = [n.split("/") for n in names]
    common = 0
    if len(names) > 1:
        while all(len(p) > common + 1 for p in parts) and len({p[common] for p in parts}) == 1:
            common += 1
    stripped = ["/".join(p[common:]) for p in parts]
    suffixes = {n.rsplit(".", 1)[1] if "." in n.rsplit("/", 1)[-1] else "" for n in stripped}
    if len(suffixes) == 1 and "" not in suffixes:
        stripped = [n[: -(len(next(iter(suffixes))) + 1)] for n in stripped]
    labels = [shortened(n, width) for n in stripped]
    if len(set(labels)) < len(labels):
        labels = [shortened(n, max(width, 60)) for n in stripped]
    return labels


#: above this many targets a figure shows their distribution, not one bar (or row label) per target
MAX_BARS = 60
#: no figure is larger than this (inches at the figure's dpi: 1,400 × 900 px at 100 dpi)
MAX_WIDTH, MAX_HEIGHT = 14.0, 9.0


def similarity_heatmap(
    similarity: np.ndarray,
    target_keys: list[str],
    ref_keys: list[str],
    topk: Table,
    encoder: str,
    relevance: dict[str, dict[str, float]] | None = None,
) -> Figure:
    """Cosine similarity of every target (rows) to every reference (columns).

    White dots mark each target's top-1 reference; black rings mark ground-truth relevant references.
    ``topk``: the top-k table (its ``target``, ``rank`` and ``reference`` columns).
    """
    topk = table_columns(topk, ("target", "rank", "reference"))
    columns = list(range(len(ref_keys)))
    if len(ref_keys) > HEATMAP_MAX_REFS:
        shown = set(topk["reference"])
        columns = [i for i, k in enumerate(ref_keys) if k in shown][:HEATMAP_MAX_REFS]
    data = similarity[:, columns]
    many_rows = len(target_keys) > MAX_BARS
    y_labels = [] if many_rows else short_labels(target_keys)
    x_labels = short_labels([ref_keys[i] for i in columns])
    title = f"{plain_text(encoder)}: target × reference cosine similarity"
    fig = blank_figure(
        min(4 + 0.22 * len(columns), MAX_WIDTH), min(2.5 + 0.3 * min(len(target_keys), MAX_BARS), MAX_HEIGHT)
    )
    text = _Layout(fig)
    bar_ticks = text.widest(["−0.00", "0.00"], 10)  # colour bar tick labels (two decimals at most)
    gap, bar = 0.2, 0.15  # inches between the heatmap and its colour bar; the bar's width
    bar_labels = _TICK + bar_ticks + _LABEL_PAD + text.height(10)  # right of the colour bar
    ax = text.place(
        left=_EDGE + text.height(10) + _LABEL_PAD + text.widest(y_labels, 7) + _TICK,
        bottom=_EDGE + text.height(10) + _LABEL_PAD + text.widest(x_labels, 6) + _TICK,
        right=_EDGE + bar_labels + bar + gap,
        top=_EDGE + text.height(12) + _TITLE_PAD,
        title=title,
    )
    x0, y0, w, h = ax.get_position().bounds
    fig_width = fig.get_size_inches()[0]
    cax = fig.add_axes((x0 + w + gap / fig_width, y0, bar / fig_width, h))
    image = ax.imshow(data, aspect="auto", cmap="viridis")
    fig.colorbar(image, cax=cax, label="cosine similarity")
    if many_rows:
        ax.set_ylabel(f"target (1–{len(target_keys)}, in file order)")
    else:
        ax.set_yticks(range(len(target_keys)), y_labels, fontsize=7)
    ax.set_xticks(range(len(columns)), x_labels, rotation=90, fontsize=6)
    position = {ref_keys[i]: c for c, i in enumerate(columns)}
    row = {k: r for r, k in enumerate(target_keys)}
    top1 = [(t, r) for t, r, rank in zip(topk["target"], topk["reference"], topk["rank"]) if rank == 1]
    xs = [position[r] for _, r in top1 if r in position]
    ys = [row[t] for t, r in top1 if r in position]
    ax.scatter(xs, ys, s=2 if many_rows else 14, c="white", label="top-1", linewidths=0)
    if relevance:
        pairs = [(row[t], position[r]) for t, refs in relevance.items() if t in row for r in refs if r in position]
        ax.scatter(
            [x for _, x in pairs],
            [y for y, _ in pairs],
            s=60,
            facecolors="none",
            edgecolors="black",
            label="relevant (ground truth)",
        )
    ax.legend(loc="upper right", fontsize=7, framealpha=0.6)
    ax.set_title(title)
    ax.set_xlabel("reference")
    if not many_rows:
        ax.set_ylabel("target")
    return fig


def top1_bars(per_target: Table, encoder: str) -> Figure:
    """Each target's top-1 retrieval similarity; bars of correct top-1 hits (when known) are highlighted. Above
    ``MAX_BARS`` targets, their distribution instead (``top1_distribution``): the image never grows past
    ``MAX_WIDTH`` × ``MAX_HEIGHT``. The y-axis starts at 0 (or at the lowest value, when one is negative, said in the
    axis label). ``per_target``: the per-target table (its ``target``, ``sim_top1`` and, when known,
    ``hit_rate_at_1``)."""
    per_target = table_columns(per_target, ("target", "sim_top1", "hit_rate_at_1"))
    n = len(per_target["target"])
    if n > MAX_BARS:
        return top1_distribution(per_target, encoder)
    labels = short_labels(per_target["target"], 24)
    fig = blank_figure(min(max(6, 0.45 * n + 2), MAX_WIDTH), 4.5)
    text = _Layout(fig)
    sizes = [text.size(label, 7) for label in labels]
    slant = math.radians(70)  # labels rotated 70°, anchored at their right end under their bar
    drop = max((w * math.sin(slant) + h * math.cos(slant) for w, h in sizes), default=0.0)
    y_axis = text.height(10) + _LABEL_PAD + text.widest(["0.00", "−0.00"], 10) + _TICK
    # the first label reaches left of its bar; bar 0 sits 0.6 of n + 0.2 bar steps from the axes' left edge
    first = sizes[0][0] * math.cos(slant) + sizes[0][1] * math.sin(slant) if sizes else 0.0
    width = fig.get_size_inches()[0]
    left = _EDGE + max(y_axis, first - 0.6 * (width - y_axis) / (n + 0.2))
    title = f"{plain_text(encoder)}: top-1 retrieval similarity per target"
    if "hit_rate_at_1" in per_target:
        title += " (green = relevant)"
    ax = text.place(
        left=left, bottom=_EDGE + drop + _TICK, right=_EDGE + 0.1, top=_EDGE + text.height(12) + _TITLE_PAD, title=title
    )
    colors = "tab:blue"
    if "hit_rate_at_1" in per_target:
        colors = ["tab:green" if hit is not None and hit > 0 else "tab:gray" for hit in per_target["hit_rate_at_1"]]
    values = np.asarray(per_target["sim_top1"], dtype=np.float64)
    ax.bar(range(n), values, color=colors)
    ax.set_xlim(-0.6, n - 0.4)
    ax.set_xticks(range(n), labels, rotation=70, ha="right", fontsize=7)
    zero_based_axis(ax, values, "top-1 cosine similarity")
    ax.set_title(title)
    return fig


def zero_based_axis(ax, values: np.ndarray, label: str, top: float = 1.0) -> None:
    """The y-axis from 0 to ``top``; when a value is negative, from the lowest value, said in the axis label."""
    finite = values[np.isfinite(values)]
    low = float(finite.min()) if finite.size else 0.0
    if low < 0:
        ax.set_ylim(low - 0.02, top)
        ax.axhline(0, color="black", linewidth=0.6)
        label += f" (axis from {low - 0.02:.2f})"
    else:
        ax.set_ylim(0, top)
    ax.set_ylabel(label)


def top1_distribution(per_target: Table, encoder: str) -> Figure:
    """Many targets: every target's top-1 similarity sorted (one curve; relevant top-1 hits marked when known) and
    their histogram, in a figure of fixed size."""
    per_target = table_columns(per_target, ("target", "sim_top1", "hit_rate_at_1"))
    values = np.asarray(per_target["sim_top1"], dtype=np.float64)
    order = np.argsort(-values, kind="stable")
    fig = blank_figure(10, 4.5, constrained=True)
    curve, histogram = fig.subplots(1, 2, width_ratios=(2, 1))
    ranks = np.arange(1, len(values) + 1)
    curve.plot(ranks, values[order], color="tab:blue", linewidth=1, label="top-1 similarity")
    if "hit_rate_at_1" in per_target:
        hits = np.asarray([h is not None and h > 0 for h in per_target["hit_rate_at_1"]])[order]
        curve.scatter(ranks[hits], values[order][hits], s=4, color="tab:green", label="relevant top-1", zorder=3)
        curve.legend(fontsize=7, loc="lower left")
    curve.set_xlabel(f"target, sorted by similarity ({len(values)} targets)")
    zero_based_axis(curve, values, "top-1 cosine similarity")
    finite = values[np.isfinite(values)]
    histogram.hist(finite, bins=40, range=(min(0.0, float(finite.min(initial=0.0))), 1.0), color="tab:blue")
    histogram.set_xlabel("top-1 cosine similarity")
    histogram.set_ylabel("targets")
    fig.suptitle(f"{plain_text(encoder)}: top-1 retrieval similarity of {len(values)} targets", fontsize=11)
    return fig


def warm_up() -> None:
    """Draw a tiny run's figures into a temporary folder, discarding them: matplotlib's and pandas' lazy imports,
    fonts and text caches are then ready in a process that will draw a real run's figures later
    (``parallel.prestart_helper``; measured: the first real drawing took twice as long without it)."""
    import tempfile

    keys = ["a.wav", "b.wav"]
    similarity = np.array([[1.0, 0.5], [0.5, 1.0]], dtype=np.float32)
    topk = {"target": keys, "rank": [1, 1], "reference": keys}
    per_target = {"target": keys, "sim_top1": [1.0, 1.0], "hit_rate_at_1": [1.0, np.nan]}
    with tempfile.TemporaryDirectory() as folder:
        save_run_figures(folder, similarity, keys, keys, topk, per_target, "warm-up", {"a.wav": {"a.wav": 1.0}})


#: a run's figures, as artifact names
HEATMAP = "figures/similarity_heatmap.png"
TOP1_BARS = "figures/top1_similarity.png"


def run_figure_names(similarity: np.ndarray | None) -> list[str]:
    """The figures of a run: the heatmap when the similarity matrix is given, and the top-1 bars."""
    return [HEATMAP, TOP1_BARS] if similarity is not None else [TOP1_BARS]


def save_run_figure(
    name: str,
    folder: str,
    similarity: np.ndarray | None,
    target_keys: list[str],
    ref_keys: list[str],
    topk: Table,
    per_target: Table,
    encoder: str,
    relevance: dict[str, dict[str, float]] | None = None,
) -> str:
    """Draw one of a run's figures (``run_figure_names``) and save it as ``folder/name``; raises when it cannot be
    drawn (and leaves no partial file)."""
    from pathlib import Path

    if name == HEATMAP:
        figure = similarity_heatmap(similarity, target_keys, ref_keys, topk, encoder, relevance)
    elif name == TOP1_BARS:
        figure = top1_bars(per_target, encoder)
    else:
        raise ValueError(f"not a run figure: {name}")
    path = Path(folder) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        figure.savefig(path, pil_kwargs={"compress_level": 1})  # a third faster than 6 (large heatmaps: ~1 s)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return name


def save_run_figures(
    folder: str,
    similarity: np.ndarray | None,
    target_keys: list[str],
    ref_keys: list[str],
    topk: Table,
    per_target: Table,
    encoder: str,
    relevance: dict[str, dict[str, float]] | None = None,
) -> list[str]:
    """Draw one run's figures and save them under ``folder`` as ``figures/similarity_heatmap.png`` (when
    ``similarity`` is given) and ``figures/top1_similarity.png``; returns the names of those drawn. A figure that
    cannot be drawn is left out (the caller draws it again with ``save_run_figure`` to see why). Picklable
    arguments only, so it can run in another process."""
    drawn = []
    for name in run_figure_names(similarity):
        try:
            drawn.append(
                save_run_figure(name, folder, similarity, target_keys, ref_keys, topk, per_target, encoder, relevance)
            )
        except Exception:  # noqa: BLE001, S112 - left out; the caller's own attempt records the reason
            continue
    return drawn


def save_figure(figure: Figure, folder: str, name: str) -> str:
    """Save ``figure`` as ``folder/name`` (no partial file on error); returns ``name``."""
    from pathlib import Path

    path = Path(folder) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        figure.savefig(path, dpi=110)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return name
