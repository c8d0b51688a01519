"""Key findings, stated only where the paired statistics support them.

For each headline metric of the comparison (``compare.build``): the best encoder and its margin over the second, with
the paired bootstrap 95% CI of the per-target difference. A finding is stated only when that CI excludes zero *and*
the comparison's own verdict for the second is ``below`` (for hit rates that verdict is McNemar's exact test, which a
0/1 bootstrap CI on few targets can contradict); otherwise the sentence says "no significant difference" and why.
Then where the encoders disagree: the metrics on which a different encoder is significantly best.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from .document import number


@dataclass
class Finding:
    metric: str
    text: str
    significant: bool
    best: str | None = None  # the significantly best encoder (None: no significant difference)


def _order(values: pd.Series, metric: str) -> list:
    from ..measures import lower_is_better

    return list(values.sort_values(ascending=lower_is_better(metric), kind="stable").index)


def metric_finding(table: pd.DataFrame, metric: str) -> Finding | None:
    """The finding on one metric (None when it is not ranked across encoders or fewer than two encoders have it)."""
    from ..measures import lower_is_better, ranked_across_encoders

    if not ranked_across_encoders(metric) or f"{metric}_vs_best" not in table:
        return None
    values = pd.to_numeric(table[metric], errors="coerce").dropna()
    if len(values) < 2:
        return None
    direction = "lower is better" if lower_is_better(metric) else "higher is better"
    verdict = table[f"{metric}_vs_best"]
    bests = [label for label in _order(values, metric) if verdict.get(label) == "best"]
    if len(bests) != 1:
        shared = " and ".join(str(b) for b in bests) or "no encoder"
        value = number(values[bests[0]]) if bests else "–"
        return Finding(metric, f"{metric}: no significant difference — {shared} share the best value ({value}).", False)
    best = bests[0]
    second = next(label for label in _order(values, metric) if label != best)
    head = f"{metric} ({direction})"
    values_text = f"{best} {number(values[best])} vs {second} {number(values[second])}"
    diff = table.at[second, f"{metric}_diff"] if f"{metric}_diff" in table else float("nan")
    if pd.isna(diff):
        test = table.at[second, f"{metric}_test"] if f"{metric}_test" in table else ""
        why = f"no paired test: {test or 'no per-target values'}"
        return Finding(metric, f"{head}: no significant difference stated — {values_text} ({why}).", False)
    # the CI of best − second is the negated CI of second − best
    low, high = -float(table.at[second, f"{metric}_diff_ci_high"]), -float(table.at[second, f"{metric}_diff_ci_low"])
    n = table.at[second, f"{metric}_n_paired"] if f"{metric}_n_paired" in table else float("nan")
    over = f" over {int(n)} targets" if pd.notna(n) else ""
    margin = (
        f"best − second = {number(-diff, signed=True)} "
        f"[paired 95% CI {number(low, signed=True)}, {number(high, signed=True)}]{over}"
    )
    p_value = table.at[second, f"{metric}_mcnemar_p"] if f"{metric}_mcnemar_p" in table else float("nan")
    p_text = f", McNemar's exact p = {p_value:.3f}" if pd.notna(p_value) else ""
    excludes_zero = low > 0 or high < 0
    if excludes_zero and verdict.get(second) == "below":
        return Finding(metric, f"{head}: {best} is best — {values_text}; {margin}{p_text}.", True, str(best))
    why = "the CI includes 0" if not excludes_zero else f"McNemar's exact p = {p_value:.3f} ≥ 0.05"
    return Finding(metric, f"{head}: no significant difference — {values_text}; {margin}; {why}.", False)


def findings(table: pd.DataFrame, metrics: list[str]) -> list[Finding]:
    return [f for f in (metric_finding(table, m) for m in metrics) if f is not None]


def agreement(found: list[Finding]) -> str:
    """Where the encoders disagree: which encoder is significantly best on which metrics."""
    winners: dict[str, list[str]] = {}
    for finding in found:
        if finding.significant:
            winners.setdefault(finding.best, []).append(finding.metric)
    undecided = [f.metric for f in found if not f.significant]
    rest = f" No significant winner on {', '.join(undecided)}." if undecided else ""
    if not winners:
        return "No headline metric separates the encoders at the 95% level." if found else ""
    if len(winners) == 1:
        best, metrics = next(iter(winners.items()))
        return f"The metrics agree: where a difference is significant, {best} is best ({', '.join(metrics)}).{rest}"
    parts = "; ".join(f"{best} on {', '.join(metrics)}" for best, metrics in winners.items())
    return f"The metrics disagree — significantly best: {parts}.{rest}"
