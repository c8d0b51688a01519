"""IR rows from ranks, at catalogue scale.

Every value ``metrics/ir.py`` defines depends only on the 1-based ranks of the relevant
items in the full ranking (and their grades), so ``per_query_from_ranks`` takes ``{id: rank}`` per query
instead of a ranking — e.g. from ``benchmark.ranking.relevant_ranks``, which counts them without sorting — and
gives *exactly* (bit for bit) the rows ``per_query_ir`` gives on the full rankings: vectorised over queries,
with the sums taken in the same order as the list-based functions (which stay the reference implementation).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence

import numpy as np

from .ir import Relevance, check_k, relevance_grades


def _sequential_sums(group: np.ndarray, position: np.ndarray, terms: np.ndarray, n_groups: int) -> np.ndarray:
    """Per group, ``0 + t_0 + t_1 + …`` with its terms added in ``position`` order, one position at a time for
    all groups at once: the order Python's ``sum`` adds them in, so the result is bit-identical to it.
    ``position`` must be unique within a group."""
    out = np.zeros(n_groups)
    if terms.size:
        order = np.argsort(position, kind="stable")
        bounds = np.searchsorted(position[order], np.arange(int(position.max()) + 2))
        for p in range(int(position.max()) + 1):
            sel = order[bounds[p] : bounds[p + 1]]
            out[group[sel]] += terms[sel]
    return out


def _check_rank(rank) -> int:
    if rank is None:
        return 0
    if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or rank < 0:
        raise ValueError(f"a rank must be a positive integer (or None / 0: not ranked), got {rank!r}")
    return int(rank)


def per_query_from_ranks(
    ranks: Sequence[Mapping[Hashable, int | None]],
    relevance: Sequence[Relevance],
    ks: Iterable[int] = (1, 5, 10),
    queries: Sequence[Hashable] | None = None,
) -> list[dict]:
    """``per_query_ir``'s rows — the same keys and bit-identical values — from the ranks of the relevant items
    instead of whole rankings.

    ``relevance[i]``: query ``i``'s relevant items, as in ``per_query_ir`` (ids, or ``id -> grade``).
    ``ranks[i]``: ``{id: 1-based rank in query i's full ranking}`` for its relevant items; an id that is
    missing, ``None`` or 0 is not in the ranking (never retrieved: contributes 0, still counted in R), extra
    ids are ignored. ``queries``: the ``"query"`` value of each row (default: the position ``i``). One row
    per query with ≥ 1 relevant item, in input order. Two relevant items at one rank raise ``ValueError``.

    ``benchmark.ranking.relevant_ranks`` computes ``ranks`` from embeddings without sorting (and
    ``benchmark.ranking.ir_from_embeddings`` does both steps). Cost: vectorised over queries; the loops are
    over the positions of a query's relevant items (≤ its largest R) and over ``ks``.
    """
    ks = tuple(check_k(k) for k in ks)
    if len(ranks) != len(relevance):
        raise ValueError(f"{len(ranks)} rank mappings for {len(relevance)} queries")
    if queries is None:
        queries = range(len(relevance))
    elif len(queries) != len(relevance):
        raise ValueError(f"{len(queries)} query names for {len(relevance)} queries")
    labels: list[Hashable] = []
    pair_query: list[int] = []
    pair_rank: list[int] = []
    pair_grade: list[float] = []
    for query, query_ranks, relevant in zip(queries, ranks, relevance):
        grades = relevance_grades(relevant)
        if not grades:
            continue
        pair_query += [len(labels)] * len(grades)
        pair_rank += [_check_rank(query_ranks.get(item)) for item in grades]
        pair_grade += grades.values()
        labels.append(query)
    return _rows_from_pairs(
        labels,
        np.array(pair_query, dtype=np.int64),
        np.array(pair_rank, dtype=np.int64),
        np.array(pair_grade, dtype=np.float64),
        ks,
    )


def _rows_from_pairs(
    labels: list[Hashable], query: np.ndarray, rank: np.ndarray, grade: np.ndarray, ks: tuple[int, ...]
) -> list[dict]:
    """The rows of ``per_query_from_ranks`` from one entry per (query, relevant item): the query's position in
    ``labels``, the item's rank (0: not ranked) and grade (> 0). Every query has ≥ 1 entry."""
    n = len(labels)
    n_relevant = np.bincount(query, minlength=n)
    found_key = np.where(rank > 0, rank, np.iinfo(np.int64).max)
    order = np.lexsort((found_key, query))  # per query: the ranked items by rank, then the unranked ones
    query, rank, grade = query[order], rank[order], grade[order]
    position = np.arange(query.size) - (np.cumsum(n_relevant) - n_relevant)[query]
    found = rank > 0
    clash = found[1:] & found[:-1] & (query[1:] == query[:-1]) & (rank[1:] == rank[:-1])
    if clash.any():
        i = int(np.argmax(clash))
        raise ValueError(f"query {labels[query[i]]!r}: two relevant items at rank {rank[i]}")
    f_query, f_rank, f_grade, f_pos = query[found], rank[found], grade[found], position[found]
    n_found = np.bincount(f_query, minlength=n)
    # precision at the rank of the i-th retrieved relevant item is i / rank; AP = their sum / R
    average_precision = _sequential_sums(f_query, f_pos, (f_pos + 1) / f_rank, n) / n_relevant
    first = np.zeros(n, dtype=np.int64)
    first[f_query[f_pos == 0]] = f_rank[f_pos == 0]
    reciprocal = np.where(n_found > 0, 1.0 / np.maximum(first, 1), 0.0)

    columns: dict[str, list] = {
        "n_relevant": n_relevant.tolist(),
        "average_precision": average_precision.tolist(),
        "reciprocal_rank": reciprocal.tolist(),
        "first_relevant_rank": [int(r) if r else None for r in first.tolist()],
    }
    log2 = np.array([0.0] + [math.log2(r + 1) for r in range(1, max(ks, default=0) + 1)])  # math's, as dcg_of's
    ideal = np.lexsort((-grade, query))  # per query: grades in decreasing order
    i_query, i_grade, i_pos = query[ideal], grade[ideal], position  # position: the same per-query layout
    for k in ks:
        in_k = f_rank <= k
        found_k = np.bincount(f_query[in_k], minlength=n)
        dcg = _sequential_sums(f_query[in_k], f_pos[in_k], f_grade[in_k] / log2[f_rank[in_k]], n)
        top = i_pos < k
        idcg = _sequential_sums(i_query[top], i_pos[top], i_grade[top] / log2[i_pos[top] + 1], n)
        columns[f"recall_at_{k}"] = (found_k / n_relevant).tolist()
        columns[f"hit_rate_at_{k}"] = (found_k > 0).astype(np.float64).tolist()
        columns[f"precision_at_{k}"] = (found_k / k).tolist()
        columns[f"ndcg_at_{k}"] = (dcg / idcg).tolist()
    names = list(columns)
    return [{"query": label, **{name: columns[name][i] for name in names}} for i, label in enumerate(labels)]
