"""Per encoder, the per-track table of the report: each target's top retrieved reference and its scores, from the run's
top-k table (``tables/topk.json``, rank 1), plus whether it is relevant when the run had ground truth."""

from __future__ import annotations

import pandas as pd

from .document import Cell, Image, Section, Table, Text, cell

#: (column shown, top-k table column, the pair metric that computes it)
COLUMNS = (
    ("target track", "target", None),
    ("top retrieved", "reference", None),
    ("cosine similarity", "similarity", None),
    ("CLAP", "clap_sim", "clap_sim"),
    ("melody acc.", "melody_acc", "melody"),
    ("CE", "aes_ce_ref", "aesthetics"),
    ("CU", "aes_cu_ref", "aesthetics"),
    ("PC", "aes_pc_ref", "aesthetics"),
    ("PQ", "aes_pq_ref", "aesthetics"),
)
NOTE = (
    "cosine similarity: in the encoder's own embedding space (compare within an encoder only); CLAP: cosine of the "
    "two tracks' CLAP embeddings; melody acc.: fraction of frames whose dominant pitch class matches; CE, CU, PC, PQ: "
    "Audiobox Aesthetics (content enjoyment, content usefulness, production complexity, production quality, 1–10) of "
    "the top retrieved track. Click a column to sort."
)
FIGURE_CAPTIONS = {
    "figures/top1_similarity.png": "top-1 retrieval similarity per target",
    "figures/similarity_heatmap.png": "target × reference cosine similarity (dots: top-1; rings: relevant)",
}


def _why_missing(run, metric: str) -> str:
    reason = run.data.tags.get(f"skipped.{metric}", "")
    return reason.split(". ")[0].rstrip(".") if reason else "not computed in this run"


def track_table(topk: pd.DataFrame, run, label: str) -> tuple[Table, list[str]]:
    """The table and, for each column the run did not compute, a line saying why."""
    top1 = topk[topk["rank"] == 1] if "rank" in topk else topk.iloc[0:0]
    with_truth = "relevant" in top1 and str(run.data.params.get("ground_truth_given", "True")) != "False"
    columns = [shown for shown, _, _ in COLUMNS] + (["relevant"] if with_truth else [])
    rows = []
    for _, row in top1.iterrows():
        cells = [Cell(str(row["target"])), Cell(str(row["reference"]))]
        for _, column, _ in COLUMNS[2:]:
            cells.append(cell(row[column]) if column in top1 else Cell("–"))
        if with_truth:
            relevant = pd.to_numeric(pd.Series([row["relevant"]]), errors="coerce").iloc[0]
            cells.append(Cell("–" if pd.isna(relevant) else "yes" if relevant > 0 else "no", relevant))
        rows.append(cells)
    missing: dict[str, list[str]] = {}
    for shown, column, metric in COLUMNS[3:]:
        if column not in top1:
            missing.setdefault(metric, []).append(shown)
    lines = [f"{', '.join(names)}: {_why_missing(run, metric)}." for metric, names in missing.items()]
    caption = f"{label}: top-1 per target"
    return Table(columns, rows, caption=caption, note=NOTE, id=f"tracks-{_slug(label)}", sortable=True), lines


def section(data) -> Section:
    out = Section("Per-track results", id="tracks")
    out.blocks.append(Text("Per encoder: each target track, its top retrieved reference and the scores of that pair."))
    for run, label in zip(data.runs, data.labels):
        sub = Section(f"{label}", level=3, id=f"tracks-{_slug(label)}-section")
        topk = data.topk.get(label, pd.DataFrame())
        if topk.empty:
            sub.blocks.append(Text(f"Run {run.info.run_id} has no readable top-k table (tables/topk.json)."))
        else:
            table, lines = track_table(topk, run, label)
            sub.blocks.append(table)
            sub.blocks += [Text("Not shown: " + line) for line in lines]
        for name, png in data.run_figures.get(label, {}).items():
            sub.blocks.append(Image(png, f"{label}: {name}", f"{label}: {FIGURE_CAPTIONS.get(name, name)}"))
        out.subsections.append(sub)
    return out


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in str(text).lower()).strip("-") or "encoder"
