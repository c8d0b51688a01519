"""The comparison as markdown: the value table with CIs and ★/≈ marks, and the table of paired differences."""

from __future__ import annotations

import pandas as pd


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
    unpaired = [m for m in metrics if str(table.get(f"{m}_test", pd.Series([""])).iloc[0]).startswith("CI overlap")]
    lines.append(
        "value [bootstrap 95% CI over targets]; ★ best; ≈ tied with the best: the paired 95% bootstrap CI of the "
        "per-target difference includes 0 (hit rates: McNemar's exact p ≥ 0.05)"
        + (f" (for {', '.join(unpaired)}: the two CIs overlap — unpaired, no per-target values)" if unpaired else "")
        + "."
    )
    paired = [m for m in metrics if f"{m}_diff" in table]
    if paired and len(table.index) > 1:
        lines += ["", "Difference to the best (encoder − best, paired over the targets both scored):", ""]
        lines += ["| encoder | " + " | ".join(paired) + " |", "|---|" + "---|" * len(paired)]
        for label in table.index:
            lines.append(f"| {label} | " + " | ".join(diff_cell(table, label, m, digits) for m in paired) + " |")
        lines.append("")
        lines.append(
            "mean difference [paired bootstrap 95% CI, 10,000 resamples of the targets, seed 0]; "
            "p: McNemar's exact test (hit rates); ★ the best itself."
        )
    return "\n".join(lines)


def diff_cell(table: pd.DataFrame, label, metric: str, digits: int = 3) -> str:
    if table.at[label, f"{metric}_vs_best"] == "best":
        return "★"
    value = table.at[label, f"{metric}_diff"]
    if pd.isna(value):
        return "–"
    text = (
        f"{value:+.{digits}f} [{table.at[label, f'{metric}_diff_ci_low']:+.{digits}f}, "
        f"{table.at[label, f'{metric}_diff_ci_high']:+.{digits}f}]"
    )
    p_value = table.get(f"{metric}_mcnemar_p")
    if p_value is not None and pd.notna(p_value[label]):
        text += f" p={p_value[label]:.3f}"
    return text
