"""Pair metrics on retrieved pairs: each file's features, computed once per file (cached by content hash + metric
identity; in ``workers`` threads for a metric declaring ``parallel_files``), each retrieved pair's scores, and their
means. A file whose features fail is a recorded failure; its pairs have no value for that metric and are left out of
the means (never counted as zero)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from metrics.base import PairMetric

from .cache import ArrayCache, EntrySpec
from .data import AudioDecodeError, AudioFile, Failure
from .decoding import decode
from .parallel import prefetch_map
from .progress import bar as progress_bar


@dataclass
class MetricFeatures:
    features: dict[str, np.ndarray] = field(default_factory=dict)  # content hash → features
    failures: list[Failure] = field(default_factory=list)
    cache_repaired: int = 0  # invalid cache entries found (and computed again)


def feature_spec(metric: PairMetric) -> EntrySpec:
    """What ``metric``'s cached per-file features must look like (its own declaration)."""
    return EntrySpec(shape=metric.feature_shape, dtypes=metric.feature_dtypes, value_range=metric.feature_range)


def metric_features(
    metric: PairMetric,
    files: Sequence[tuple[str, AudioFile]],
    cache_root: Path | None,
    hashes: dict[Path, str],
    workers: int = 2,
    progress: bool = True,
) -> MetricFeatures:
    """Features of ``metric`` for each (role, file), keyed by content hash; cached; failures recorded per file.

    Files are decoded in ``workers`` threads (at most ``2 × workers`` in flight). A metric that declares
    ``parallel_files`` (its ``file_features`` is thread-safe and releases the GIL: numpy/scipy work, e.g. melody)
    is computed in those threads too, one file per worker, so its per-file work uses every core; the others
    (models) run in this thread, one file at a time. Either way each file is decoded once, results and the
    cache are handled here in input order, and a file's audio is dropped as soon as its features exist.
    """
    cache = ArrayCache(cache_root, metric.cache_identity(), feature_spec(metric))
    out = MetricFeatures()
    todo, seen = [], set()
    for role, item in files:
        digest = hashes[item.path]
        if digest in seen:
            continue
        seen.add(digest)
        cached = cache.get(digest)
        if cached is None:
            todo.append((role, item))
        else:
            out.features[digest] = cached
    bar = progress_bar(
        total=len(seen),
        initial=len(seen) - len(todo),
        desc=f"score ({metric.name})",
        unit="file",
        disable=not progress,
        leave=False,
    )
    in_workers = bool(getattr(metric, "parallel_files", False)) and workers > 1

    def work(role_item: tuple[str, AudioFile]) -> np.ndarray:  # the features, or the audio to score here
        audio = decode(role_item[1].path, metric.sample_rate)
        return metric.file_features(audio) if in_workers else audio

    for (role, item), future in prefetch_map(work, todo, workers):
        try:
            result = future.result()
            features = np.asarray(result if in_workers else metric.file_features(result))
        except AudioDecodeError as error:
            out.failures.append(Failure(role, item.key, "decode", str(error)))
        except ValueError as error:  # the metric's own "cannot score this file"
            out.failures.append(Failure(role, item.key, metric.name, f"{item.path}: {error}"))
        else:
            cache.put(hashes[item.path], features)
            out.features[hashes[item.path]] = features
        finally:
            future = result = None  # a file's decoded audio goes now, not when the next one arrives
        bar.update()
    bar.close()
    out.cache_repaired = cache.repaired
    return out


def score_pairs(
    metric: PairMetric,
    topk: pd.DataFrame,
    features: dict[str, np.ndarray],
    target_hash: dict[str, str],
    ref_hash: dict[str, str],
) -> pd.DataFrame:
    """The metric's columns for every row of the top-k table (NaN where a file has no features)."""
    rows = []
    for target, reference in zip(topk["target"], topk["reference"]):
        t_feat, r_feat = features.get(target_hash[target]), features.get(ref_hash[reference])
        if t_feat is not None and r_feat is not None:
            scores = metric.pair_scores(t_feat, r_feat)
            rows.append({c: (float(v) if np.isfinite(v) else np.nan) for c, v in scores.items()})
        else:
            rows.append({c: np.nan for c in metric.columns})
    return pd.DataFrame(rows, index=topk.index, columns=list(metric.columns))


def _mean(values: pd.Series | np.ndarray) -> float | None:
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else None


def aggregate(topk: pd.DataFrame, pair_columns: Sequence[str]) -> dict[str, float]:
    """Similarity and pair-metric means over rank-1 pairs and over all top-k pairs (None-valued means dropped)."""
    top1 = topk[topk["rank"] == 1]
    out: dict[str, float | None] = {
        "sim_top1_mean": _mean(top1["similarity"]),
        "sim_top1_median": float(np.nanmedian(top1["similarity"])) if len(top1) else None,
        "sim_topk_mean": _mean(topk["similarity"]),
    }
    for column in pair_columns:
        out[f"{column}_top1_mean"] = _mean(top1[column])
        out[f"{column}_topk_mean"] = _mean(topk[column])
        for scope, rows in (("top1", top1), ("topk", topk)):  # each mean's denominator
            out[f"n_pairs_scored.{column}_{scope}"] = int(np.isfinite(rows[column].to_numpy(np.float64)).sum())
    return {name: value for name, value in out.items() if value is not None}


def file_value_means(
    metric: PairMetric, features: dict[str, np.ndarray], target_hashes: Sequence[str], top1_ref_hashes: Sequence[str]
) -> dict[str, float]:
    """Per-file values of a metric averaged over the target files (``<v>_targets_file_mean``) and over the rank-1
    reference files, one per target (``<v>_top1_refs_file_mean``), by content hash. Named apart from the pair
    columns' means (e.g. ``aes_pq_ref_top1_mean``: over the rank-1 *pairs* with both files scored), which are
    another computation."""
    out = {}
    for suffix, digests in (("targets_file_mean", target_hashes), ("top1_refs_file_mean", top1_ref_hashes)):
        values = [metric.file_values(features[d]) for d in digests if d in features]
        for name in metric.file_value_names:
            mean = _mean([v[name] for v in values])
            if mean is not None:
                out[f"{name}_{suffix}"] = mean
    return out
