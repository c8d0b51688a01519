"""Exact cosine retrieval: L2-normalised embeddings, blocked matrix products, deterministic ties.

Ties in similarity are broken by reference order (lower index first), so results never depend on the
sort algorithm. A query's excluded references (itself, when refs and targets overlap) never appear.

How (catalogue scale: 100k references × 1k queries without a Python loop over pairs):

* similarities are float32 matrix products over blocks of queries (numpy/OpenBLAS: on this machine kind it beats
  ``torch.mm``), ``block_queries(n_refs)`` each: as many as fit in ``BLOCK_CELLS`` similarities (256 MB), at
  least ``BLOCK_QUERIES``. Fewer, larger products are faster (``perf/ir_scale.py``, 100k × 1k, dim 512: top-10 in
  0.67 s with these blocks, 0.74 s with 256-query ones; BENCHMARKS.md, target 5). The block size is part of the
  result's last bits — OpenBLAS rounds a product differently depending on where the row and column fall in its
  tiles (even two identical reference rows can differ by one ulp) — so it depends on the number of references
  only, never on anything else;
* ``top_k``: ``torch.topk`` of k + 1 per row on the block (zero-copy), the k-th/(k+1)-th values telling
  the rare rows where equal similarities straddle the cut; those rows take the lowest-index tied
  references, then each row's k are ordered by (similarity descending, index ascending). Long rows (100k
  references) are first narrowed to the groups of columns with the k largest maxima (a sixteenth of the row,
  every candidate of the top k in it: ``_rank_rows_grouped``), so the selection reads the block once instead of
  several times (0.03 s instead of 0.09 s per block of 671 × 100k);
* ``relevant_ranks``: a relevant reference's rank is counted, never sorted: 1 + the references scoring
  strictly above it + its place among those tied with it, excluded ones not counted. IR measures need nothing
  else (``metrics.ir_ranks.per_query_from_ranks``); ``ir_from_embeddings`` is the one entry point from embeddings to
  per-query IR rows. Its ``ties`` (``--ties``) orders equal similarities for the IR measures: ``index`` (the
  ``top_k`` rule above), ``optimistic``, ``pessimistic``, or ``average`` — the run default — the expected
  value of each measure over every order of the tied references (``metrics.ir_ties.per_query_from_tie_blocks``), so
  no file order or name decides a tie.

Memory: one block of similarities (at most ``BLOCK_CELLS`` float32: 256 MB) plus the normalised references;
torch is imported on first use, never at import.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Hashable, Iterable, Iterator, Mapping, Sequence

import numpy as np

#: the fewest queries of a block of similarities, and ...
BLOCK_QUERIES = 256
#: ... the most similarities it holds when that allows more queries (float32: 256 MB; 671 queries at 100k refs)
BLOCK_CELLS = 1 << 26
#: above this fraction of the references, a full stable sort is cheaper than topk + fix-ups
_FULL_SORT_FRACTION = 0.25
#: blocks of at most this many similarities are ranked by numpy when torch is not loaded (importing it costs 1-3 s)
_NUMPY_SORT_CELLS = 1 << 20
#: at most this many similarities per temporary of the rank counting (≈ 100 MB of float32)
_RANK_CELLS = 1 << 25
#: rows normalised at a time (2 MB of float32 at dim 512: the squares stay in cache)
_NORM_ROWS = 1024
#: from this many values, ``l2_normalise`` uses every core (100k references × 512: 0.09 s on one core)
_PARALLEL_VALUES = 1 << 22
#: ``_rank_rows`` pre-selects each row's candidates by the maxima of column groups when a row has at least this many
#: groups of ``_group_width`` columns per value asked for (fewer: the candidates would be most of the row)
_GROUPS_PER_VALUE = 8


def l2_normalise(x: np.ndarray, check_finite: bool = False) -> np.ndarray:
    """Rows scaled to unit length; all-zero rows stay zero (cosine 0 with everything).

    Computed in chunks of ``_NORM_ROWS`` rows (the squares stay in cache: no full-size temporary), shared by every
    core from ``_PARALLEL_VALUES`` values, with the same floating-point operations as
    ``x / np.linalg.norm(x, axis=1, keepdims=True)``, so the same bits.
    ``check_finite``: raise ``ValueError`` on a NaN or infinite value (found through the row norms, which are
    non-finite for such a row; only a row whose norm overflows is looked at element by element).
    """
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"expected a 2-D array of row vectors, got shape {x.shape}")
    out = np.empty_like(x)
    starts = range(0, x.shape[0], _NORM_ROWS)
    threads = _threads_for(x.size)
    if threads > 1:  # numpy leaves the GIL during each chunk's operations: the chunks share the cores
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(threads) as pool:  # list(): a share's ValueError is raised here
            list(pool.map(lambda i: _normalise_rows(x, out, starts[i::threads], check_finite), range(threads)))
    else:
        _normalise_rows(x, out, starts, check_finite)
    return out


def _threads_for(size: int) -> int:
    """Threads for an elementwise pass over ``size`` float32 values: all cores from ``_PARALLEL_VALUES`` values."""
    if size < _PARALLEL_VALUES:
        return 1
    from encoders.pretrained import available_cores

    return max(1, available_cores())


def _normalise_rows(x: np.ndarray, out: np.ndarray, starts: Iterable[int], check_finite: bool) -> None:
    """``l2_normalise`` of the chunks of ``_NORM_ROWS`` rows that begin at ``starts``, into ``out``."""
    for start in starts:
        chunk = x[start : start + _NORM_ROWS]
        norms = np.sqrt(np.add.reduce(chunk * chunk, axis=1, keepdims=True))  # np.linalg.norm's own formula
        if check_finite and not np.isfinite(norms).all():
            bad = ~np.isfinite(norms[:, 0])
            if not np.isfinite(chunk[bad]).all():
                raise ValueError("embeddings must be finite")
        target = out[start : start + _NORM_ROWS]
        np.divide(chunk, norms, out=target, where=norms > 0)
        target[norms[:, 0] <= 0] = 0.0  # all-zero rows (``where`` leaves them unwritten)


def cosine_matrix(queries: np.ndarray, refs: np.ndarray) -> np.ndarray:
    """(n_queries, n_refs) cosine similarities."""
    return l2_normalise(queries) @ l2_normalise(refs).T


def block_queries(n_refs: int) -> int:
    """The queries of each block of similarities against ``n_refs`` references."""
    return max(BLOCK_QUERIES, BLOCK_CELLS // max(n_refs, 1))


def _similarity_blocks(
    queries: np.ndarray, refs: np.ndarray, exclude: Sequence[Iterable[int]] | None
) -> Iterator[tuple[int, np.ndarray]]:
    """``(start, sims)`` for each block of ``block_queries(n_refs)`` queries: float32 cosines with every reference,
    excluded references set to -inf. The values are bit-identical from call to call (same blocks).

    Every block is written into the same buffer (the product's own BLAS call, so the same bits as a fresh array;
    fresh 100–256 MB arrays cost ~15 % more CPU in page faults at 100k references): ``sims`` is valid only until
    the next block is asked for — use it, or copy what you keep."""
    q = l2_normalise(queries, check_finite=True)
    r_t = l2_normalise(refs, check_finite=True).T
    block = block_queries(r_t.shape[1])
    buffer = np.empty((min(block, q.shape[0]), r_t.shape[1]), dtype=np.float32)
    for start in range(0, q.shape[0], block):
        stop = min(start + block, q.shape[0])
        sims = np.matmul(q[start:stop], r_t, out=buffer[: stop - start])
        if exclude is not None:
            excluded = [list(e) if e else [] for e in exclude[start:stop]]
            counts = [len(e) for e in excluded]
            if any(counts):
                rows = np.repeat(np.arange(stop - start), counts)
                cols = np.fromiter(itertools.chain.from_iterable(excluded), dtype=np.int64, count=sum(counts))
                sims[rows, cols] = -np.inf
        yield start, sims


def _rank_rows_numpy(sims: np.ndarray, k: int) -> np.ndarray:
    """``_rank_rows`` by a stable numpy sort of the whole rows (for small blocks)."""
    return np.argsort(-sims, axis=1, kind="stable")[:, :k]


def _rank_rows(sims: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest values per row, by decreasing value then increasing index (values finite or
    -inf). ``torch.topk`` does the selection; only rows whose k-th value is tied beyond the cut are fixed. A small
    block, while torch is not loaded, is sorted by numpy instead (a stable sort: the same order, by definition),
    which is far cheaper than importing torch for it. Long rows are first narrowed to candidates
    (``_rank_rows_grouped``)."""
    if sims.size <= _NUMPY_SORT_CELLS and "torch" not in sys.modules:
        return _rank_rows_numpy(sims, k)
    import torch

    n = sims.shape[1]
    t = torch.from_numpy(sims)
    if k >= n or k > _FULL_SORT_FRACTION * n:
        return torch.sort(t, dim=1, descending=True, stable=True).indices[:, :k].numpy()
    if n >= _GROUPS_PER_VALUE * k * _group_width(n, k):
        return _rank_rows_grouped(t, k).numpy()
    return _select_and_order(t, k).numpy()


def _group_width(n: int, k: int) -> int:
    """Columns per group of ``_rank_rows_grouped``: about ``2 × _GROUPS_PER_VALUE × k`` groups per row (so the
    candidates are about a sixteenth of it), at least 64 columns (a maximum is then a vectorised pass)."""
    return max(64, n // (2 * _GROUPS_PER_VALUE * k))


def _rank_rows_grouped(t, k: int):
    """``_rank_rows`` of long rows, through candidates: each row's columns in groups of ``_group_width`` (and the
    columns after the last whole group, its tail), the k groups with the largest maxima, and the tail. Every value at
    least the row's k-th largest is among them — the k-th largest group maximum is at most the k-th largest value,
    and any value at least that is in a group whose maximum is too — so the k largest, ties at the cut included,
    are found among about a sixteenth of the row, by the same ``_select_and_order`` (candidates in column order, so
    its lowest-index rule is the row's). A row where more than k group maxima tie at the k-th (all-zero similarities,
    copies of one reference) is ranked whole."""
    import torch

    rows, n = t.shape
    width = _group_width(n, k)
    groups = n // width
    maxima = t[:, : groups * width].unflatten(1, (groups, width)).amax(dim=2)
    chosen = maxima >= torch.topk(maxima, k, dim=1, sorted=False).values.amin(dim=1, keepdim=True)
    counts = chosen.sum(dim=1)  # k, or more where maxima tie at the k-th
    plain = torch.nonzero(counts == k).flatten()
    out = torch.empty((rows, k), dtype=torch.int64)
    if len(plain):
        firsts = torch.nonzero(chosen[plain])[:, 1].view(len(plain), k) * width  # ascending per row (row-major)
        columns = (firsts.unsqueeze(2) + torch.arange(width)).flatten(1)
        if groups * width < n:  # the tail: always a candidate
            tail = torch.arange(groups * width, n).expand(len(plain), -1)
            columns = torch.cat([columns, tail], dim=1)
        candidates = t[plain.unsqueeze(1), columns]
        out[plain] = torch.gather(columns, 1, _select_and_order(candidates, k))
    if len(plain) < rows:
        tied = torch.nonzero(counts != k).flatten()
        out[tied] = _select_and_order(t[tied], k)
    return out


def _select_and_order(t, k: int):
    """``_rank_rows`` of a tensor with more than ``k`` columns: ``torch.topk`` of k + 1 per row, the rows where equal
    values straddle the cut fixed (every value above it, then the lowest-index ties), each row's k ordered by
    (value descending, index ascending). Returns a tensor of indices."""
    import torch

    values, idx = torch.topk(t, k + 1, dim=1, largest=True, sorted=True)
    kth = values[:, k - 1]
    straddle = torch.nonzero(values[:, k] == kth).flatten()
    idx = idx[:, :k].clone()
    if len(straddle):  # equal values straddle the cut: keep every value above it, then the lowest-index ties
        rows = t[straddle]
        cut = kth[straddle].unsqueeze(1)
        above = rows > cut
        tied = rows == cut
        room = (k - above.sum(dim=1)).unsqueeze(1)
        chosen = above | (tied & (torch.cumsum(tied, dim=1) <= room))
        idx[straddle] = torch.nonzero(chosen)[:, 1].view(len(straddle), k)  # row-major: ascending per row
    # order the k chosen: by index, then stably by value (descending)
    idx = torch.sort(idx, dim=1).values
    chosen_values = torch.gather(t, 1, idx)
    order = torch.sort(chosen_values, dim=1, descending=True, stable=True).indices
    return torch.gather(idx, 1, order)


def top_k(
    queries: np.ndarray, refs: np.ndarray, k: int, exclude: Sequence[set[int]] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k references per query by cosine similarity.

    Returns ``(indices, similarities)``, both ``(n_queries, k')`` with ``k' = min(k, n_refs)``; where a query
    has fewer candidates than ``k'`` (exclusions), the missing slots hold index -1 and similarity NaN.
    Equal similarities: lower reference index first. Non-finite embeddings raise ``ValueError``.
    """
    if k < 1:
        raise ValueError("k must be at least 1")
    n_queries, n_refs = len(queries), len(refs)
    k_eff = min(k, n_refs)
    indices = np.full((n_queries, k_eff), -1, dtype=np.int64)
    sims_out = np.full((n_queries, k_eff), np.nan, dtype=np.float32)
    for start, sims in _similarity_blocks(queries, refs, exclude):
        order = _rank_rows(sims, k_eff)
        values = np.take_along_axis(sims, order, axis=1)
        valid = np.isfinite(values)
        indices[start : start + len(order)] = np.where(valid, order, -1)
        sims_out[start : start + len(order)] = np.where(valid, values, np.nan)
    return indices, sims_out


def _count_ranks(sims: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For reference ``cols[i]`` in row ``rows[i]`` of ``sims``: ``(higher, tied, tied_before)`` — how many
    references score strictly higher, how many others score exactly the same, and how many of those are at a lower
    index; ``higher`` is -1 where that similarity is -inf (excluded). Excluded references (-inf) are never counted.
    numpy's ``count_nonzero`` (torch's sum of a boolean tensor is ~10× slower here); rows gathered in chunks of
    ≤ ``_RANK_CELLS`` similarities."""
    higher = np.zeros(len(rows), dtype=np.int64)
    tied = np.zeros(len(rows), dtype=np.int64)
    tied_before = np.zeros(len(rows), dtype=np.int64)
    chunk = max(1, _RANK_CELLS // max(1, sims.shape[1]))
    for start in range(0, len(rows), chunk):
        r, c = rows[start : start + chunk], cols[start : start + chunk]
        block = sims if np.array_equal(r, np.arange(sims.shape[0])) else sims[r]
        own = block[np.arange(len(r)), c][:, None]
        at_least = np.count_nonzero(block >= own, axis=1)  # higher, equal, and the reference itself
        n_equal = np.count_nonzero(block == own, axis=1)
        above = at_least - n_equal
        before = np.zeros(len(r), dtype=np.int64)
        with_ties = np.flatnonzero(n_equal > 1)
        if with_ties.size:  # equal similarities: which are at a lower index
            lower = np.arange(sims.shape[1])[None, :] < c[with_ties, None]
            before[with_ties] = np.count_nonzero((block[with_ties] == own[with_ties]) & lower, axis=1)
        above[np.isneginf(own[:, 0])] = -1
        higher[start : start + len(r)] = above
        tied[start : start + len(r)] = n_equal - 1
        tied_before[start : start + len(r)] = before
    return higher, tied, tied_before


def _rank_counts(
    queries: np.ndarray,
    refs: np.ndarray,
    relevant: Sequence[Mapping[int, float] | Iterable[int]],
    exclude: Sequence[set[int]] | None,
) -> tuple[list[list[int]], np.ndarray, np.ndarray, np.ndarray]:
    """Each query's keys of ``relevant`` and, per (query, key) pair in that order, ``_count_ranks``' three counts."""
    n_refs = len(refs)
    keys = [list(rel.keys() if isinstance(rel, Mapping) else rel) for rel in relevant]
    if len(keys) != len(queries):
        raise ValueError(f"relevant has {len(keys)} entries for {len(queries)} queries")
    counts = np.array([len(k) for k in keys], dtype=np.int64)
    pair_query = np.repeat(np.arange(len(keys)), counts)
    pair_ref = np.fromiter(itertools.chain.from_iterable(keys), dtype=np.int64, count=int(counts.sum()))
    if pair_ref.size and (pair_ref.min() < 0 or pair_ref.max() >= n_refs):
        raise ValueError(f"relevant reference indices must be in [0, {n_refs})")
    higher = np.zeros(pair_ref.size, dtype=np.int64)
    tied = np.zeros(pair_ref.size, dtype=np.int64)
    tied_before = np.zeros(pair_ref.size, dtype=np.int64)
    rows = block_queries(n_refs)
    bounds = np.searchsorted(pair_query, np.arange(0, len(keys) + rows, rows))
    if pair_ref.size:
        for start, sims in _similarity_blocks(queries, refs, exclude):
            lo, hi = bounds[start // rows], bounds[start // rows + 1]
            if hi > lo:
                found = _count_ranks(sims, pair_query[lo:hi] - start, pair_ref[lo:hi])
                higher[lo:hi], tied[lo:hi], tied_before[lo:hi] = found
    return keys, higher, tied, tied_before


def _grade_of(rel, ref) -> float:
    return float(rel[ref]) if isinstance(rel, Mapping) else 1.0


def relevant_ranks(
    queries: np.ndarray,
    refs: np.ndarray,
    relevant: Sequence[Mapping[int, float] | Iterable[int]],
    exclude: Sequence[set[int]] | None = None,
    ties: str = "index",
) -> list[dict[int, int | None]]:
    """For each query, ``{reference index: rank}`` for every reference in ``relevant[i]`` (the keys of a
    mapping ``index -> grade``, or a collection of indices): its 1-based rank in the query's full ranking,
    excluded references removed, or ``None`` when it is excluded for that query.

    Counted, never sorted: 1 + references scoring strictly higher + the place given to it among the references
    with an equal score, by ``ties``:

    * ``index``: those at a lower index first (the order ``top_k`` gives);
    * ``optimistic``: the relevant ones (grade > 0) first, higher grade first, then by index;
    * ``pessimistic``: the relevant ones last, lower grade first, then by index.

    (``average`` has no single rank: see ``tie_blocks`` and ``metrics.ir_ties.per_query_from_tie_blocks``.) Graded
    zero keys are not relevant: under optimistic/pessimistic they keep the ``index`` rank (the IR measures ignore
    them). Feed the result to ``metrics.ir_ranks.per_query_from_ranks``.
    """
    if ties not in ("index", "optimistic", "pessimistic"):
        raise ValueError(f"relevant_ranks: ties must be index, optimistic or pessimistic, got {ties!r}")
    keys, higher, tied, tied_before = _rank_counts(queries, refs, relevant, exclude)
    out: list[dict[int, int | None]] = []
    for rel, (query_keys, h, t, b) in zip(relevant, _per_query(keys, higher, tied, tied_before)):
        ranks: dict[int, int | None] = {}
        blocks: dict[int, list[int]] = {}
        for i, ref in enumerate(query_keys):
            if h[i] < 0:
                ranks[int(ref)] = None
                continue
            ranks[int(ref)] = h[i] + 1 + b[i]
            if ties != "index" and t[i] > 0 and _grade_of(rel, ref) > 0:
                blocks.setdefault(h[i], []).append(i)
        for start, members in blocks.items():
            if ties == "optimistic":
                members.sort(key=lambda i: (-_grade_of(rel, query_keys[i]), query_keys[i]))
                first = start + 1
            else:
                members.sort(key=lambda i: (_grade_of(rel, query_keys[i]), query_keys[i]))
                first = start + t[members[0]] + 1 - len(members) + 1
            for j, i in enumerate(members):
                ranks[int(query_keys[i])] = first + j
        out.append(ranks)
    return out


def tie_blocks(
    queries: np.ndarray,
    refs: np.ndarray,
    relevant: Sequence[Mapping[int, float] | Iterable[int]],
    exclude: Sequence[set[int]] | None = None,
) -> list[dict[int, tuple[int, int] | None]]:
    """For each query, ``{reference index: (higher, tied)}`` for every reference in ``relevant[i]``: how many
    references score strictly higher and how many others score exactly the same (excluded ones never counted), or
    ``None`` when it is excluded for that query. What ``metrics.ir_ties.per_query_from_tie_blocks`` needs."""
    keys, higher, tied, _ = _rank_counts(queries, refs, relevant, exclude)
    return [
        {int(ref): (None if hi < 0 else (hi, ti)) for ref, hi, ti in zip(query_keys, h, t)}
        for query_keys, h, t in _per_query(keys, higher, tied)
    ]


def _per_query(keys: list, *columns: np.ndarray) -> Iterator[tuple]:
    """Each query's reference keys (``_rank_counts``'s), with its part of each of ``columns`` (their values for all
    queries, one query after the other) as lists."""
    offset = 0
    for query_keys in keys:
        n = len(query_keys)
        yield (query_keys, *(column[offset : offset + n].tolist() for column in columns))
        offset += n


def ir_from_embeddings(
    target_matrix: np.ndarray,
    ref_matrix: np.ndarray,
    relevance: Sequence[Mapping[Hashable, float] | Iterable[Hashable]],
    exclude: Sequence[set[int]] | None = None,
    ks: Iterable[int] = (1, 5, 10),
    ref_keys: Sequence[Hashable] | None = None,
    queries: Sequence[Hashable] | None = None,
    ties: str = "index",
) -> list[dict]:
    """Per-query IR rows (``metrics.ir.per_query_ir``'s columns and values) straight from embeddings, at
    catalogue scale: the rows ``per_query_ir`` would give on every query's full ranking (the order ``top_k``
    gives with k = n_refs, excluded references removed), without building any ranking.

    ``relevance[i]``: target ``i``'s relevant references, as ``{reference: grade}`` or a collection (grade 1):
    reference *indices* into ``ref_matrix``, or, with ``ref_keys`` (the name of each row of ``ref_matrix``),
    reference *names* — a name that is not in ``ref_keys`` (e.g. a reference that failed to embed) counts
    as relevant and never retrieved, as in ``per_query_ir``. ``exclude[i]``: reference indices removed
    from target ``i``'s ranking. ``queries``: the ``"query"`` value of each row (default: the target index).
    Rows only for targets with ≥ 1 relevant reference (grade > 0), in target order. ``ties``: how equal
    similarities are ordered (``metrics.ir_ties.TIES``; ``relevant_ranks``, and for ``average`` the expectation over
    every order of the tied references, ``metrics.ir_ties.per_query_from_tie_blocks``).
    """
    from metrics.ir_ranks import per_query_from_ranks
    from metrics.ir_ties import check_ties, per_query_from_tie_blocks

    check_ties(ties)
    graded = [rel if isinstance(rel, Mapping) else dict.fromkeys(rel, 1.0) for rel in relevance]
    if ref_keys is None:
        by_index = graded
    else:
        position = {key: i for i, key in enumerate(ref_keys)}
        if len(position) != len(ref_keys):
            raise ValueError("ref_keys must be unique")
        by_index = [{position[name]: grade for name, grade in rel.items() if name in position} for rel in graded]
    if ties == "average":
        found = tie_blocks(target_matrix, ref_matrix, by_index, exclude)
    else:
        found = relevant_ranks(target_matrix, ref_matrix, by_index, exclude, ties)
    if ref_keys is not None:  # back to reference names
        found = [{ref_keys[i]: value for i, value in query.items()} for query in found]
    if ties == "average":
        return per_query_from_tie_blocks(found, relevance, ks, queries)
    return per_query_from_ranks(found, relevance, ks, queries)
