"""A comparison table (``compare.build``'s, or a group's) as report tables: values with their CIs and marks, and the
paired differences to the best. The texts are ``compare``'s own (``compare_table.diff_cell``, the ★/≈ marks)."""

from __future__ import annotations

import pandas as pd

from .document import Cell, Table, number

MARKS = {"best": " ★", "tied": " ≈"}
NOTE = (
    "value [bootstrap 95% CI over targets]; ★ best; ≈ tied with the best: the paired 95% bootstrap CI of the "
    "per-target difference includes 0 (hit rates: McNemar's exact p ≥ 0.05); no mark: below the best, a difference "
    "the paired test supports."
)
DIFF_NOTE = (
    "encoder − best: mean paired difference over the targets both scored [paired bootstrap 95% CI, 10,000 resamples "
    "of the targets, seed 0]; p: McNemar's exact test (hit rates); ★ the best itself."
)


def value_cell(table: pd.DataFrame, label, metric: str) -> Cell:
    value = table.at[label, metric]
    if pd.isna(value):
        return Cell("–")
    text = number(value)
    low, high = table.get(f"{metric}_ci_low"), table.get(f"{metric}_ci_high")
    if low is not None and pd.notna(low[label]):
        text += f" [{number(low[label])}, {number(high[label])}]"
    verdict = table.at[label, f"{metric}_vs_best"] if f"{metric}_vs_best" in table else ""
    return Cell(text + MARKS.get(verdict, ""), float(value))


def comparison_block(table: pd.DataFrame, metrics: list[str], table_id: str, caption: str = "") -> Table:
    """Encoders as rows, metrics as columns, each cell ``value [CI] mark`` (its exact value kept)."""
    rows = [[Cell(str(label))] + [value_cell(table, label, m) for m in metrics] for label in table.index]
    return Table(["encoder", *metrics], rows, caption=caption, note=NOTE, id=table_id, sortable=True)


def differences_block(table: pd.DataFrame, metrics: list[str], table_id: str) -> Table | None:
    """Per encoder and metric, the paired difference to the best (None when no metric has one)."""
    from ..compare_table import diff_cell

    paired = [m for m in metrics if f"{m}_diff" in table]
    if not paired or len(table.index) < 2:
        return None
    rows = []
    for label in table.index:
        row = [Cell(str(label))]
        for metric in paired:
            value = table.at[label, f"{metric}_diff"]
            text = diff_cell(table, label, metric)
            row.append(Cell(text, float(value) if pd.notna(value) and text != "★" else None))
        rows.append(row)
    caption = "Difference to the best"
    return Table(["encoder", *paired], rows, caption=caption, note=DIFF_NOTE, id=table_id, sortable=True)
