"""Tied scores: how equal scores are ordered for the IR measures (``TIES``), and each measure's expected value over
every order of the tied references (``per_query_from_tie_blocks``, McSherry & Najork, ECIR 2008)."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence

import numpy as np

from .ir import Relevance, check_k, dcg_of, need_relevant, relevance_grades
from .ir_ranks import per_query_from_ranks

#: how equal scores are ordered for the IR measures (``--ties``); see ``TIES_HELP``
TIES = ("average", "index", "optimistic", "pessimistic")
DEFAULT_TIES = "average"
TIES_HELP = (
    "average: the expected value of each measure over every order of the tied references (McSherry & Najork, "
    "ECIR 2008), independent of file order; index: lower reference index first; optimistic: relevant (higher "
    "grade) first; pessimistic: relevant last (lower grade first)"
)


def check_ties(ties: str) -> str:
    if ties not in TIES:
        raise ValueError(f"ties must be one of {', '.join(TIES)}, got {ties!r}")
    return ties


def expected_query_ir(
    blocks: Mapping[Hashable, tuple[int, int] | None], relevant: Relevance, ks: Iterable[int] = (1, 5, 10)
) -> dict:
    """``query_ir``'s row, each value the **expectation over a uniformly random order of tied items**.

    ``blocks[id] = (higher, tied)``: how many ranked items score strictly above relevant item ``id``, and how many
    others score exactly the same; ``None`` (or a missing id): not ranked (contributes 0, counted in R). Items with
    one ``higher`` share one tie block of ``tied + 1`` positions ``higher + 1 … higher + tied + 1``; the ``m``
    relevant items of a block take a uniformly random ``m``-subset of them, blocks independently. Closed forms
    (McSherry & Najork, "Computing information retrieval performance measures efficiently in the presence of tied
    scores", ECIR 2008):

    * recall/precision/nDCG@k: linear in each item's position, which is uniform over its block;
    * the first relevant rank is in the first block holding a relevant item: ``s + J``, ``J`` the minimum of an
      ``m``-subset of ``{1..g}``, ``P(J > j) = C(g − j, m) / C(g, m)``; hit@k, RR and its mean follow from ``J``;
    * AP: ``E[Σ_i n_i / r_i]`` = Σ over the block's positions p of ``(m/g) · (c + 1 + (m−1)(p−1)/(g−1)) / (s + p)``,
      ``c`` the relevant items in earlier blocks.

    Without ties (every ``tied`` 0) the values equal ``query_ir`` on the ranking."""
    ks = [check_k(k) for k in ks]
    grades = relevance_grades(relevant)
    n_relevant = need_relevant(grades)
    by_block: dict[int, list[float]] = {}
    for item, grade in grades.items():
        block = blocks.get(item)
        if block is None:
            continue
        higher, tied = (int(v) for v in block)
        by_block.setdefault(higher, []).append(grade)
    sizes: dict[int, int] = {}
    for item in grades:
        block = blocks.get(item)
        if block is not None:
            sizes[int(block[0])] = int(block[1]) + 1
    row: dict = {"n_relevant": n_relevant}
    ap, seen = 0.0, 0
    for start in sorted(by_block):
        g, m = sizes[start], len(by_block[start])
        p = np.arange(1, g + 1, dtype=np.float64)
        before = (m - 1) * (p - 1) / (g - 1) if g > 1 else np.zeros(1)
        ap += float(np.sum((m / g) * (seen + 1 + before) / (start + p)))
        seen += m
    row["average_precision"] = ap / n_relevant
    if by_block:
        start = min(by_block)
        g, m = sizes[start], len(by_block[start])
        j = np.arange(0, g + 1, dtype=np.float64)
        survival = np.ones(g + 1)  # P(J > j) = Π_t (g − j − t) / (g − t)
        for t in range(m):
            survival *= np.clip((g - j - t) / (g - t), 0.0, None)
        p_first = survival[:-1] - survival[1:]  # P(J = j), j = 1 … g
        ranks = start + j[1:]
        row["reciprocal_rank"] = float(np.sum(p_first / ranks))
        row["first_relevant_rank"] = float(start + (g + 1) / (m + 1)) if g > 1 else start + 1
    else:
        start, survival = None, None
        row["reciprocal_rank"], row["first_relevant_rank"] = 0.0, None
    ideal = sorted(grades.values(), reverse=True)
    for k in ks:
        found = 0.0
        dcg = 0.0
        for s, block_grades in by_block.items():
            g = sizes[s]
            inside = np.arange(s + 1, min(s + g, k) + 1, dtype=np.float64)  # the block's positions within top k
            share = inside.size / g  # P(an item of the block is in the top k)
            found += share * len(block_grades)
            dcg += sum(block_grades) / g * float(np.sum(1.0 / np.log2(inside + 1)))
        if start is None:
            hit = 0.0
        else:
            hit = float(1.0 - survival[min(max(k - start, 0), sizes[start])])
        row[f"recall_at_{k}"] = found / n_relevant
        row[f"hit_rate_at_{k}"] = hit
        row[f"precision_at_{k}"] = found / k
        row[f"ndcg_at_{k}"] = dcg / dcg_of(ideal[:k])
    return row


def per_query_from_tie_blocks(
    blocks: Sequence[Mapping[Hashable, tuple[int, int] | None]],
    relevance: Sequence[Relevance],
    ks: Iterable[int] = (1, 5, 10),
    queries: Sequence[Hashable] | None = None,
) -> list[dict]:
    """``per_query_from_ranks``'s rows under ``ties="average"``: from ``(higher, tied)`` per relevant item (see
    ``expected_query_ir``). A query none of whose relevant items is tied gets exactly (bit for bit)
    ``per_query_from_ranks``'s row with rank ``higher + 1``; the others get ``expected_query_ir``'s."""
    ks = tuple(check_k(k) for k in ks)
    if queries is None:
        queries = range(len(relevance))
    ranks = []
    for query_blocks in blocks:  # distinct placeholder ranks within a block (the tied rows are replaced below)
        taken: dict[int, int] = {}
        query_ranks = {}
        for item, block in query_blocks.items():
            if block is not None:
                higher = int(block[0])
                query_ranks[item] = higher + 1 + taken.get(higher, 0)
                taken[higher] = taken.get(higher, 0) + 1
        ranks.append(query_ranks)
    rows = per_query_from_ranks(ranks, relevance, ks, queries)
    by_query = {}
    for i, (query, query_blocks, relevant) in enumerate(zip(queries, blocks, relevance)):
        grades = relevance_grades(relevant)
        if grades and any(query_blocks.get(item) is not None and query_blocks[item][1] > 0 for item in grades):
            by_query[i] = {"query": query, **expected_query_ir(query_blocks, grades, ks)}
    if not by_query:
        return rows
    out, position = [], 0
    for i, relevant in enumerate(relevance):
        if not relevance_grades(relevant):
            continue
        out.append(by_query.get(i, rows[position]))
        position += 1
    return out
