"""Our IR measures against a well-kept reference implementation, ``ranx`` (trec_eval-compatible; dev extra).

* random rankings with distinct scores: ``metrics.ir.per_query_ir`` and ``benchmark.ranking.ir_from_embeddings``
  equal ranx per query (MAP, MRR, hit@k, recall@k, precision@k, nDCG@k with linear gain);
* constructed rankings with ties: each ``--ties`` order (index, optimistic, pessimistic) is the ranking ranx scores
  when that order is spelled out as distinct scores, and ``average`` equals the mean of the measures over every
  order of the tied references (brute force);
* a byte-identical duplicate reference marked relevant.
"""

import itertools
import math

import numpy as np
import pytest

from benchmark.ranking import ir_from_embeddings, l2_normalise
from metrics.ir import per_query_ir

ranx = pytest.importorskip("ranx", reason="ranx (the dev extra) is the reference implementation")

KS = (1, 3, 5)
RANX_NAMES = {"average_precision": "map", "reciprocal_rank": "mrr"}
for _k in KS:
    for _name in ("hit_rate", "recall", "precision", "ndcg"):
        RANX_NAMES[f"{_name}_at_{_k}"] = f"{_name}@{_k}"


def ranx_rows(rankings: dict, relevance: dict) -> dict:
    """ranx's per-query values of every measure, for rankings given best first (scores = descending ranks)."""
    qrels = ranx.Qrels({q: {d: int(g) for d, g in rel.items()} for q, rel in relevance.items()})
    run = ranx.Run({q: {d: float(len(r) - i) for i, d in enumerate(r)} for q, r in rankings.items()})
    values = ranx.evaluate(qrels, run, list(RANX_NAMES.values()), return_mean=False, make_comparable=True)
    order = list(qrels.keys())
    return {q: {ours: float(values[name][i]) for ours, name in RANX_NAMES.items()} for i, q in enumerate(order)}


def assert_rows_match(rows: list[dict], expected: dict) -> None:
    assert len(rows) == len(expected)
    for row in rows:
        for ours in RANX_NAMES:
            assert row[ours] == pytest.approx(expected[row["query"]][ours], abs=1e-9), (row["query"], ours)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_rankings_equal_ranx(seed):
    rng = np.random.default_rng(seed)
    docs = [f"d{i:02d}" for i in range(30)]
    rankings, relevance = {}, {}
    for q in range(25):
        ranking = list(rng.permutation(docs)[: rng.integers(5, 31)])  # truncated rankings too
        chosen = rng.choice(docs, size=rng.integers(1, 6), replace=False)
        relevance[f"q{q}"] = {d: int(rng.integers(1, 4)) for d in chosen}  # graded
        rankings[f"q{q}"] = ranking
    assert_rows_match(per_query_ir(rankings, relevance, KS), ranx_rows(rankings, relevance))


@pytest.mark.parametrize("seed", [0, 1])
def test_ir_from_embeddings_equals_ranx_without_ties(seed):
    rng = np.random.default_rng(seed)
    refs = rng.standard_normal((60, 8)).astype(np.float32)
    targets = rng.standard_normal((20, 8)).astype(np.float32)
    keys = [f"r{i:02d}" for i in range(len(refs))]
    relevance = [
        {keys[i]: int(rng.integers(1, 3)) for i in rng.choice(60, rng.integers(1, 5), replace=False)} for _ in targets
    ]
    names = [f"t{i}" for i in range(len(targets))]
    sims = l2_normalise(targets) @ l2_normalise(refs).T
    rankings = {n: [keys[j] for j in np.argsort(-row, kind="stable")] for n, row in zip(names, sims)}
    for ties in ("average", "index", "optimistic", "pessimistic"):  # no ties: every convention is the same
        rows = ir_from_embeddings(targets, refs, relevance, None, KS, ref_keys=keys, queries=names, ties=ties)
        assert_rows_match(rows, ranx_rows(rankings, dict(zip(names, relevance))))


def _tied_library(seed: int):
    """One-hot queries over refs drawn from a few distinct rows (duplicated): every similarity is one stored
    float32 entry of a normalised reference, so equal rows tie exactly, and different rows can tie too."""
    rng = np.random.default_rng(seed)
    distinct = rng.integers(0, 3, size=(4, 4)).astype(np.float32) + np.eye(4, dtype=np.float32)
    refs = distinct[rng.integers(0, 4, size=9)]
    queries = np.eye(4, dtype=np.float32)[rng.integers(0, 4, size=6)]
    sims = l2_normalise(queries) @ l2_normalise(refs).T
    relevance = [
        {int(r): int(rng.integers(1, 3)) for r in rng.choice(9, size=rng.integers(1, 4), replace=False)}
        for _ in queries
    ]
    exclude = [set(rng.choice(9, size=rng.integers(0, 2), replace=False).tolist()) for _ in queries]
    return queries, refs, sims, relevance, exclude


def _ordered(row: np.ndarray, excluded: set, key) -> list[int]:
    candidates = [j for j in range(len(row)) if j not in excluded]
    return sorted(candidates, key=lambda j: (-row[j], key(j)))


@pytest.mark.parametrize("seed", range(6))
def test_tie_conventions_equal_ranx_on_the_spelled_out_order(seed):
    queries, refs, sims, relevance, exclude = _tied_library(seed)
    assert any(len(set(row.tolist())) < len(row) for row in sims)  # there are ties
    conventions = {
        "index": lambda rel: lambda j: j,
        "optimistic": lambda rel: lambda j: (-rel.get(j, 0), j),
        "pessimistic": lambda rel: lambda j: (rel.get(j, 0), j) if rel.get(j, 0) else (-1, j),
    }
    for ties, key in conventions.items():
        rankings = {i: _ordered(row, exclude[i], key(relevance[i])) for i, row in enumerate(sims)}
        expected = ranx_rows(
            {str(q): [str(d) for d in r] for q, r in rankings.items()},
            {str(q): {str(d): g for d, g in rel.items()} for q, rel in enumerate(relevance)},
        )
        rows = ir_from_embeddings(queries, refs, relevance, exclude, KS, ties=ties)
        assert_rows_match([{**row, "query": str(row["query"])} for row in rows], expected)


@pytest.mark.parametrize("seed", range(6))
def test_average_ties_equal_the_mean_over_every_order(seed):
    queries, refs, sims, relevance, exclude = _tied_library(seed)
    rows = ir_from_embeddings(queries, refs, relevance, exclude, KS, ties="average")
    for row in rows:
        i = row["query"]
        ranking = _ordered(sims[i], exclude[i], lambda j: j)
        groups = [list(g) for _, g in itertools.groupby(ranking, key=lambda j: sims[i, j])]
        orders = list(itertools.product(*(itertools.permutations(g) for g in groups)))
        assert len(orders) <= 50_000
        values = [per_query_ir({i: [d for g in order for d in g]}, {i: relevance[i]}, KS)[0] for order in orders]
        for name in (*RANX_NAMES, "first_relevant_rank"):
            found = [v[name] for v in values]
            if name == "first_relevant_rank":
                if None in found:
                    assert all(f is None for f in found) and row[name] is None
                    continue
            assert row[name] == pytest.approx(float(np.mean(found)), abs=1e-12), (i, name)


def test_byte_identical_duplicate_marked_relevant():
    """Reference 1 is a byte-identical copy of reference 0; only the copy at the higher index is marked relevant."""
    refs = np.array([[1.0, 0.2, 0.0], [1.0, 0.2, 0.0], [0.0, 1.0, 0.0]], dtype=np.float32)
    query = np.array([[0.9, 0.3, 0.1]], dtype=np.float32)
    sims = l2_normalise(query) @ l2_normalise(refs).T
    assert sims[0, 0] == sims[0, 1] > sims[0, 2]
    relevance = [{1: 1.0}]
    got = {
        t: ir_from_embeddings(query, refs, relevance, None, (1,), ties=t)[0]
        for t in ("index", "optimistic", "pessimistic", "average")
    }
    assert got["index"]["reciprocal_rank"] == 0.5 and got["index"]["hit_rate_at_1"] == 0.0
    assert got["pessimistic"]["reciprocal_rank"] == 0.5
    assert got["optimistic"]["reciprocal_rank"] == 1.0 and got["optimistic"]["hit_rate_at_1"] == 1.0
    assert got["average"]["reciprocal_rank"] == pytest.approx(0.75)
    assert got["average"]["average_precision"] == pytest.approx(0.75)
    assert got["average"]["hit_rate_at_1"] == pytest.approx(0.5)
    assert got["average"]["first_relevant_rank"] == pytest.approx(1.5)
    assert got["average"]["ndcg_at_1"] == pytest.approx(0.5)
    # and the order of the files does not matter under average (it does under index)
    swapped = ir_from_embeddings(query, refs, [{0: 1.0}], None, (1,), ties="average")[0]
    assert swapped["reciprocal_rank"] == got["average"]["reciprocal_rank"]
    assert ir_from_embeddings(query, refs, [{0: 1.0}], None, (1,), ties="index")[0]["reciprocal_rank"] == 1.0
    assert math.isclose(got["average"]["recall_at_1"], 0.5)
