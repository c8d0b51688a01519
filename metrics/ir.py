"""Information-retrieval metrics of ranked results against ground truth, and bootstrap intervals.

Inputs, per query: ``ranked_ids`` — the retrieved reference ids, best first (the full ranking over all
references, or a top-k prefix of it; each id at most once), and ``relevant`` — either a collection of
relevant ids (each with grade 1) or a mapping ``id -> grade`` (grade ≥ 0; an item is *relevant* when its
grade is > 0; grade-0 entries are judged non-relevant). ``R`` below is the number of relevant items,
whether retrieved or not. Ranks are 1-based. Ties in scores are the retriever's concern: the order given
is the order used.

Definitions (binary relevance unless said otherwise):

* ``average_precision`` = (1/R) · Σ over relevant items retrieved at rank r of precision@r. Relevant items
  missing from the ranking contribute 0 (so with a truncated ranking it is AP at that cutoff, still divided
  by R — the TREC convention). Undefined for R = 0.
* ``first_relevant_rank`` = rank of the first relevant item, ``None`` if none is retrieved.
* ``reciprocal_rank`` = 1 / first_relevant_rank, 0 if none is retrieved.
* ``recall_at_k`` = |relevant ∩ top k| / R (undefined for R = 0).
* ``hit_rate_at_k`` = 1 if any relevant item is in the top k, else 0.
* ``precision_at_k`` = |relevant ∩ top k| / k — always divided by k, even if fewer than k are retrieved.
* ``ndcg_at_k`` = DCG@k / IDCG@k with **linear gain** (the grade itself, not 2^grade - 1) and discount
  1/log2(rank + 1): DCG@k = Σ_{r ≤ k} grade(item at r) / log2(r + 1); IDCG@k is the same sum for the
  R grades sorted in decreasing order. This is scikit-learn's ``ndcg_score(k=k)`` for a ranking without
  tied scores (tests check it against it). Undefined for R = 0.

The per-query functions raise ``ValueError`` where a definition is undefined (R = 0).
``ir_metrics`` averages over the queries with R ≥ 1 and reports how many were evaluated and excluded.

The rows from ranks at catalogue scale are ``ir_ranks.py``'s (``per_query_from_ranks``); their expectation over the
orders of tied scores ``ir_ties.py``'s (``TIES``, ``per_query_from_tie_blocks``).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence

import numpy as np

from .base import Measure

Relevance = Mapping[Hashable, float] | Iterable[Hashable]

#: per-query column of each aggregate: aggregate name -> per-query key (``k`` filled in for the *_at_k ones)
AGGREGATE_OF = {
    "map": "average_precision",
    "mrr": "reciprocal_rank",
    "mean_first_relevant_rank": "first_relevant_rank",
}
AT_K = ("recall", "hit_rate", "precision", "ndcg")

#: what each aggregate means (``{k}``: any cut-off); read by compare and regress, in headline order
MEASURES = (
    Measure("map", True, True, "mean average precision over queries with a relevant reference"),
    Measure("mrr", True, True, "mean reciprocal rank of the first relevant reference"),
    Measure("recall_at_{k}", True, True, "fraction of the relevant references found in the top k"),
    Measure("ndcg_at_{k}", True, True, "normalised discounted cumulative gain of the top k"),
    Measure("hit_rate_at_1", True, True, "fraction of queries whose top-1 reference is relevant"),
    Measure("hit_rate_at_{k}", True, description="fraction of queries with a relevant reference in the top k"),
    Measure("precision_at_{k}", True, description="fraction of the top k that is relevant"),
    Measure("mean_first_relevant_rank", False, description="mean rank of the first relevant reference"),
)


def relevance_grades(relevant: Relevance) -> dict[Hashable, float]:
    """Normalise ``relevant`` to ``{id: grade}`` of the relevant items only (grade > 0)."""
    if isinstance(relevant, Mapping):
        grades = {}
        for item, grade in relevant.items():
            grade = float(grade)
            if not math.isfinite(grade) or grade < 0:
                raise ValueError(f"relevance grade of {item!r} must be finite and ≥ 0, got {grade}")
            if grade > 0:
                grades[item] = grade
        return grades
    if isinstance(relevant, (str, bytes)):
        raise TypeError("relevant must be a collection of ids or a mapping id -> grade, not a string")
    return {item: 1.0 for item in relevant}


def check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    return int(k)


def _relevant_ranks(ranked_ids: Sequence[Hashable], grades: Mapping[Hashable, float]) -> list[int]:
    """1-based ranks of the relevant items in ``ranked_ids``, ascending. Stops scanning once all are found;
    raises ``ValueError`` on a repeated id within the scanned part."""
    ranks: list[int] = []
    seen: set = set()
    remaining = len(grades)
    for rank, item in enumerate(ranked_ids, start=1):
        if remaining == 0:
            break
        if item in seen:
            raise ValueError(f"ranking lists {item!r} twice")
        seen.add(item)
        if item in grades:
            ranks.append(rank)
            remaining -= 1
    return ranks


def need_relevant(grades: Mapping) -> int:
    if not grades:
        raise ValueError("no relevant items: the metric is undefined for this query")
    return len(grades)


def average_precision(ranked_ids: Sequence[Hashable], relevant: Relevance) -> float:
    """AP = (1/R) Σ_{relevant item at rank r} precision@r; unretrieved relevant items count 0."""
    grades = relevance_grades(relevant)
    n_relevant = need_relevant(grades)
    ranks = _relevant_ranks(ranked_ids, grades)
    return float(sum(i / r for i, r in enumerate(ranks, start=1)) / n_relevant)


def first_relevant_rank(ranked_ids: Sequence[Hashable], relevant: Relevance) -> int | None:
    """1-based rank of the first relevant item; ``None`` if no relevant item is retrieved."""
    grades = relevance_grades(relevant)
    for rank, item in enumerate(ranked_ids, start=1):
        if item in grades:
            return rank
    return None


def reciprocal_rank(ranked_ids: Sequence[Hashable], relevant: Relevance) -> float:
    """1 / (rank of the first relevant item); 0.0 if none is retrieved."""
    rank = first_relevant_rank(ranked_ids, relevant)
    return 0.0 if rank is None else 1.0 / rank


def recall_at_k(ranked_ids: Sequence[Hashable], relevant: Relevance, k: int) -> float:
    """|relevant ∩ top k| / R."""
    k = check_k(k)
    grades = relevance_grades(relevant)
    n_relevant = need_relevant(grades)
    return sum(1 for item in ranked_ids[:k] if item in grades) / n_relevant


def hit_rate_at_k(ranked_ids: Sequence[Hashable], relevant: Relevance, k: int) -> float:
    """1.0 if any relevant item is in the top k, else 0.0."""
    k = check_k(k)
    grades = relevance_grades(relevant)
    return 1.0 if any(item in grades for item in ranked_ids[:k]) else 0.0


def precision_at_k(ranked_ids: Sequence[Hashable], relevant: Relevance, k: int) -> float:
    """|relevant ∩ top k| / k (divided by k even when fewer than k items are retrieved)."""
    k = check_k(k)
    grades = relevance_grades(relevant)
    return sum(1 for item in ranked_ids[:k] if item in grades) / k


def dcg_of(gains: Iterable[float]) -> float:
    return float(sum(g / math.log2(r + 1) for r, g in enumerate(gains, start=1)))


def ndcg_at_k(ranked_ids: Sequence[Hashable], relevant: Relevance, k: int) -> float:
    """DCG@k / IDCG@k with linear gain (grade) and 1/log2(rank+1) discount (= scikit-learn's ndcg_score)."""
    k = check_k(k)
    grades = relevance_grades(relevant)
    need_relevant(grades)
    dcg = dcg_of(grades.get(item, 0.0) for item in ranked_ids[:k])
    idcg = dcg_of(sorted(grades.values(), reverse=True)[:k])
    return dcg / idcg


def query_ir(ranked_ids: Sequence[Hashable], relevant: Relevance, ks: Iterable[int] = (1, 5, 10)) -> dict:
    """All per-query values at once (one scan of the ranking). Raises ``ValueError`` if R = 0."""
    ks = [check_k(k) for k in ks]
    grades = relevance_grades(relevant)
    n_relevant = need_relevant(grades)
    ranks = _relevant_ranks(ranked_ids, grades)
    row: dict = {
        "n_relevant": n_relevant,
        "average_precision": float(sum(i / r for i, r in enumerate(ranks, start=1)) / n_relevant),
        "reciprocal_rank": 1.0 / ranks[0] if ranks else 0.0,
        "first_relevant_rank": ranks[0] if ranks else None,
    }
    ideal = sorted(grades.values(), reverse=True)
    for k in ks:
        found = sum(1 for r in ranks if r <= k)
        row[f"recall_at_{k}"] = found / n_relevant
        row[f"hit_rate_at_{k}"] = 1.0 if found else 0.0
        row[f"precision_at_{k}"] = found / k
        row[f"ndcg_at_{k}"] = dcg_of(grades.get(item, 0.0) for item in ranked_ids[:k]) / dcg_of(ideal[:k])
    return row


def _check_queries(rankings: Mapping, relevance: Mapping) -> None:
    missing = [q for q in relevance if q not in rankings]
    if missing:
        shown = ", ".join(repr(q) for q in missing[:5]) + (" …" if len(missing) > 5 else "")
        raise ValueError(f"{len(missing)} queries have ground truth but no ranking: {shown}")


def per_query_ir(
    rankings: Mapping[Hashable, Sequence[Hashable]],
    relevance: Mapping[Hashable, Relevance],
    ks: Iterable[int] = (1, 5, 10),
) -> list[dict]:
    """One row per evaluated query (those with ≥ 1 relevant item), in ``rankings`` order:
    ``{"query", "n_relevant", "average_precision", "reciprocal_rank", "first_relevant_rank",
    "recall_at_{k}", "hit_rate_at_{k}", "precision_at_{k}", "ndcg_at_{k}"}``. A query absent from
    ``relevance`` has no relevant item; a query in ``relevance`` but not in ``rankings`` is an error."""
    ks = tuple(ks)
    _check_queries(rankings, relevance)
    rows = []
    for query, ranked in rankings.items():
        grades = relevance_grades(relevance.get(query, ()))
        if not grades:
            continue
        rows.append({"query": query, **query_ir(ranked, grades, ks)})
    return rows


def aggregate_ir(rows: Sequence[dict], ks: Iterable[int] = (1, 5, 10)) -> dict[str, float]:
    """Means over the rows of ``per_query_ir``: ``map``, ``mrr``, ``mean_first_relevant_rank`` (over the
    queries whose ranking holds a relevant item; NaN if none does), ``{recall,hit_rate,precision,ndcg}_at_{k}``,
    plus ``n_queries_evaluated`` and ``n_queries_relevant_not_retrieved``."""
    ks = tuple(ks)
    if not rows:
        raise ValueError("no query to evaluate (no query has a relevant item)")
    out: dict[str, float] = {
        "map": float(np.mean([row["average_precision"] for row in rows])),
        "mrr": float(np.mean([row["reciprocal_rank"] for row in rows])),
    }
    first = [row["first_relevant_rank"] for row in rows if row["first_relevant_rank"] is not None]
    out["mean_first_relevant_rank"] = float(np.mean(first)) if first else float("nan")
    for k in ks:
        for name in AT_K:
            key = f"{name}_at_{k}"
            out[key] = float(np.mean([row[key] for row in rows]))
    out["n_queries_evaluated"] = len(rows)
    out["n_queries_relevant_not_retrieved"] = len(rows) - len(first)
    return out


def ir_metrics(
    rankings: Mapping[Hashable, Sequence[Hashable]],
    relevance: Mapping[Hashable, Relevance],
    ks: Iterable[int] = (1, 5, 10),
) -> dict[str, float]:
    """Mean IR metrics over the queries of ``rankings`` that have ≥ 1 relevant item (see ``aggregate_ir`` for
    the names), plus ``n_queries_without_relevant`` (queries excluded for having none).
    Raises ``ValueError`` if no query can be evaluated or a query of ``relevance`` has no ranking."""
    ks = tuple(ks)
    rows = per_query_ir(rankings, relevance, ks)
    out = aggregate_ir(rows, ks)
    out["n_queries_without_relevant"] = len(rankings) - len(rows)
    return out


def per_query_column(metric: str) -> str:
    """The ``per_query_ir`` key whose mean is the aggregate ``metric`` (``map`` → ``average_precision``)."""
    if metric in AGGREGATE_OF:
        return AGGREGATE_OF[metric]
    if any(metric.startswith(f"{name}_at_") for name in AT_K):
        return metric
    raise KeyError(f"no per-query column for {metric!r}")


def _check_bootstrap(values, n_resamples: int, confidence: float) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0:
        raise ValueError("bootstrap_ci of no values")
    if not np.all(np.isfinite(values)):
        raise ValueError("bootstrap_ci: values must be finite (drop undefined queries first)")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be ≥ 1, got {n_resamples}")
    return values


def _resampled_means(columns: Sequence[np.ndarray], n_resamples: int, seed: int) -> np.ndarray:
    """``(len(columns), n_resamples)`` bootstrap means of equal-length columns, all from the same resamples:
    those ``bootstrap_ci`` draws for one column (same generator, same block sizes), so each row equals it."""
    n = columns[0].size
    rng = np.random.default_rng(seed)
    block = max(1, (1 << 22) // n)  # ≤ 4M indices (32 MB) at a time
    means = np.empty((len(columns), n_resamples))
    for start in range(0, n_resamples, block):
        stop = min(start + block, n_resamples)
        draw = rng.integers(0, n, size=(stop - start, n))
        for row, values in enumerate(columns):
            means[row, start:stop] = values[draw].mean(axis=1)
    return means


def _interval(means: np.ndarray, confidence: float) -> tuple[float, float]:
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return float(low), float(high)


def bootstrap_ci(
    values: Sequence[float] | np.ndarray, n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of the mean of ``values`` (one value per query).

    ``n_resamples`` resamples of ``len(values)`` values drawn with replacement by
    ``numpy.random.default_rng(seed)``; the interval is the ((1-confidence)/2, (1+confidence)/2) quantiles
    (numpy's default linear interpolation) of the resampled means. Deterministic for a given seed; a
    constant vector (including a single value) gives ``(c, c)``. Memory is bounded by drawing resamples in
    blocks. Raises ``ValueError`` on empty input or non-finite values.
    """
    values = _check_bootstrap(values, n_resamples, confidence)
    if np.all(values == values[0]):
        return float(values[0]), float(values[0])
    return _interval(_resampled_means([values], n_resamples, seed)[0], confidence)


def ir_confidence_intervals(
    rows: Sequence[dict],
    ks: Iterable[int] = (1, 5, 10),
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, float]:
    """``{metric}_ci_low`` / ``{metric}_ci_high`` for every aggregate of ``aggregate_ir``, bootstrapped over
    the rows of ``per_query_ir`` (each metric with the same seed, so the same resamples for equal-length
    inputs). ``mean_first_relevant_rank`` uses only queries with a retrieved relevant item and is omitted
    if there are none. Each interval equals ``bootstrap_ci`` of that metric's column; the metrics with
    columns of one length share one draw of the resamples (vectorised: one gather per metric)."""
    ks = tuple(ks)
    names = list(AGGREGATE_OF) + [f"{name}_at_{k}" for k in ks for name in AT_K]
    columns: dict[str, np.ndarray] = {}
    for metric in names:
        column = per_query_column(metric)
        values = [row[column] for row in rows if row[column] is not None]
        if values:
            columns[metric] = _check_bootstrap(values, n_resamples, confidence)
    intervals: dict[str, tuple[float, float]] = {}
    by_length: dict[int, list[str]] = {}
    for metric, values in columns.items():
        if np.all(values == values[0]):
            intervals[metric] = (float(values[0]), float(values[0]))
        else:
            by_length.setdefault(values.size, []).append(metric)
    for group in by_length.values():
        means = _resampled_means([columns[m] for m in group], n_resamples, seed)
        for metric, row in zip(group, means):
            intervals[metric] = _interval(row, confidence)
    out: dict[str, float] = {}
    for metric in columns:  # in the aggregate order
        out[f"{metric}_ci_low"], out[f"{metric}_ci_high"] = intervals[metric]
    return out
