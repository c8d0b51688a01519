"""The retrieve stage's index: exact blocked top-k (``ranking.top_k``) or a FAISS index (``--index faiss``).

FAISS indexes hold the L2-normalised references and search by inner product (= cosine):

* ``flat``: ``IndexFlatIP``, exhaustive — the same neighbours as exact search (similarities within float32
  rounding: FAISS computes its own dot products);
* ``ivf``: ``IndexIVFFlat`` — k-means into ``nlist`` lists (default 4·√n, at most n/39 so that every list has the
  39 training points FAISS asks for), ``nprobe`` lists searched per query;
* ``hnsw``: ``IndexHNSWFlat`` — a navigable small-world graph, ``M`` neighbours per node, ``efSearch`` search depth.

An approximation is never silent: every FAISS search also measures ``index_recall_at_10``, the fraction of the
exact top-10 (``ranking.top_k``) that the index returns, on a seeded sample of ``RECALL_SAMPLE`` queries (all of
them when there are fewer), and logs its build and search times. Self-matches are excluded as in exact search:
the index is asked for k + (the most exclusions of any query) neighbours, the excluded ones are dropped, and the
rest ordered by (similarity descending, reference index ascending), exact search's tie rule.

Ground-truth IR metrics never use the index: they are counted from the embeddings (``ranking.ir_from_embeddings``),
exactly; the index serves the top-k table and the pair metrics scored on it. faiss is imported on first use.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from metrics.base import Measure

from .config import IndexOptions
from .extras import import_extra, installed
from .ranking import l2_normalise, top_k

#: queries in the recall sample (≥ 200, as promised; one block of exact search)
RECALL_SAMPLE = 256
RECALL_K = 10
RECALL_SEED = 0
#: FAISS wants at least this many training points per IVF list
IVF_MIN_POINTS_PER_LIST = 39
#: HNSW build depth (FAISS's default): deeper builds a better graph, slowly (128: 1.5x the build time here)
HNSW_EF_CONSTRUCTION = 40
FAISS_EXTRA = 'pip install -e ".[faiss]"'

#: the numbers a FAISS retrieval logs (``index_build_seconds`` / ``index_search_seconds`` fall under
#: ``{stage}_seconds``, declared with the harness's own numbers)
MEASURES = (
    Measure(
        "index_recall_at_{k}",
        True,
        description="fraction of the exact top-k the ANN index returned, on a seeded sample of queries",
        section="index",
    ),
)
#: the param saying where the ground-truth IR metrics come from
IR_SOURCE = "exact: ranking.ir_from_embeddings on all embeddings (the index serves the top-k table only)"


class IndexUnavailable(RuntimeError):
    """``--index faiss`` without faiss installed: a user error (one line, exit 2)."""


def faiss_available() -> bool:
    return installed("faiss")


def _faiss():
    return import_extra(IndexUnavailable, f"--index faiss needs faiss ({FAISS_EXTRA})", "faiss")


@dataclass
class Retrieved:
    """Top-k per query, as ``ranking.top_k`` gives it, plus what the index logs."""

    indices: np.ndarray  # (n_queries, min(k, n_refs)), -1 where a query has fewer candidates
    sims: np.ndarray  # same shape, float32, NaN where indices is -1
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, object] = field(default_factory=dict)


def auto_nlist(n_refs: int) -> int:
    return max(1, min(int(4 * math.sqrt(n_refs)), n_refs // IVF_MIN_POINTS_PER_LIST))


def build(refs: np.ndarray, options: IndexOptions) -> tuple[object, dict[str, object]]:
    """A FAISS index of ``refs`` (normalised here) and the parameters it was built with (resolved)."""
    faiss = _faiss()
    x = np.ascontiguousarray(l2_normalise(refs, check_finite=True))
    n, dim = x.shape
    params: dict[str, object] = {}
    if options.faiss_type == "flat":
        index = faiss.IndexFlatIP(dim)
    elif options.faiss_type == "ivf":
        nlist = min(options.nlist, n) if options.nlist else auto_nlist(n)
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = 1234  # k-means is seeded: the same references give the same index
        index.train(x)
        index.nprobe = min(options.nprobe, nlist)
        params.update(faiss_nlist_used=nlist, faiss_nprobe_used=index.nprobe)
    else:
        index = faiss.IndexHNSWFlat(dim, options.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        index.hnsw.efSearch = options.ef_search
        params.update(faiss_ef_construction=index.hnsw.efConstruction)
    index.add(x)
    return index, params


def search(
    index, queries: np.ndarray, k: int, exclude: Sequence[set[int]] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k of ``queries`` (normalised here) in ``index``, excluded references removed, in exact search's order
    and shapes (``ranking.top_k``)."""
    n_refs = index.ntotal
    k_eff = min(k, n_refs)
    q = np.ascontiguousarray(l2_normalise(queries, check_finite=True))
    extra = max((len(e) for e in exclude if e), default=0) if exclude is not None else 0
    sims, found = index.search(q, min(k_eff + extra, n_refs))
    sims = sims.astype(np.float32, copy=True)
    invalid = found < 0
    if exclude is not None:
        for row, excluded in enumerate(exclude):
            if excluded:
                invalid[row] |= np.isin(found[row], list(excluded))
    sims[invalid] = -np.inf
    found = np.where(invalid, np.iinfo(np.int64).max, found)
    order = np.lexsort((found, -sims), axis=-1)[:, :k_eff]  # similarity descending, then index ascending
    sims = np.take_along_axis(sims, order, axis=1)
    found = np.take_along_axis(found, order, axis=1)
    valid = np.isfinite(sims)
    return np.where(valid, found, -1).astype(np.int64), np.where(valid, sims, np.nan).astype(np.float32)


def recall_sample(n_queries: int, size: int = RECALL_SAMPLE, seed: int = RECALL_SEED) -> np.ndarray:
    """The queries the recall is measured on: all of them, or a seeded sample of ``size``, in order."""
    if n_queries <= size:
        return np.arange(n_queries)
    return np.sort(np.random.default_rng(seed).choice(n_queries, size=size, replace=False))


def recall_at(approx: np.ndarray, exact: np.ndarray) -> float:
    """Mean over queries of |approx ∩ exact| / |exact| (slots holding -1 are not results); NaN with no query."""
    values = []
    for a, e in zip(approx, exact):
        truth = set(e[e >= 0].tolist())
        if truth:
            values.append(len(truth & set(a[a >= 0].tolist())) / len(truth))
    return float(np.mean(values)) if values else float("nan")


def index_recall(
    index, queries: np.ndarray, refs: np.ndarray, exclude: Sequence[set[int]] | None, k: int = RECALL_K
) -> float:
    """Recall@k of ``index`` against exact search, on ``recall_sample`` of the queries."""
    sample = recall_sample(len(queries))
    excluded = [exclude[i] for i in sample] if exclude is not None else None
    exact, _ = top_k(queries[sample], refs, k, excluded)
    approx, _ = search(index, queries[sample], k, excluded)
    return recall_at(approx, exact)


def retrieve(
    queries: np.ndarray,
    refs: np.ndarray,
    k: int,
    exclude: Sequence[set[int]] | None,
    options: IndexOptions,
) -> Retrieved:
    """The retrieve stage: top-k of every query, exactly or through the FAISS index ``options`` describes."""
    if options.kind == "exact":
        indices, sims = top_k(queries, refs, k, exclude)
        return Retrieved(indices, sims)
    tick = time.perf_counter()
    index, params = build(refs, options)
    build_seconds = time.perf_counter() - tick
    tick = time.perf_counter()
    indices, sims = search(index, queries, k, exclude)
    search_seconds = time.perf_counter() - tick
    recall = index_recall(index, queries, refs, exclude)
    metrics = {"index_build_seconds": build_seconds, "index_search_seconds": search_seconds}
    if math.isfinite(recall):
        metrics[f"index_recall_at_{RECALL_K}"] = recall
    params.update(index_recall_queries=len(recall_sample(len(queries))), ir_metrics_source=IR_SOURCE)
    return Retrieved(indices, sims, metrics, params)
