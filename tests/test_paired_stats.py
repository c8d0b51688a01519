"""Paired statistics (benchmark/stats.py) and the paired comparison with the best (compare_stats.paired_vs_best)."""

import numpy as np
import pandas as pd
import pytest

from benchmark.compare_stats import paired_vs_best
from benchmark.compare_table import markdown_table
from benchmark.stats import mcnemar_exact, paired_bootstrap
from metrics.ir import bootstrap_ci


def test_paired_bootstrap_sees_what_overlapping_unpaired_intervals_hide():
    rng = np.random.default_rng(0)
    difficulty = rng.uniform(0, 1, 40)  # the queries' own spread, shared by both encoders
    a = np.clip(difficulty + 0.08 + rng.normal(0, 0.02, 40), 0, None)
    b = difficulty
    low_a, high_a = bootstrap_ci(a)
    low_b, high_b = bootstrap_ci(b)
    assert low_a <= high_b and low_b <= high_a  # the unpaired CIs overlap ...
    diff = paired_bootstrap(a, b)
    assert diff.excludes_zero() and diff.low > 0.05  # ... the paired one excludes 0
    assert diff.mean == pytest.approx(float(np.mean(a - b))) and diff.n == 40
    assert paired_bootstrap(a, b) == diff  # seeded
    assert paired_bootstrap(a, b, seed=1) != diff


def test_paired_bootstrap_edge_cases():
    same = paired_bootstrap([0.5, 0.2, 0.9], [0.5, 0.2, 0.9])
    assert (same.mean, same.low, same.high, same.n) == (0.0, 0.0, 0.0, 3)  # an identical re-run: [0, 0]
    shifted = paired_bootstrap([1.0, 2.0, 3.0], [0.0, 1.0, 2.0])
    assert (shifted.low, shifted.high) == (1.0, 1.0)
    assert paired_bootstrap([1.0, np.nan, 0.0], [0.0, 1.0, 0.0]).n == 2  # a pair with a missing side is left out
    with pytest.raises(ValueError):
        paired_bootstrap([np.nan], [1.0])
    with pytest.raises(ValueError):
        paired_bootstrap([1.0, 2.0], [1.0])


def test_mcnemar_exact():
    # 6 discordant pairs, all one way: p = 2 · 0.5**6
    a = [1, 1, 1, 1, 1, 1, 0, 1, 0]
    b = [0, 0, 0, 0, 0, 0, 0, 1, 0]
    result = mcnemar_exact(a, b)
    assert (result.only_a, result.only_b) == (6, 0) and result.p_value == pytest.approx(2 * 0.5**6)
    assert mcnemar_exact(b, a).p_value == result.p_value
    assert mcnemar_exact([1, 0], [1, 0]).p_value == 1.0
    balanced = mcnemar_exact([1, 0, 1, 0], [0, 1, 0, 1])
    assert balanced.p_value == 1.0


def _comparison(hits_a, hits_b, metric="hit_rate_at_1"):
    targets = [f"t{i}" for i in range(len(hits_a))]
    per_target = pd.concat(
        [
            pd.DataFrame({"encoder": name, "target": targets, metric: values})
            for name, values in (("a", hits_a), ("b", hits_b))
        ]
    )
    table = pd.DataFrame(
        {metric: [float(np.mean(hits_a)), float(np.mean(hits_b))], f"{metric}_ci_low": [0.0, 0.0]},
        index=pd.Index(["a", "b"], name="encoder"),
    )
    table[f"{metric}_ci_high"] = 1.0  # wide unpaired CIs: the old check would say "≈"
    return table, per_target


def test_paired_vs_best_marks_a_supported_difference_below():
    """The demo's shape: hit@1 of 9/18 vs 3/18 targets, with the weaker encoder's hits a subset of the best's."""
    hits_best = [1] * 9 + [0] * 9
    hits_other = [1] * 3 + [0] * 15
    table, per_target = _comparison(hits_best, hits_other)
    out = paired_vs_best(table, per_target, "hit_rate_at_1")
    assert out.at["a", "hit_rate_at_1_vs_best"] == "best"
    assert out.at["b", "hit_rate_at_1_vs_best"] == "below"
    assert out.at["b", "hit_rate_at_1_diff"] == pytest.approx(-6 / 18)
    assert out.at["b", "hit_rate_at_1_diff_ci_high"] < 0 and out.at["b", "hit_rate_at_1_n_paired"] == 18
    assert out.at["b", "hit_rate_at_1_mcnemar_p"] == pytest.approx(2 * 0.5**6)
    for column in out.columns:
        table[column] = out[column]
    text = markdown_table(table, ["hit_rate_at_1"])
    assert "| b | 0.167 [0.000, 1.000] |" in text  # no "≈": the paired test says the data support the gap
    assert "-0.333 [" in text and "p=0.031" in text


def test_paired_vs_best_ties_when_the_difference_ci_holds_zero():
    table, per_target = _comparison([1, 0, 1, 0, 1, 0], [0, 1, 1, 0, 1, 0])
    table.loc["b", "hit_rate_at_1"] = 0.49  # a hair below: the best is a
    out = paired_vs_best(table, per_target, "hit_rate_at_1")
    assert out.at["b", "hit_rate_at_1_vs_best"] == "tied"
    assert out.at["b", "hit_rate_at_1_diff_ci_low"] < 0 < out.at["b", "hit_rate_at_1_diff_ci_high"]


def test_lower_is_better_and_missing_per_target_values():
    table, per_target = _comparison([1.0, 1.0, 2.0, 1.0], [3.0, 4.0, 5.0, 3.0], metric="mean_first_relevant_rank")
    per_target = per_target.rename(columns={"mean_first_relevant_rank": "first_relevant_rank"})
    out = paired_vs_best(table, per_target, "mean_first_relevant_rank")
    assert out.at["a", "mean_first_relevant_rank_vs_best"] == "best"
    assert out.at["b", "mean_first_relevant_rank_vs_best"] == "below"  # higher rank is worse
    assert paired_vs_best(table, per_target.drop(columns="first_relevant_rank"), "mean_first_relevant_rank") is None
