"""Per-group results: the comparison table again for each group of targets, and where the best encoder changes from
one group to another (a group × encoder interaction).

A target's group is, in this order: the ``group`` column of the ground-truth CSV the runs name (their
``ground_truth`` param), or the top-level subfolder of the targets (``western/a.wav`` → ``western``; a file directly
in the targets folder is in "(top level)"). Robustness-scenario runs have their own grouping (by deformation) and
get no folder groups. Every target is in exactly one group, so the group sizes add up to the whole.

Within a group the table is built as ``compare`` builds the whole one: the mean of each metric's per-target values,
its bootstrap 95% CI (``metrics.ir.bootstrap_ci``) and the paired test against the group's best
(``compare_stats.paired_vs_best``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .document import Bullets, Cell, Section, Table, Text
from .tables import comparison_block

GROUP_COLUMN = "group"
TOP_LEVEL = "(top level)"
NO_GROUP = "(no group)"


def target_groups(runs: list, per_target: pd.DataFrame) -> tuple[dict[str, str] | None, str]:
    """target → group, and how it was found; (None, "") when the targets carry no groups."""
    targets = list(dict.fromkeys(per_target["target"]))
    path = next((r.data.params.get("ground_truth") for r in runs if r.data.params.get("ground_truth")), None)
    from_csv = _ground_truth_groups(path, targets)
    if from_csv is not None:
        return from_csv, f"the `{GROUP_COLUMN}` column of the ground truth ({Path(path).name})"
    if any(r.data.params.get("scenario", "none") not in ("", "none") for r in runs):
        return None, ""
    groups = {t: t.split("/", 1)[0] if "/" in t else TOP_LEVEL for t in targets}
    if len(set(groups.values())) < 2 or all("/" not in t for t in targets):
        return None, ""
    return groups, "the top-level subfolder of the targets"


def _ground_truth_groups(path: str | None, targets: list[str]) -> dict[str, str] | None:
    if not path or path == "none" or not Path(path).is_file():
        return None
    try:
        frame = pd.read_csv(path, dtype=str, encoding="utf-8-sig").fillna("")
    except (OSError, ValueError):
        return None
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    if GROUP_COLUMN not in frame or "target" not in frame:
        return None
    by_name: dict[str, list[str]] = {}
    for target in targets:
        name = target.rsplit("/", 1)[-1]
        for key in (name, name.rsplit(".", 1)[0]):
            by_name.setdefault(key, []).append(target)
    out: dict[str, str] = {}
    for given, group in zip(frame["target"], frame[GROUP_COLUMN]):
        given = given.strip().replace("\\", "/")
        matches = [given] if given in targets else by_name.get(given, [])
        if len(matches) == 1 and group.strip():
            out.setdefault(matches[0], group.strip())
    if not out:
        return None
    return {t: out.get(t, NO_GROUP) for t in targets}


def group_table(per_target: pd.DataFrame, labels: list[str], metrics: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """The comparison table of these per-target rows: (table indexed by encoder, the metrics it has)."""
    from metrics.ir import bootstrap_ci

    from ..compare_stats import paired_vs_best, per_target_column
    from ..measures import ranked_across_encoders

    table = pd.DataFrame(index=pd.Index(labels, name="encoder"))
    used = []
    for metric in metrics:
        column = per_target_column(metric)
        if column is None or column not in per_target:
            continue
        used.append(metric)
        for label in labels:
            rows = per_target[per_target["encoder"] == label]
            values = pd.to_numeric(rows[column], errors="coerce").dropna().to_numpy(dtype=np.float64)
            low, high = bootstrap_ci(values) if len(values) else (np.nan, np.nan)
            table.at[label, metric] = float(values.mean()) if len(values) else np.nan
            table.at[label, f"{metric}_ci_low"], table.at[label, f"{metric}_ci_high"] = low, high
    for metric in used:
        paired = paired_vs_best(table, per_target, metric) if ranked_across_encoders(metric) else None
        if paired is None:
            table[f"{metric}_vs_best"] = ""
            continue
        for column in paired.columns:
            table[column] = paired[column]
    return table, used


def _significant(table: pd.DataFrame, metric: str) -> bool:
    """Whether the group's best is ahead of every other encoder by the paired test."""
    verdicts = table[f"{metric}_vs_best"]
    others = [v for v in verdicts if v != "best"]
    return bool(others) and all(v == "below" for v in others)


def interaction(tables: dict[str, tuple[pd.DataFrame, list[str]]], metrics: list[str]) -> list[str]:
    """One line per metric: the best encoder in each group, and whether it changes between groups."""
    from ..measures import ranked_across_encoders

    lines = []
    for metric in metrics:
        if not ranked_across_encoders(metric):
            continue
        best = {}
        for group, (table, used) in tables.items():
            if metric in used and (table[f"{metric}_vs_best"] == "best").any():
                winners = [str(label) for label in table.index if table.at[label, f"{metric}_vs_best"] == "best"]
                best[group] = (" = ".join(winners), _significant(table, metric))
        if len(best) < 2:
            continue
        shown = "; ".join(
            f"{group}: {who} ({'significant' if sig else 'not significant'})" for group, (who, sig) in best.items()
        )
        if len({who for who, _ in best.values()}) > 1:
            lines.append(f"{metric}: the best encoder changes with the group (interaction) — {shown}.")
        else:
            who = next(iter(best.values()))[0]
            lines.append(f"{metric}: {who} is best in every group — {shown}.")
    return lines


def section(data, metrics: list[str]) -> Section | None:
    """The per-group section (None when the targets carry no groups)."""
    if not data.groups:
        return None
    per_target = data.comparison.per_target.copy()
    per_target["_group"] = per_target["target"].map(data.groups)
    order = list(dict.fromkeys(data.groups[t] for t in data.groups))
    sizes = {g: int(per_target.loc[per_target["_group"] == g, "target"].nunique()) for g in order}
    total = int(per_target["target"].nunique())
    out = Section("Per-group results", id="groups")
    out.blocks.append(
        Text(
            f"Groups from {data.group_source}: {len(order)} groups, {total} targets in all "
            f"({' + '.join(f'{sizes[g]} {g}' for g in order)} = {sum(sizes.values())})."
        )
    )
    out.blocks.append(
        Table(
            ["group", "targets"],
            [[Cell(g), Cell(str(sizes[g]), sizes[g])] for g in order] + [[Cell("all"), Cell(str(total), total)]],
            caption="Group sizes",
            id="group-sizes",
        )
    )
    tables = {}
    for group in order:
        table, used = group_table(per_target[per_target["_group"] == group], data.labels, metrics)
        tables[group] = (table, used)
        if used:
            block = comparison_block(table, used, f"group-{_slug(group)}", f"{group} ({sizes[group]} targets)")
            out.subsections.append(Section(f"Group: {group} ({sizes[group]} targets)", [block], level=3))
    lines = interaction(tables, metrics)
    if lines:
        note = "Group × encoder: the best encoder per group (significant: ahead of every other by the paired test)."
        out.blocks += [Text(note), Bullets(lines)]
    return out


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-") or "group"
