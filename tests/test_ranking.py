import numpy as np
import pytest

from benchmark.ranking import cosine_matrix, full_ranking, l2_normalise, top_k


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


def test_k_must_be_positive():
    with pytest.raises(ValueError):
        top_k(np.ones((1, 2)), np.ones((1, 2)), 0)
