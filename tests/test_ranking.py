"""Exact cosine retrieval (benchmark/ranking.py): top-k, counted ranks of relevant references, IR from embeddings.

The torch-backed ``top_k`` is checked against the previous numpy implementation, and ``relevant_ranks`` /
``ir_from_embeddings`` against ``full_ranking`` + the list-based ``per_query_ir`` (both kept as the references in
tests/reference_ranking.py).
"""

import subprocess
import sys

import numpy as np
import pytest
from reference_ranking import full_ranking
from reference_ranking import l2_normalise as reference_l2_normalise
from reference_ranking import reference_top_k as _reference_top_k

from benchmark import ranking
from benchmark.ranking import (
    cosine_matrix,
    ir_from_embeddings,
    l2_normalise,
    relevant_ranks,
    top_k,
)
from encoders import pretrained
from metrics.ir import per_query_ir


def test_top_k_orders_by_cosine_and_returns_similarities():
    refs = np.array([[1, 0], [0, 1], [1, 1], [-1, 0]], dtype=np.float32)
    queries = np.array([[2, 0.1]], dtype=np.float32)
    idx, sims = top_k(queries, refs, 3)
    assert idx.tolist() == [[0, 2, 1]]
    expected = cosine_matrix(queries, refs)[0, [0, 2, 1]]
    np.testing.assert_allclose(sims[0], expected, rtol=1e-6)


def test_ties_are_broken_by_reference_order():
    refs = np.array([[1, 0], [0, 1], [1, 0], [1, 0], [0, 1]], dtype=np.float32)
    queries = np.array([[1, 0], [0, 1]], dtype=np.float32)
    idx, _ = top_k(queries, refs, 2)
    assert idx.tolist() == [[0, 2], [1, 4]]  # three refs tie at the cut for query 0: lowest indices win
    idx_all, _ = top_k(queries, refs, 5)
    assert idx_all.tolist() == [[0, 2, 3, 1, 4], [1, 4, 0, 2, 3]]


def test_k_larger_than_library_returns_everything():
    refs = np.eye(3, dtype=np.float32)
    idx, sims = top_k(np.ones((1, 3), dtype=np.float32), refs, 10)
    assert idx.shape == (1, 3)
    assert sorted(idx[0].tolist()) == [0, 1, 2]


def test_self_matches_are_excluded():
    refs = np.array([[1, 0], [0.9, 0.1], [0, 1]], dtype=np.float32)
    idx, sims = top_k(refs[:1], refs, 2, exclude=[{0}])
    assert idx.tolist() == [[1, 2]]
    # with fewer candidates than k the empty slots are explicit (-1 / NaN), never a fake match
    idx, sims = top_k(refs[:1], refs, 3, exclude=[{0}])
    assert idx.tolist() == [[1, 2, -1]]
    assert np.isnan(sims[0, 2])
    assert full_ranking(refs[:1], refs, exclude=[{0}]) == [[1, 2]]


def test_matches_brute_force_on_random_data():
    rng = np.random.default_rng(0)
    refs, queries = rng.standard_normal((500, 16)), rng.standard_normal((300, 16))
    idx, sims = top_k(queries, refs, 7)
    brute = cosine_matrix(queries, refs)
    expected = np.argsort(-brute, axis=1, kind="stable")[:, :7]
    assert (idx == expected).all()
    np.testing.assert_allclose(sims, np.take_along_axis(brute, expected, 1), rtol=1e-5)


def test_zero_vectors_do_not_produce_nan():
    x = np.array([[0, 0], [1, 0]], dtype=np.float32)
    assert np.isfinite(l2_normalise(x)).all()
    _, sims = top_k(x[:1], x, 2)
    assert np.isfinite(sims).all()


def test_chunked_normalisation_equals_the_whole_array_formula(monkeypatch):
    rng = np.random.default_rng(4)
    for n, dim in ((1, 1), (5, 3), (3000, 12), (2500, 512)):
        x = (rng.standard_normal((n, dim)) * rng.uniform(1e-3, 1e3, (n, 1))).astype(np.float32)
        x[::7] = 0  # all-zero rows stay zero
        np.testing.assert_array_equal(l2_normalise(x), reference_l2_normalise(x))
        monkeypatch.setattr(ranking, "_NORM_ROWS", 7)
        np.testing.assert_array_equal(l2_normalise(x, check_finite=True), reference_l2_normalise(x))
        monkeypatch.setattr(ranking, "_PARALLEL_VALUES", 0)  # chunks shared by threads
        monkeypatch.setattr(pretrained, "available_cores", lambda: 3)
        np.testing.assert_array_equal(l2_normalise(x, check_finite=True), reference_l2_normalise(x))
        if n > 1:
            bad = x.copy()
            bad[-1, 0] = np.nan  # in the last thread's share
            with pytest.raises(ValueError, match="finite"):
                l2_normalise(bad, check_finite=True)
        monkeypatch.undo()
    huge = np.array([[3e30, 4e30], [1, 0]], dtype=np.float32)  # finite, but the norm overflows: not refused
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(l2_normalise(huge, check_finite=True), reference_l2_normalise(huge))
    for bad in (np.nan, np.inf, -np.inf):
        with pytest.raises(ValueError, match="finite"):
            l2_normalise(np.array([[1, 0], [0, bad]], dtype=np.float32), check_finite=True)


@pytest.mark.parametrize("kind", ["plain", "dup", "coarse"])
def test_long_rows_ranked_through_group_maxima_equal_the_stable_sort(kind, monkeypatch):
    """``_rank_rows`` of long rows narrows them to the groups of columns with the largest maxima: the same indices,
    in the same order, as a stable sort of whole rows — ties at the cut, rows of equal maxima (all-zero similarities,
    copies of one reference), excluded (-inf) references and a tail of columns after the last whole group
    included."""
    monkeypatch.setattr(ranking, "_NUMPY_SORT_CELLS", -1)  # the torch path, whatever is loaded
    grouped = []
    real = ranking._rank_rows_grouped
    monkeypatch.setattr(ranking, "_rank_rows_grouped", lambda t, k: grouped.append(k) or real(t, k))
    refs, queries, rng = _library(5, kind, n_refs=6007, n_queries=40, dim=6)
    sims = l2_normalise(queries) @ l2_normalise(refs).T
    sims[0] = 0.0  # every group maximum ties
    sims[1] = -np.inf  # one reference left, the rest excluded
    sims[1, 4321] = 0.5
    sims[2, rng.integers(0, 6007, 3000)] = -np.inf
    sims[3, 6000:] = 2.0  # the largest values in the tail only
    sims[4, ::500] = 1.5  # twelve equal values, one per group or so: the cut falls inside that tie
    for k in (1, 3, 7, 10):
        got = ranking._rank_rows(sims.copy(), k)
        np.testing.assert_array_equal(got, ranking._rank_rows_numpy(sims.copy(), k), err_msg=f"k={k}")
    assert grouped == [1, 3, 7, 10]


def test_k_must_be_positive():
    with pytest.raises(ValueError):
        top_k(np.ones((1, 2)), np.ones((1, 2)), 0)


# --- against the previous implementation (tests/reference_ranking.py) ----------------------------------------


def _library(seed: int, kind: str, n_refs: int = 900, n_queries: int = 300, dim: int = 12):
    """Random embeddings; ``dup``: half the references are copies of others (exact ties), ``coarse``: small
    integer vectors (many exact ties), ``plain``: Gaussian."""
    rng = np.random.default_rng(seed)
    refs = rng.standard_normal((n_refs, dim)).astype(np.float32)
    queries = rng.standard_normal((n_queries, dim)).astype(np.float32)
    if kind == "dup":
        refs[rng.integers(0, n_refs, n_refs // 2)] = refs[rng.integers(0, n_refs, n_refs // 2)]
        queries[: n_queries // 3] = refs[rng.integers(0, n_refs, n_queries // 3)]
    elif kind == "coarse":
        refs, queries = np.round(refs), np.round(queries)
    return refs, queries, rng


@pytest.mark.parametrize("kind", ["plain", "dup", "coarse"])
@pytest.mark.parametrize("with_exclusions", [False, True])
def test_top_k_equals_the_reference_implementation(kind, with_exclusions):
    refs, queries, rng = _library(3, kind)
    exclude = (
        [set(rng.integers(0, len(refs), rng.integers(0, 5)).tolist()) for _ in queries] if with_exclusions else None
    )
    for k in (1, 2, 5, 10, 64, 200, 224, 225, 899, 900, 1000):  # topk path, full-sort path (> n/4), k ≥ n
        expected = _reference_top_k(queries, refs, k, exclude)
        got = top_k(queries, refs, k, exclude)
        np.testing.assert_array_equal(got[0], expected[0], err_msg=f"k={k}")
        np.testing.assert_array_equal(got[1], expected[1], err_msg=f"k={k}")  # NaN == NaN here


def test_ties_straddling_the_cut_take_the_lowest_indices():
    # 40 identical references at positions 3, 7, 11, …: every query's cut falls inside that tie
    rng = np.random.default_rng(0)
    refs = rng.standard_normal((200, 8)).astype(np.float32) * 0.01
    best = rng.standard_normal(8).astype(np.float32)
    refs[3::4][:40] = best
    queries = np.stack([best, best * 2, best + 1e-3 * rng.standard_normal(8).astype(np.float32)])
    idx, sims = top_k(queries, refs, 10)
    expected = _reference_top_k(queries, refs, 10)
    np.testing.assert_array_equal(idx, expected[0])
    assert idx[0].tolist() == list(range(3, 43, 4))  # the ten lowest-index copies, in index order
    assert np.all(sims[0] == sims[0, 0])


def test_fewer_candidates_than_k_are_padded():
    refs = np.eye(4, dtype=np.float32)
    idx, sims = top_k(refs, refs, 3, exclude=[{0, 1}, {0, 1, 2}, set(), {0, 1, 2, 3}])
    assert idx.tolist() == [[2, 3, -1], [3, -1, -1], [2, 0, 1], [-1, -1, -1]]
    assert np.isnan(sims[1, 1:]).all() and np.isnan(sims[3]).all() and np.isfinite(sims[2]).all()
    # same through the topk path (k well below n / 4)
    refs = np.random.default_rng(1).standard_normal((100, 4)).astype(np.float32)
    exclude = [set(range(98)), set(range(100))]
    idx, sims = top_k(refs[:2], refs, 3, exclude)
    assert idx[0, 2] == -1 and set(idx[0, :2]) == {98, 99} and idx[1].tolist() == [-1, -1, -1]
    np.testing.assert_array_equal(idx, _reference_top_k(refs[:2], refs, 3, exclude)[0])


def test_non_finite_embeddings_are_refused():
    refs = np.eye(3, dtype=np.float32)
    bad = np.array([[np.inf, 0, 0]], dtype=np.float32)
    for queries, library in ((bad, refs), (refs, np.vstack([refs, bad]))):
        with pytest.raises(ValueError, match="finite"):
            top_k(queries, library, 2)
        with pytest.raises(ValueError, match="finite"):
            relevant_ranks(queries, library, [[0]] * len(queries))


def test_import_does_not_load_torch():
    code = "import sys, benchmark.ranking; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# --- ranks of relevant references: counted, never sorted --------------------------------------------------------


def _brute_force_ranks(queries, refs, relevant, exclude):
    rankings = full_ranking(queries, refs, exclude)
    return [
        {ref: (ranking_.index(ref) + 1 if ref in ranking_ else None) for ref in rel}
        for ranking_, rel in zip(rankings, relevant)
    ]


@pytest.mark.parametrize("kind", ["plain", "dup", "coarse"])
def test_relevant_ranks_equal_positions_in_the_full_ranking(kind, monkeypatch):
    refs, queries, rng = _library(5, kind, n_refs=400, n_queries=90)
    exclude = [set(rng.integers(0, len(refs), rng.integers(0, 4)).tolist()) for _ in queries]
    relevant = [
        set(rng.integers(0, len(refs), rng.integers(0, 6)).tolist()) | (e if i % 3 == 0 else set())
        for i, e in enumerate(exclude)
    ]  # some relevant references are excluded for their query
    expected = _brute_force_ranks(queries, refs, relevant, exclude)
    assert relevant_ranks(queries, refs, relevant, exclude) == expected
    assert any(None in r.values() for r in expected)
    # blocks of queries and chunks of rank counting do not change anything
    monkeypatch.setattr(ranking, "BLOCK_QUERIES", 7)
    monkeypatch.setattr(ranking, "BLOCK_CELLS", 0)  # blocks of exactly BLOCK_QUERIES queries
    monkeypatch.setattr(ranking, "_RANK_CELLS", 1000)
    assert relevant_ranks(queries, refs, relevant, exclude) == _brute_force_ranks(queries, refs, relevant, exclude)


def test_relevant_ranks_inputs():
    refs = np.eye(3, dtype=np.float32)
    # the keys of a mapping, whatever the grade; ties by index
    assert relevant_ranks(refs[:1], refs, [{2: 1.0, 0: 0.0}]) == [{2: 3, 0: 1}]
    assert relevant_ranks(refs[:2], refs, [[], [1]]) == [{}, {1: 1}]
    with pytest.raises(ValueError, match="indices"):
        relevant_ranks(refs[:1], refs, [[3]])
    with pytest.raises(ValueError, match="entries"):
        relevant_ranks(refs[:2], refs, [[0]])


# --- IR rows straight from embeddings ---------------------------------------------------------------------------


def _demo_like(seed: int, n_pieces: int = 30, versions: int = 4, dim: int = 16):
    """The demo set's shape: pieces × versions (one group per piece), every version a reference and the first
    versions also targets (so each target excludes itself); relevant = the other versions of its piece."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_pieces, dim))
    refs = np.repeat(centres, versions, axis=0) + 0.8 * rng.standard_normal((n_pieces * versions, dim))
    refs = refs.astype(np.float32)
    refs[5] = refs[4]  # one duplicated file: an exact tie
    target_ids = list(range(0, n_pieces * versions, versions)) + [4, 5]
    targets = refs[target_ids]
    exclude = [{t} for t in target_ids]
    relevance = [
        {r: 1.0 for r in range(t // versions * versions, (t // versions + 1) * versions) if r != t} for t in target_ids
    ]
    return targets, refs, exclude, relevance


@pytest.mark.parametrize("seed", [0, 1])
def test_ir_from_embeddings_equals_per_query_ir_on_full_rankings(seed):
    targets, refs, exclude, relevance = _demo_like(seed)
    ks = (1, 3, 5, 10)
    rankings = dict(enumerate(full_ranking(targets, refs, exclude)))
    expected = per_query_ir(rankings, dict(enumerate(relevance)), ks)
    assert ir_from_embeddings(targets, refs, relevance, exclude, ks) == expected  # bit-identical values


@pytest.mark.parametrize("kind", ["plain", "dup", "coarse"])
def test_ir_from_embeddings_graded_relevance_and_ties(kind):
    refs, queries, rng = _library(7, kind, n_refs=300, n_queries=120)
    exclude = [set(rng.integers(0, len(refs), rng.integers(0, 3)).tolist()) for _ in queries]
    relevance = []
    for _ in queries:
        chosen = rng.choice(len(refs), size=rng.integers(0, 9), replace=False)
        relevance.append({int(r): float(rng.choice([0, 0.5, 1, 2, 3])) for r in chosen})
    ks = (1, 5, 10, 50)
    rankings = dict(enumerate(full_ranking(queries, refs, exclude)))
    expected = per_query_ir(rankings, dict(enumerate(relevance)), ks)
    got = ir_from_embeddings(queries, refs, relevance, exclude, ks)
    assert got == expected
    assert len(got) < len(queries)  # some queries have no relevant reference (none or grade 0 only): no row


def test_ir_from_embeddings_with_reference_names():
    targets, refs, exclude, relevance = _demo_like(2, n_pieces=6)
    keys = [f"ref{i:03d}.wav" for i in range(len(refs))]
    named = [{keys[r]: g for r, g in rel.items()} for rel in relevance]
    named[0]["never-embedded.wav"] = 1.0  # relevant, but not in the library: counted in R, never retrieved
    names = [f"target{i}" for i in range(len(targets))]
    rankings = {name: [keys[i] for i in row] for name, row in zip(names, full_ranking(targets, refs, exclude))}
    expected = per_query_ir(rankings, dict(zip(names, named)), (1, 5))
    got = ir_from_embeddings(targets, refs, named, exclude, (1, 5), ref_keys=keys, queries=names)
    assert got == expected
    assert got[0]["query"] == "target0" and got[0]["n_relevant"] == 4
