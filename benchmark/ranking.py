"""Exact cosine retrieval: L2-normalised embeddings, blocked matrix products, deterministic ties.

Ties in similarity are broken by reference order (lower index first), so results never depend on the
sort algorithm. A query's excluded references (itself, when refs and targets overlap) never appear.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

BLOCK_QUERIES = 256


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length; all-zero rows stay zero (cosine 0 with everything)."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def cosine_matrix(queries: np.ndarray, refs: np.ndarray) -> np.ndarray:
    """(n_queries, n_refs) cosine similarities."""
    return l2_normalise(queries) @ l2_normalise(refs).T


def _rank_rows(sims: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest values per row, by decreasing value then increasing index."""
    n = sims.shape[1]
    if k >= n:
        return np.argsort(-sims, axis=1, kind="stable")[:, :k]
    candidates = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    kth = np.take_along_axis(sims, candidates, axis=1).min(axis=1)
    order = np.empty((sims.shape[0], k), dtype=np.int64)
    for row in range(sims.shape[0]):
        if np.count_nonzero(sims[row] >= kth[row]) > k:  # ties straddle the cut: rank the whole row
            order[row] = np.argsort(-sims[row], kind="stable")[:k]
        else:
            cand = candidates[row]
            order[row] = cand[np.lexsort((cand, -sims[row, cand]))]
    return order


def top_k(queries: np.ndarray, refs: np.ndarray, k: int,
          exclude: Sequence[set[int]] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-k references per query by cosine similarity.

    Returns ``(indices, similarities)``, both ``(n_queries, k')`` with ``k' = min(k, n_refs - max excluded)``;
    where a query has fewer candidates than ``k'`` (many exclusions), missing slots hold index -1 and NaN.
    """
    if k < 1:
        raise ValueError("k must be at least 1")
    q = l2_normalise(queries)
    r = l2_normalise(refs)
    n_refs = r.shape[0]
    k_eff = min(k, n_refs)
    indices = np.full((q.shape[0], k_eff), -1, dtype=np.int64)
    sims_out = np.full((q.shape[0], k_eff), np.nan, dtype=np.float32)
    for start in range(0, q.shape[0], BLOCK_QUERIES):
        sims = q[start:start + BLOCK_QUERIES] @ r.T
        if exclude is not None:
            for offset, excluded in enumerate(exclude[start:start + BLOCK_QUERIES]):
                if excluded:
                    sims[offset, list(excluded)] = -np.inf
        order = _rank_rows(sims, k_eff)
        values = np.take_along_axis(sims, order, axis=1)
        valid = np.isfinite(values)
        indices[start:start + len(order)] = np.where(valid, order, -1)
        sims_out[start:start + len(order)] = np.where(valid, values, np.nan)
    return indices, sims_out


def full_ranking(queries: np.ndarray, refs: np.ndarray,
                 exclude: Sequence[set[int]] | None = None) -> list[list[int]]:
    """Every reference ranked per query (for IR metrics over the whole ranking), excluded ones removed."""
    indices, _ = top_k(queries, refs, refs.shape[0], exclude)
    return [[int(i) for i in row if i >= 0] for row in indices]
