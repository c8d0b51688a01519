"""IR metrics (metrics/ir.py): hand-computed cases, scikit-learn agreement, the rank-based path against the
list-based reference, bootstrap intervals."""

from __future__ import annotations

import math

import numpy as np
import pytest

from metrics.ir import (
    AGGREGATE_OF,
    AT_K,
    aggregate_ir,
    average_precision,
    bootstrap_ci,
    first_relevant_rank,
    hit_rate_at_k,
    ir_confidence_intervals,
    ir_metrics,
    ndcg_at_k,
    per_query_column,
    per_query_ir,
    precision_at_k,
    query_ir,
    recall_at_k,
    reciprocal_rank,
)
from metrics.ir_ranks import per_query_from_ranks

# --- hand-computed cases --------------------------------------------------------------------------------------


def test_hand_computed_two_relevant():
    ranking, relevant = ["a", "b", "c", "d"], {"b", "d"}
    # relevant at ranks 2 and 4: precision@2 = 1/2, precision@4 = 2/4 → AP = (1/2 + 2/4) / 2 = 0.5
    assert average_precision(ranking, relevant) == pytest.approx(0.5)
    assert first_relevant_rank(ranking, relevant) == 2
    assert reciprocal_rank(ranking, relevant) == pytest.approx(1 / 2)
    assert recall_at_k(ranking, relevant, 1) == 0.0  # top1 {a}: 0 of 2
    assert recall_at_k(ranking, relevant, 2) == 0.5  # top2 {a,b}: 1 of 2
    assert recall_at_k(ranking, relevant, 4) == 1.0
    assert hit_rate_at_k(ranking, relevant, 1) == 0.0
    assert hit_rate_at_k(ranking, relevant, 2) == 1.0
    assert precision_at_k(ranking, relevant, 1) == 0.0
    assert precision_at_k(ranking, relevant, 2) == 0.5  # 1/2
    assert precision_at_k(ranking, relevant, 3) == pytest.approx(1 / 3)
    assert precision_at_k(ranking, relevant, 10) == pytest.approx(2 / 10)  # always / k
    # nDCG@2: DCG = 0/log2(2) + 1/log2(3); IDCG = 1/log2(2) + 1/log2(3)
    assert ndcg_at_k(ranking, relevant, 2) == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))
    # nDCG@4: DCG = 1/log2(3) + 1/log2(5); IDCG = 1 + 1/log2(3)
    assert ndcg_at_k(ranking, relevant, 4) == pytest.approx(
        (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3))
    )


def test_hand_computed_first_is_relevant():
    ranking, relevant = ["x", "y", "z", "w", "v"], ["x", "z", "v"]
    # ranks 1, 3, 5: AP = (1/1 + 2/3 + 3/5) / 3 = (15 + 10 + 9) / 45 = 34/45
    assert average_precision(ranking, relevant) == pytest.approx(34 / 45)
    assert reciprocal_rank(ranking, relevant) == 1.0
    assert recall_at_k(ranking, relevant, 3) == pytest.approx(2 / 3)
    assert ndcg_at_k(ranking, relevant, 1) == 1.0


def test_unretrieved_relevant_items_count_zero():
    # truncated ranking [a, b]; relevant {b, q} with q never retrieved: AP = (1/2 + 0) / 2 = 0.25
    assert average_precision(["a", "b"], {"b", "q"}) == pytest.approx(0.25)
    assert recall_at_k(["a", "b"], {"b", "q"}, 5) == 0.5
    # nothing relevant retrieved: AP 0, RR 0, no first rank, nDCG 0
    assert average_precision(["a", "b", "c"], {"z"}) == 0.0
    assert reciprocal_rank(["a", "b", "c"], {"z"}) == 0.0
    assert first_relevant_rank(["a", "b", "c"], {"z"}) is None
    assert ndcg_at_k(["a", "b", "c"], {"z"}, 3) == 0.0
    assert hit_rate_at_k(["a", "b", "c"], {"z"}, 3) == 0.0


def test_graded_ndcg_by_hand():
    ranking = ["a", "b", "c"]
    grades = {"a": 1, "b": 0, "c": 3, "d": 2}  # b judged non-relevant; d relevant, not retrieved
    # DCG@3 = 1/log2(2) + 0/log2(3) + 3/log2(4) = 1 + 1.5 = 2.5
    # IDCG@3 = 3/log2(2) + 2/log2(3) + 1/log2(4) = 3 + 2/log2(3) + 0.5
    assert ndcg_at_k(ranking, grades, 3) == pytest.approx(2.5 / (3.5 + 2 / math.log2(3)))
    # binary metrics use grade > 0: relevant = {a, c, d}; AP = (1/1 + 2/3) / 3 = 5/9
    assert average_precision(ranking, grades) == pytest.approx(5 / 9)


def test_undefined_cases_raise():
    with pytest.raises(ValueError, match="no relevant"):
        average_precision(["a"], set())
    with pytest.raises(ValueError, match="no relevant"):
        recall_at_k(["a"], {"a": 0}, 1)
    with pytest.raises(ValueError, match="no relevant"):
        ndcg_at_k(["a"], {}, 1)
    with pytest.raises(ValueError, match="k must"):
        recall_at_k(["a"], {"a"}, 0)
    with pytest.raises(ValueError, match="twice"):
        average_precision(["a", "b", "a", "c"], {"c"})
    with pytest.raises(ValueError, match="≥ 0"):
        ndcg_at_k(["a"], {"a": -1}, 1)
    with pytest.raises(TypeError):
        average_precision(["a"], "a")
    # defined without relevant items
    assert reciprocal_rank(["a"], set()) == 0.0 and hit_rate_at_k(["a"], set(), 1) == 0.0


# --- aggregation ----------------------------------------------------------------------------------------------


def test_ir_metrics_means_and_exclusions():
    rankings = {
        "q1": ["a", "b", "c", "d"],  # relevant {b, d}: AP 0.5, RR 1/2, first rank 2
        "q2": ["c", "a", "b", "d"],  # relevant {c}:    AP 1,   RR 1,   first rank 1
        "q3": ["a", "b", "c", "d"],  # no relevant items → excluded
        "q4": ["d", "c", "b", "a"],  # relevant only graded 0 → excluded
    }
    relevance = {"q1": {"b": 1, "d": 1}, "q2": {"c": 2}, "q4": {"a": 0}}
    out = ir_metrics(rankings, relevance, ks=(1, 2))
    assert out["n_queries_evaluated"] == 2 and out["n_queries_without_relevant"] == 2
    assert out["n_queries_relevant_not_retrieved"] == 0
    assert out["map"] == pytest.approx((0.5 + 1.0) / 2)
    assert out["mrr"] == pytest.approx((0.5 + 1.0) / 2)
    assert out["mean_first_relevant_rank"] == pytest.approx((2 + 1) / 2)
    assert out["recall_at_1"] == pytest.approx((0 + 1) / 2)
    assert out["recall_at_2"] == pytest.approx((0.5 + 1) / 2)
    assert out["hit_rate_at_1"] == pytest.approx(0.5)
    assert out["precision_at_2"] == pytest.approx((1 / 2 + 1 / 2) / 2)
    assert out["ndcg_at_1"] == pytest.approx((0 + 1) / 2)
    assert not any("@" in key for key in out)
    expected_keys = {
        "map",
        "mrr",
        "mean_first_relevant_rank",
        "n_queries_evaluated",
        "n_queries_without_relevant",
        "n_queries_relevant_not_retrieved",
    } | {f"{m}_at_{k}" for m in ("recall", "hit_rate", "precision", "ndcg") for k in (1, 2)}
    assert set(out) == expected_keys

    rows = per_query_ir(rankings, relevance, ks=(1, 2))
    assert [row["query"] for row in rows] == ["q1", "q2"]
    assert rows[0]["average_precision"] == pytest.approx(0.5) and rows[0]["first_relevant_rank"] == 2
    assert rows[0]["n_relevant"] == 2
    for metric in ("map", "mrr", "recall_at_2", "ndcg_at_1"):
        assert np.mean([row[per_query_column(metric)] for row in rows]) == pytest.approx(out[metric])


def test_first_relevant_rank_mean_skips_unretrieved():
    rankings = {"q1": ["a", "b"], "q2": ["a", "b"]}
    out = ir_metrics(rankings, {"q1": {"b"}, "q2": {"z"}}, ks=(1,))
    assert out["mean_first_relevant_rank"] == 2.0 and out["n_queries_relevant_not_retrieved"] == 1
    assert out["mrr"] == pytest.approx((1 / 2 + 0) / 2) and out["map"] == pytest.approx((1 / 2 + 0) / 2)
    only_missing = ir_metrics({"q": ["a"]}, {"q": {"z"}}, ks=(1,))
    assert math.isnan(only_missing["mean_first_relevant_rank"])


def test_ir_metrics_errors():
    with pytest.raises(ValueError, match="no query"):
        ir_metrics({"q": ["a"]}, {}, ks=(1,))
    with pytest.raises(ValueError, match="no ranking"):
        ir_metrics({"q": ["a"]}, {"q": {"a"}, "other": {"a"}}, ks=(1,))
    with pytest.raises(ValueError, match="no query"):
        aggregate_ir([], ks=(1,))


# --- agreement with scikit-learn on random cases --------------------------------------------------------------


def _random_cases(seed: int, n_queries: int = 40, n_refs: int = 30):
    """Full rankings (random permutations) and graded relevance (0–3, ≥ 1 relevant per query)."""
    rng = np.random.default_rng(seed)
    refs = [f"r{i}" for i in range(n_refs)]
    rankings, relevance = {}, {}
    for q in range(n_queries):
        rankings[q] = [refs[i] for i in rng.permutation(n_refs)]
        grades = rng.choice([0, 0, 0, 1, 2, 3], size=n_refs)
        grades[rng.integers(n_refs)] = rng.integers(1, 4)
        relevance[q] = {ref: int(g) for ref, g in zip(refs, grades)}
    return refs, rankings, relevance


def _scores_from_ranking(ranking, refs):
    """Strictly decreasing scores in ranking order (no ties), aligned with ``refs``."""
    position = {ref: i for i, ref in enumerate(ranking)}
    return np.array([len(refs) - position[ref] for ref in refs], dtype=float)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_average_precision_matches_sklearn(seed):
    from sklearn.metrics import average_precision_score, label_ranking_average_precision_score

    refs, rankings, relevance = _random_cases(seed)
    y_true = np.array([[relevance[q][r] > 0 for r in refs] for q in rankings], dtype=int)
    y_score = np.array([_scores_from_ranking(rankings[q], refs) for q in rankings])
    ours = [average_precision(rankings[q], relevance[q]) for q in rankings]
    for i in range(len(rankings)):
        assert ours[i] == pytest.approx(average_precision_score(y_true[i], y_score[i]), abs=1e-12)
    assert ir_metrics(rankings, relevance, ks=(5,))["map"] == pytest.approx(
        label_ranking_average_precision_score(y_true, y_score), abs=1e-12
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("k", [1, 3, 5, 10, 30])
def test_ndcg_matches_sklearn(seed, k):
    from sklearn.metrics import ndcg_score

    refs, rankings, relevance = _random_cases(seed)
    y_true = np.array([[relevance[q][r] for r in refs] for q in rankings], dtype=float)
    y_score = np.array([_scores_from_ranking(rankings[q], refs) for q in rankings])
    for i, q in enumerate(rankings):
        assert ndcg_at_k(rankings[q], relevance[q], k) == pytest.approx(
            ndcg_score(y_true[i : i + 1], y_score[i : i + 1], k=k), abs=1e-12
        )
    assert ir_metrics(rankings, relevance, ks=(k,))[f"ndcg_at_{k}"] == pytest.approx(
        ndcg_score(y_true, y_score, k=k), abs=1e-12
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_recall_precision_rr_against_brute_force(seed):
    refs, rankings, relevance = _random_cases(seed)
    for q, ranking in rankings.items():
        rel = {r for r, g in relevance[q].items() if g > 0}
        row = query_ir(ranking, relevance[q], ks=(1, 5, 10))
        positions = sorted(ranking.index(r) + 1 for r in rel)
        assert row["first_relevant_rank"] == positions[0]
        assert row["reciprocal_rank"] == pytest.approx(1 / positions[0])
        for k in (1, 5, 10):
            top = set(ranking[:k])
            assert row[f"recall_at_{k}"] == pytest.approx(len(top & rel) / len(rel))
            assert row[f"precision_at_{k}"] == pytest.approx(len(top & rel) / k)
            assert row[f"hit_rate_at_{k}"] == float(bool(top & rel))
            assert row[f"ndcg_at_{k}"] == pytest.approx(ndcg_at_k(ranking, relevance[q], k))
            assert row[f"recall_at_{k}"] == pytest.approx(recall_at_k(ranking, relevance[q], k))


# --- bootstrap ------------------------------------------------------------------------------------------------


def test_bootstrap_deterministic_and_contains_mean():
    values = np.random.default_rng(0).random(50)
    first = bootstrap_ci(values, seed=123)
    assert bootstrap_ci(values, seed=123) == first
    assert bootstrap_ci(values, seed=124) != first
    low, high = first
    assert low < values.mean() < high
    assert 0 <= low and high <= 1


def test_bootstrap_constant_and_single():
    assert bootstrap_ci(np.full(20, 0.1)) == (0.1, 0.1)
    assert bootstrap_ci([0.7]) == (0.7, 0.7)


def test_bootstrap_narrows_as_n_grows():
    rng = np.random.default_rng(1)
    widths = []
    for n in (10, 100, 1000):
        low, high = bootstrap_ci(rng.random(n), n_resamples=500, seed=0)
        widths.append(high - low)
    assert widths[0] > widths[1] > widths[2]
    # ≈ 2 · 1.96 · sd/√n for U(0,1) (sd ≈ 0.289) at n = 1000: ≈ 0.036
    assert widths[2] == pytest.approx(2 * 1.96 * 0.2887 / math.sqrt(1000), rel=0.25)


def test_bootstrap_confidence_and_errors():
    values = np.random.default_rng(2).random(40)
    narrow = bootstrap_ci(values, confidence=0.5)
    wide = bootstrap_ci(values, confidence=0.99)
    assert wide[0] < narrow[0] < narrow[1] < wide[1]
    with pytest.raises(ValueError):
        bootstrap_ci([])
    with pytest.raises(ValueError):
        bootstrap_ci([0.1, float("nan")])
    with pytest.raises(ValueError):
        bootstrap_ci([0.1, 0.2], confidence=1.0)


def test_bootstrap_blocks_do_not_change_the_result():
    # 5000 values × 1000 resamples = 5M indices > one block (4M): drawn in two blocks, which must equal one
    # draw of all resamples at once from the same generator (written out here)
    values = np.random.default_rng(3).random(5000)
    rng = np.random.default_rng(9)
    means = values[rng.integers(0, values.size, size=(1000, values.size))].mean(axis=1)
    expected = tuple(np.quantile(means, [0.025, 0.975]))
    assert bootstrap_ci(values, n_resamples=1000, seed=9) == pytest.approx(expected, abs=1e-15)


def test_ir_confidence_intervals():
    _, rankings, relevance = _random_cases(4)
    rows = per_query_ir(rankings, relevance, ks=(1, 5))
    means = aggregate_ir(rows, ks=(1, 5))
    cis = ir_confidence_intervals(rows, ks=(1, 5), n_resamples=300, seed=0)
    for metric in (
        "map",
        "mrr",
        "mean_first_relevant_rank",
        "recall_at_5",
        "ndcg_at_1",
        "hit_rate_at_1",
        "precision_at_5",
    ):
        assert cis[f"{metric}_ci_low"] <= means[metric] <= cis[f"{metric}_ci_high"], metric
    assert cis == ir_confidence_intervals(rows, ks=(1, 5), n_resamples=300, seed=0)


# --- from ranks: bit-identical to the list-based functions (the reference) ---------------------------------------


def _ranks_of(rankings, relevance):
    """What ``benchmark.ranking.relevant_ranks`` gives: each relevant item's 1-based rank, or None if unranked."""
    out = []
    for q, ranking in rankings.items():
        position = {item: i + 1 for i, item in enumerate(ranking)}
        rel = relevance.get(q, ())
        out.append({item: position.get(item) for item in (rel.keys() if isinstance(rel, dict) else rel)})
    return out


def _assert_from_ranks_equals_reference(rankings, relevance, ks):
    expected = per_query_ir(rankings, relevance, ks)
    got = per_query_from_ranks(
        _ranks_of(rankings, relevance), [relevance.get(q, ()) for q in rankings], ks, queries=list(rankings)
    )
    assert got == expected  # same keys, same order of rows, values equal bit for bit
    assert [list(row) for row in got] == [list(row) for row in expected]  # same column order
    return got


def test_from_ranks_hand_computed_cases():
    rankings = {
        "q1": ["a", "b", "c", "d"],
        "q2": ["c", "a", "b", "d"],
        "q3": ["a", "b", "c", "d"],
        "q4": ["d", "c", "b", "a"],
        "q5": ["a", "b"],  # truncated: relevant q never ranked (e.g. excluded)
        "q6": ["x", "y", "z", "w", "v"],
    }
    relevance = {"q1": {"b": 1, "d": 1}, "q2": {"c": 2}, "q4": {"a": 0}, "q5": {"b", "q"}, "q6": ["x", "z", "v"]}
    rows = _assert_from_ranks_equals_reference(rankings, relevance, ks=(1, 2, 4, 10))
    assert [row["query"] for row in rows] == ["q1", "q2", "q5", "q6"]
    assert rows[2]["average_precision"] == pytest.approx(0.25) and rows[2]["n_relevant"] == 2
    assert rows[3]["average_precision"] == pytest.approx(34 / 45)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_from_ranks_equals_reference_on_random_graded_cases(seed):
    _, rankings, relevance = _random_cases(seed, n_queries=60, n_refs=40)
    _assert_from_ranks_equals_reference(rankings, relevance, ks=(1, 3, 5, 10, 40, 100))


@pytest.mark.parametrize("seed", [0, 1])
def test_from_ranks_equals_reference_with_unranked_and_many_relevant(seed):
    # long rankings with missing items (exclusions): many relevant per query, fractional grades, nothing found
    rng = np.random.default_rng(seed)
    refs = [f"r{i}" for i in range(200)]
    rankings, relevance = {}, {}
    for q in range(50):
        rankings[q] = [refs[i] for i in rng.permutation(200)[: rng.integers(0, 200)]]
        chosen = rng.choice(200, size=rng.integers(0, 30), replace=False)
        relevance[q] = {refs[i]: float(rng.choice([0, 0.25, 1, 2.5, 3])) for i in chosen}
    _assert_from_ranks_equals_reference(rankings, relevance, ks=(1, 5, 10, 20))


def test_from_ranks_errors_and_defaults():
    rows = per_query_from_ranks([{"a": 3}, {}], [{"a"}, {"b": 1}], ks=(1,))
    assert [row["query"] for row in rows] == [0, 1]  # default query names: positions
    assert rows[1]["first_relevant_rank"] is None and rows[1]["average_precision"] == 0.0
    with pytest.raises(ValueError, match="rank 2"):
        per_query_from_ranks([{"a": 2, "b": 2}], [{"a", "b"}], ks=(1,))
    with pytest.raises(ValueError, match="positive integer"):
        per_query_from_ranks([{"a": -1}], [{"a"}], ks=(1,))
    with pytest.raises(ValueError, match="positive integer"):
        per_query_from_ranks([{"a": 1.5}], [{"a"}], ks=(1,))
    with pytest.raises(ValueError, match="rank mappings"):
        per_query_from_ranks([{}], [{"a"}, {"b"}], ks=(1,))
    with pytest.raises(ValueError, match="k must"):
        per_query_from_ranks([{"a": 1}], [{"a"}], ks=(0,))
    assert per_query_from_ranks([{}], [set()], ks=(1,)) == []


def _reference_confidence_intervals(rows, ks, n_resamples, confidence=0.95, seed=0):
    """The previous ir_confidence_intervals: one ``bootstrap_ci`` per metric."""
    out = {}
    for metric in list(AGGREGATE_OF) + [f"{name}_at_{k}" for k in ks for name in AT_K]:
        column = per_query_column(metric)
        values = [row[column] for row in rows if row[column] is not None]
        if values:
            out[f"{metric}_ci_low"], out[f"{metric}_ci_high"] = bootstrap_ci(values, n_resamples, confidence, seed)
    return out


@pytest.mark.parametrize("n_queries", [1, 7, 300, 4500])  # 4500: resamples drawn in several blocks
def test_vectorised_intervals_equal_one_bootstrap_per_metric(n_queries):
    _, rankings, relevance = _random_cases(11, n_queries=n_queries, n_refs=25)
    rows = per_query_ir(rankings, relevance, ks=(1, 5))
    rows[0]["first_relevant_rank"] = None  # a shorter column for mean_first_relevant_rank
    for resamples, confidence, seed in ((1000, 0.95, 0), (333, 0.9, 5)):
        got = ir_confidence_intervals(rows, (1, 5), resamples, confidence, seed)
        assert got == _reference_confidence_intervals(rows, (1, 5), resamples, confidence, seed)
        assert list(got) == list(_reference_confidence_intervals(rows, (1, 5), resamples, confidence, seed))
