"""The evaluate stage: pair metrics on retrieved pairs, IR metrics against ground truth, and aggregates.

Per-file metric features are computed once per file (cached by content hash + metric identity) and reused
for every pair the file is in; a metric declaring ``parallel_files`` (melody) is computed in ``workers``
threads. IR measures come from each relevant reference's counted rank (``ranking.ir_from_embeddings``), never
from sorted whole rankings. A file whose features fail is a recorded failure; its pairs have no value
for that metric and are left out of the means (never counted as zero).

The pair metrics' per-file features, pair scores and their means are ``pair_scoring.py``'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from metrics.base import Measure, PairMetric
from metrics.ir import AT_K, aggregate_ir, bootstrap_ci, ir_confidence_intervals

from .config import DEFAULT_MISSING_QUERIES, DEFAULT_TIES, RunConfig
from .data import AudioFile, Dataset, Failure
from .index import MEASURES as INDEX_MEASURES
from .pair_scoring import aggregate, file_value_means, metric_features, score_pairs
from .ranking import ir_from_embeddings

#: the numbers the harness itself logs (pair metrics and IR measures declare theirs where they are computed)
HARNESS_MEASURES = (
    Measure(
        "sim_top1_mean",
        True,
        description="mean cosine of each target and its top-1 reference, in the encoder's own embedding space: "
        "how tight its neighbourhoods are, comparable within an encoder only (never ranked across encoders)",
        across_encoders=False,
    ),
    Measure("sim_top1_median", True, description="median of the same", across_encoders=False),
    Measure("sim_topk_mean", True, description="mean cosine over all top-k pairs", across_encoders=False),
    Measure("n_failed", False, description="files that failed at any stage"),
    Measure("{stage}_seconds", False, description="wall time of a stage"),
    Measure("embed_audio_seconds_per_second", True, description="embedding throughput"),
    Measure("n_refs", None),
    Measure("n_targets", None),
    Measure("n_embedded", None),
    Measure("n_cached", None),
    Measure("n_hashes_from_index", None, description="files recognised by their stat, not read again"),
    Measure("n_hashes_ahead", None, description="files hashed while the run started up, not read again"),
    Measure("n_cache_repaired", None, description="invalid cache entries (embeddings, metric features) computed again"),
    Measure("n_queries_{stage}", None),
    Measure(
        "n_pairs_scored.{stage}",
        None,
        description="pairs with a finite value: the denominator of the mean of the same name "
        "(n_pairs_scored.melody_acc_top1 for melody_acc_top1_mean)",
    ),
    Measure("n_ground_truth_rows", None, description="rows read from the ground-truth file"),
    Measure("n_ground_truth_self_pairs", None, description="ground-truth rows pairing a file with itself (dropped)"),
    *INDEX_MEASURES,
)


class DuplicateMetric(ValueError):
    """Two computations produced one metric name: one would silently overwrite the other."""


class MetricValues(dict):
    """The run's numbers, each name from exactly one source: ``add`` raises ``DuplicateMetric`` on a second one."""

    def __init__(self) -> None:
        super().__init__()
        self.source: dict[str, str] = {}

    def add(self, values: dict[str, float], source: str) -> None:
        clash = sorted(name for name in values if name in self)
        if clash:
            raise DuplicateMetric(
                ", ".join(f"{name} (from {self.source[name]} and {source})" for name in clash)
                + ": one name, two computations"
            )
        self.update(values)
        self.source.update(dict.fromkeys(values, source))


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
    release_free_memory()  # what the embed stage freed (decoded audio, activations) goes back before the metrics
    per_target = (
        topk[topk["rank"] == 1][["target", "reference", "similarity"]]
        .rename(columns={"reference": "top1_reference", "similarity": "sim_top1"})
        .set_index("target")
    )
    values = MetricValues()
    cache_repaired = 0
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
            release_free_memory()
        failures.extend(feats.failures)
        cache_repaired += feats.cache_repaired
        topk = pd.concat([topk, score_pairs(metric, topk, feats.features, target_hash, ref_hash)], axis=1)
        values.add(
            file_value_means(
                metric, feats.features, list(target_hash.values()), [ref_hash[r] for r in per_target["top1_reference"]]
            ),
            f"{metric.name} per-file values",
        )
    values.add({"n_cache_repaired": cache_repaired}, "metric feature caches")
    pair_columns = [c for m in metrics if m.name not in skipped for c in m.columns]
    values.add(aggregate(topk, pair_columns), "top-k pairs")
    top1 = topk[topk["rank"] == 1].set_index("target")
    for column in pair_columns:
        per_target[f"{column}_top1"] = top1[column]

    if dataset.relevance is not None:
        ir_values, per_query = retrieval_metrics(
            target_matrix,
            ref_matrix,
            ref_keys,
            exclude,
            [f.key for f in target_files],
            dataset.relevance,
            config.k,
            ties=config.ties,
            missing_queries=config.missing_queries,
            ground_truth_targets=[f.key for f in dataset.targets],
        )
        values.add(ir_values, "IR measures")
        if len(per_query):
            per_query = per_query.set_index("query")
            missing = per_query.index.difference(per_target.index)  # targets that failed, counted as misses
            per_target = per_target.reindex(per_target.index.append(missing)).join(per_query, how="left")
            per_target["target_failed"] = per_target.index.isin(missing)
    per_target = per_target.rename_axis("target").reset_index()
    values.add(similarity_confidence_interval(per_target), "top-1 similarity bootstrap")
    return Evaluation(topk, per_target, dict(values), skipped, failures)


def release_free_memory() -> None:
    """Hand the heap's free pages back to the OS (glibc's ``malloc_trim``; nothing elsewhere). Memory freed by a
    stage (a long file's audio, model activations, worker-thread arenas) otherwise stays resident, and the next
    stage's peak stacks on top of it (perf/long_input_memory.py: an hour-long file's run peaked in the evaluate
    stage without this, in the embed stage with it)."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def retrieval_metrics(
    target_matrix: np.ndarray,
    ref_matrix: np.ndarray,
    ref_keys: Sequence[str],
    exclude: Sequence[set[int]] | None,
    target_keys: Sequence[str],
    relevance: dict[str, dict[str, float]],
    k: int,
    ties: str = DEFAULT_TIES,
    missing_queries: str = DEFAULT_MISSING_QUERIES,
    ground_truth_targets: Sequence[str] | None = None,
) -> tuple[dict[str, float], pd.DataFrame]:
    """IR metrics at 1, k and 10 with bootstrap CIs, over the ground-truth queries; per-query rows.

    Each relevant reference's rank is counted from the embeddings (``ranking.ir_from_embeddings``: references
    scoring above it, equal ones ordered by ``ties``, excluded ones removed), never by sorting whole rows; the
    values are those of ``metrics.ir.per_query_ir`` on the full rankings, bit for bit (without ties: every
    ``ties`` gives them). A relevant reference that is not in ``ref_keys`` (it failed to embed) counts in R and is
    never retrieved.

    The ground-truth queries are the targets of ``ground_truth_targets`` (every target of the dataset; default:
    ``target_keys``) with a relevant reference. One whose target has no embedding (it failed) is, by
    ``missing_queries``, a row of zeros — AP = RR = recall = hit = precision = nDCG = 0, no first relevant rank,
    as trec_eval ``-c`` counts a query without results (``miss``) — or left out (``drop``). Logged either way:
    ``n_queries_ground_truth``, ``n_queries_evaluated`` (those with a ranking), ``n_queries_missing``.
    """
    ks = tuple(sorted({1, k, 10}))
    rows = ir_from_embeddings(
        target_matrix,
        ref_matrix,
        [relevance.get(t, {}) for t in target_keys],
        exclude,
        ks,
        ref_keys=ref_keys,
        queries=target_keys,
        ties=ties,
    )
    ranked = set(target_keys)
    everyone = list(ground_truth_targets) if ground_truth_targets is not None else list(target_keys)
    missing = [t for t in everyone if t not in ranked and any(float(g) > 0 for g in relevance.get(t, {}).values())]
    evaluated = len(rows)
    if missing_queries == "miss":
        for target in missing:
            row = {"query": target, "n_relevant": sum(1 for g in relevance[target].values() if float(g) > 0)}
            row.update(average_precision=0.0, reciprocal_rank=0.0, first_relevant_rank=None)
            row.update({f"{name}_at_{cut}": 0.0 for cut in ks for name in AT_K})
            rows.append(row)
    elif missing_queries != "drop":
        raise ValueError(f"missing_queries must be miss or drop, got {missing_queries!r}")
    values = {**aggregate_ir(rows, ks), **ir_confidence_intervals(rows, ks)} if rows else {}
    if rows and missing_queries == "miss":  # a missing query was not ranked at all: not "relevant not retrieved"
        values["n_queries_relevant_not_retrieved"] -= len(missing)
    values["n_queries_without_relevant"] = len(target_keys) - evaluated
    values["n_queries_ground_truth"] = evaluated + len(missing)
    values["n_queries_evaluated"] = evaluated
    values["n_queries_missing"] = len(missing)
    return values, pd.DataFrame(rows)


def similarity_confidence_interval(per_target: pd.DataFrame, seed: int = 0) -> dict[str, float]:
    """Bootstrap 95% interval over targets of the mean top-1 similarity."""
    values = per_target["sim_top1"].to_numpy(dtype=np.float64)
    values = values[np.isfinite(values)]
    if not values.size:
        return {}
    low, high = bootstrap_ci(values, seed=seed)
    return {"sim_top1_mean_ci_low": low, "sim_top1_mean_ci_high": high}
