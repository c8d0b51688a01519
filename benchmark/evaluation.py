"""The evaluate stage: pair metrics on retrieved pairs, IR metrics against ground truth, and aggregates.

Per-file metric features are computed once per file (cached by content hash + metric identity) and reused
for every pair the file is in. A file whose features fail is a recorded failure; its pairs have no value
for that metric and are left out of the means (never counted as zero).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from metrics.base import Measure, PairMetric
from metrics.ir import aggregate_ir, bootstrap_ci, ir_confidence_intervals, per_query_ir

from .cache import ArrayCache
from .config import RunConfig
from .data import AudioDecodeError, AudioFile, Dataset, Failure, decode
from .parallel import prefetch_map
from .ranking import full_ranking

#: the numbers the harness itself logs (pair metrics and IR measures declare theirs where they are computed)
HARNESS_MEASURES = (
    Measure(
        "sim_top1_mean",
        True,
        True,
        "mean cosine of each target and its top-1 reference, in the encoder's "
        "own embedding space (comparable within an encoder only)",
    ),
    Measure("sim_top1_median", True, description="median of the same"),
    Measure("sim_topk_mean", True, description="mean cosine over all top-k pairs"),
    Measure("n_failed", False, description="files that failed at any stage"),
    Measure("{stage}_seconds", False, description="wall time of a stage"),
    Measure("embed_audio_seconds_per_second", True, description="embedding throughput"),
    Measure("n_refs", None),
    Measure("n_targets", None),
    Measure("n_embedded", None),
    Measure("n_cached", None),
    Measure("n_hashes_from_index", None, description="files recognised by their stat, not read again"),
    Measure("n_queries_{stage}", None),
)


@dataclass
class Evaluation:
    topk: pd.DataFrame  # the top-k table with every pair metric's columns
    per_target: pd.DataFrame  # one row per target: top-1, pair metrics of the top-1 pair, IR values
    metrics: dict[str, float]
    skipped: dict[str, str]  # metric family → why it logged nothing
    failures: list[Failure] = field(default_factory=list)


def evaluate(
    config: RunConfig,
    metrics: Sequence[PairMetric],
    skipped: dict[str, str],
    dataset: Dataset,
    hashes: dict[Path, str],
    topk: pd.DataFrame,
    target_files: list[AudioFile],
    ranked: tuple,
    progress: bool = True,
) -> Evaluation:
    """Pair metrics on the retrieved pairs, IR metrics against the ground truth, and the aggregates.

    ``ranked`` is (target matrix, reference matrix, reference keys, excluded reference indices per target), as
    retrieval left them. A metric that breaks is recorded in ``skipped`` with the error; it logs nothing.
    """
    target_matrix, ref_matrix, ref_keys, exclude = ranked
    per_target = (
        topk[topk["rank"] == 1][["target", "reference", "similarity"]]
        .rename(columns={"reference": "top1_reference", "similarity": "sim_top1"})
        .set_index("target")
    )
    values: dict[str, float] = {}
    skipped = dict(skipped)
    failures: list[Failure] = []
    target_hash = {f.key: hashes[f.path] for f in target_files}
    ref_hash = {f.key: hashes[f.path] for f in dataset.refs if f.path in hashes}
    retrieved = set(topk["reference"])
    needed = [("target", f) for f in target_files] + [("reference", f) for f in dataset.refs if f.key in retrieved]
    for metric in metrics:
        try:
            feats = metric_features(metric, needed, config.cache_dir, hashes, config.workers, progress)
        except Exception as error:  # noqa: BLE001 - the metric itself broke (model failed to load, …): say why
            skipped[metric.name] = f"failed: {type(error).__name__}: {error}"
            continue
        finally:
            metric.close()
        failures.extend(feats.failures)
        topk = pd.concat([topk, score_pairs(metric, topk, feats.features, target_hash, ref_hash)], axis=1)
        values.update(
            file_value_means(
                metric, feats.features, list(target_hash.values()), [ref_hash[r] for r in per_target["top1_reference"]]
            )
        )
    pair_columns = [c for m in metrics if m.name not in skipped for c in m.columns]
    values.update(aggregate(topk, pair_columns))
    top1 = topk[topk["rank"] == 1].set_index("target")
    for column in pair_columns:
        per_target[f"{column}_top1"] = top1[column]

    if dataset.relevance is not None:
        target_keys = [f.key for f in target_files]
        rankings = {
            t: [ref_keys[i] for i in row]
            for t, row in zip(target_keys, full_ranking(target_matrix, ref_matrix, exclude))
        }
        relevance = {t: rel for t, rel in dataset.relevance.items() if t in rankings}
        ir_values, per_query = retrieval_metrics(rankings, relevance, config.k)
        values.update(ir_values)
        if len(per_query):
            per_target = per_target.join(per_query.set_index("query"), how="left")
    per_target = per_target.reset_index()
    values.update(similarity_confidence_interval(per_target))
    return Evaluation(topk, per_target, values, skipped, failures)


@dataclass
class MetricFeatures:
    features: dict[str, np.ndarray] = field(default_factory=dict)  # content hash → features
    failures: list[Failure] = field(default_factory=list)


def metric_features(
    metric: PairMetric,
    files: Sequence[tuple[str, AudioFile]],
    cache_root: Path | None,
    hashes: dict[Path, str],
    workers: int = 2,
    progress: bool = True,
) -> MetricFeatures:
    """Features of ``metric`` for each (role, file), keyed by content hash; cached; failures recorded per file."""
    cache = ArrayCache(cache_root, metric.cache_identity())
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
    bar = tqdm(
        total=len(seen),
        initial=len(seen) - len(todo),
        desc=f"score ({metric.name})",
        unit="file",
        disable=not progress,
        leave=False,
    )
    for (role, item), future in prefetch_map(lambda ri: decode(ri[1].path, metric.sample_rate), todo, workers):
        try:
            features = np.asarray(metric.file_features(future.result()))
        except AudioDecodeError as error:
            out.failures.append(Failure(role, item.key, "decode", str(error)))
        except ValueError as error:  # the metric's own "cannot score this file"
            out.failures.append(Failure(role, item.key, metric.name, f"{item.path}: {error}"))
        else:
            cache.put(hashes[item.path], features)
            out.features[hashes[item.path]] = features
        bar.update()
    bar.close()
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
    return {name: value for name, value in out.items() if value is not None}


def file_value_means(
    metric: PairMetric, features: dict[str, np.ndarray], target_hashes: Sequence[str], top1_ref_hashes: Sequence[str]
) -> dict[str, float]:
    """Per-file values of a metric averaged over targets and over the rank-1 references (by content hash)."""
    out = {}
    for suffix, digests in (("target_mean", target_hashes), ("ref_top1_mean", top1_ref_hashes)):
        values = [metric.file_values(features[d]) for d in digests if d in features]
        for name in metric.file_value_names:
            mean = _mean([v[name] for v in values])
            if mean is not None:
                out[f"{name}_{suffix}"] = mean
    return out


def retrieval_metrics(
    rankings: dict[str, list[str]], relevance: dict[str, dict[str, float]], k: int
) -> tuple[dict[str, float], pd.DataFrame]:
    """IR metrics at 1, k and 10 with bootstrap CIs, over the queries that have relevant items; per-query rows."""
    ks = tuple(sorted({1, k, 10}))
    rows = per_query_ir(rankings, relevance, ks=ks)
    values = {**aggregate_ir(rows, ks), **ir_confidence_intervals(rows, ks)} if rows else {}
    values["n_queries_without_relevant"] = len(rankings) - len(rows)
    return values, pd.DataFrame(rows)


def similarity_confidence_interval(per_target: pd.DataFrame, seed: int = 0) -> dict[str, float]:
    """Bootstrap 95% interval over targets of the mean top-1 similarity."""
    values = per_target["sim_top1"].to_numpy(dtype=np.float64)
    values = values[np.isfinite(values)]
    if not values.size:
        return {}
    low, high = bootstrap_ci(values, seed=seed)
    return {"sim_top1_mean_ci_low": low, "sim_top1_mean_ci_high": high}
