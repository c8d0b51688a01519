"""The previous ranking and IR implementations, kept as the references the fast paths are tested against.

* ``l2_normalise``: the whole-array normalisation that ``benchmark.ranking.l2_normalise`` computes in chunks;
* ``reference_top_k``: the numpy top-k (argpartition, then a stable sort of the rows whose cut is tied) that
  ``benchmark.ranking.top_k`` replaced;
* ``full_ranking``: every reference ranked per query as Python lists (sorted whole rows) — what the evaluate
  stage fed to ``metrics.ir.per_query_ir`` before it switched to ``ranking.ir_from_embeddings``;
* ``reference_retrieval_metrics``: that whole previous evaluate-stage IR path (rankings → per-query rows →
  means and bootstrap CIs), for comparing ``benchmark.evaluation.retrieval_metrics`` with it.

O(n_queries × n_refs) Python objects: for test-sized libraries (and the subsample of ``perf/ir_scale.py``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from benchmark import ranking
from metrics.ir import aggregate_ir, ir_confidence_intervals, per_query_ir


def l2_normalise(x) -> np.ndarray:
    """Rows scaled to unit length, all-zero rows kept zero: the whole-array formula."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def _reference_rank_rows(sims: np.ndarray, k: int) -> np.ndarray:
    n = sims.shape[1]
    if k >= n:
        return np.argsort(-sims, axis=1, kind="stable")[:, :k]
    candidates = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    kth = np.take_along_axis(sims, candidates, axis=1).min(axis=1)
    order = np.empty((sims.shape[0], k), dtype=np.int64)
    for row in range(sims.shape[0]):
        if np.count_nonzero(sims[row] >= kth[row]) > k:
            order[row] = np.argsort(-sims[row], kind="stable")[:k]
        else:
            cand = candidates[row]
            order[row] = cand[np.lexsort((cand, -sims[row, cand]))]
    return order


def reference_top_k(queries, refs, k, exclude=None):
    """``(indices, similarities)`` as ``benchmark.ranking.top_k`` documents them, by numpy sorting. The blocks of
    queries are ``ranking.block_queries(n_refs)`` long, as there: BLAS rounds a product's last bit by its blocking,
    so the same blocks give the same float32 similarities."""
    q, r = l2_normalise(queries), l2_normalise(refs)
    block = ranking.block_queries(len(refs))
    k_eff = min(k, r.shape[0])
    indices = np.full((q.shape[0], k_eff), -1, dtype=np.int64)
    sims_out = np.full((q.shape[0], k_eff), np.nan, dtype=np.float32)
    for start in range(0, q.shape[0], block):
        sims = q[start : start + block] @ r.T
        if exclude is not None:
            for offset, excluded in enumerate(exclude[start : start + block]):
                if excluded:
                    sims[offset, list(excluded)] = -np.inf
        order = _reference_rank_rows(sims, k_eff)
        values = np.take_along_axis(sims, order, axis=1)
        valid = np.isfinite(values)
        indices[start : start + len(order)] = np.where(valid, order, -1)
        sims_out[start : start + len(order)] = np.where(valid, values, np.nan)
    return indices, sims_out


def full_ranking(queries: np.ndarray, refs: np.ndarray, exclude=None) -> list[list[int]]:
    """Every reference ranked per query (similarity descending, then index ascending), excluded ones removed."""
    indices, _ = reference_top_k(queries, refs, refs.shape[0], exclude)
    return [[int(i) for i in row if i >= 0] for row in indices]


def reference_retrieval_metrics(
    target_matrix: np.ndarray,
    ref_matrix: np.ndarray,
    ref_keys: list[str],
    exclude,
    target_keys: list[str],
    relevance: dict[str, dict[str, float]],
    k: int,
) -> tuple[dict[str, float], pd.DataFrame]:
    """The evaluate stage's IR numbers as it computed them before: ``full_ranking`` of every target as lists of
    reference names, ``per_query_ir``, ``aggregate_ir`` and ``ir_confidence_intervals``."""
    rankings = {
        t: [ref_keys[i] for i in row] for t, row in zip(target_keys, full_ranking(target_matrix, ref_matrix, exclude))
    }
    relevance = {t: rel for t, rel in relevance.items() if t in rankings}
    ks = tuple(sorted({1, k, 10}))
    rows = per_query_ir(rankings, relevance, ks=ks)
    values = {**aggregate_ir(rows, ks), **ir_confidence_intervals(rows, ks)} if rows else {}
    values["n_queries_without_relevant"] = len(rankings) - len(rows)
    return values, pd.DataFrame(rows)
