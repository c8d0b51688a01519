"""One benchmark run for one encoder: dataset → embed → retrieve → evaluate → ``RunResult``.

Knows neither MLflow nor the command line, so the same pipeline runs from the CLI, ``mlflow run``, tests or
workers. ``tracking_result.py`` turns a ``RunResult`` into an MLflow run.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from encoders import registry as encoder_registry
from encoders.base import Encoder, WindowPolicy
from metrics import registry as metric_registry
from metrics.base import PairMetric

from . import evaluation, prehash
from . import index as retrieval_index
from .cache import ArrayCache, EntrySpec
from .config import RunConfig, window_policy
from .data import AudioDecodeError, Dataset, Failure, content_hash, fingerprint, load_dataset
from .embedding import embed_files
from .embedding_workers import ProcessWorkers
from .hash_index import HashIndex
from .progress import stage_done
from .ranking import cosine_matrix

HEATMAP_MAX_CELLS = 2_000_000  # keep the full similarity matrix only when it is small enough to draw


class RunError(RuntimeError):
    """The run cannot produce results (e.g. every file failed); ``failures`` says what happened to each file."""

    def __init__(self, message: str, failures: list[Failure] | None = None):
        super().__init__(message)
        self.failures = list(failures or [])


@dataclass
class RunResult:
    config: RunConfig
    encoder_params: dict[str, Any]
    encoder_tags: dict[str, str]
    dataset: Dataset
    dataset_fingerprint: str
    target_keys: list[str]  # targets with an embedding, in order
    ref_keys: list[str]
    topk: pd.DataFrame  # target, rank, reference, similarity, [relevant], pair-metric columns
    per_target: pd.DataFrame  # one row per target: top-1 and IR values
    metrics: dict[str, float]
    similarity: np.ndarray | None  # targets × refs, when small enough to draw
    skipped_metrics: dict[str, str] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)
    stats: dict[str, float] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)  # resolved at run time (e.g. the index's), logged as params
    groups: Any = None  # scenarios.report.Grouped: metrics by each query's label (a scenario's deformation)


def window_override(config: RunConfig) -> WindowPolicy | None:
    return window_policy(config.window_seconds, config.hop_seconds, config.min_tail_seconds)


def encoder_options(config: RunConfig) -> encoder_registry.EncoderOptions:
    return encoder_registry.EncoderOptions(
        weights=config.weights,
        allow_download=config.allow_download,
        device=config.device,
        batch_size=config.batch_size,
        window=window_override(config),
        precision=config.precision,
        trust_remote_code=config.trust_remote_code,
    )


def metric_options(config: RunConfig) -> metric_registry.MetricOptions:
    return metric_registry.MetricOptions(
        weights=dict(config.metric_weights),
        allow_download=config.allow_download,
        device=config.device,
        batch_size=config.batch_size,
    )


@dataclass
class Prepared:
    """What is checked before any work: dataset found, encoder and metrics able to run."""

    dataset: Dataset
    encoder: Encoder
    metrics: list[PairMetric]
    skipped: dict[str, str]


def load(config: RunConfig) -> Dataset:
    """The dataset of ``config``: folders found and scanned, ground truth read (``DatasetError`` otherwise); for a
    scenario, the references (its queries are made when the run starts: ``benchmark/scenarios``)."""
    if config.scenario:
        from . import scenarios

        return scenarios.load(config)
    return load_dataset(config.refs, config.targets, config.ground_truth)


def prepare(config: RunConfig, dataset: Dataset | None = None) -> Prepared:
    """Fail fast: bad folders, unknown encoder, missing weights, unavailable explicit metrics."""
    dataset = dataset if dataset is not None else load(config)
    encoder_registry.encoder_class(config.encoder)  # unknown names fail here, with the list
    metrics, skipped = metric_registry.select(config.metrics, metric_options(config))
    encoder = encoder_registry.build(config.encoder, encoder_options(config))
    return Prepared(dataset, encoder, metrics, skipped)


def _hash_files(dataset: Dataset, failures: list[Failure], cache_dir: Path | None) -> tuple[dict[Path, str], int, int]:
    """Every file's content sha256 (a file whose stat is unchanged since it was hashed is not read again, and one
    hashed ahead while the run started up is taken from ``prehash``); returns the hashes, how many came from the
    stat index and how many were hashed ahead."""
    index = HashIndex(cache_dir)
    hashes = {}
    ahead = 0
    for role, files in (("reference", dataset.refs), ("target", dataset.targets)):
        for item in files:
            if item.path in hashes:
                continue
            digest = index.lookup(item.path)
            if digest is None:
                try:
                    info = os.stat(item.path)  # before reading: a change while it is read must not be hidden
                except OSError:
                    info = None  # content_hash says why
                digest = prehash.take(item.path, info)  # hashed while the run started up, and unchanged since
                ahead += digest is not None
                if digest is None:
                    try:
                        digest = content_hash(item.path)
                    except AudioDecodeError as error:
                        failures.append(Failure(role, item.key, "read", str(error)))
                        continue
                index.remember(item.path, digest, info)
            hashes[item.path] = digest
    prehash.finish()
    index.save()
    dataset.content_hashes = hashes
    return hashes, index.hits, ahead


def _topk_table(
    target_keys: list[str],
    ref_keys: list[str],
    indices: np.ndarray,
    sims: np.ndarray,
    relevance: dict[str, dict[str, float]] | None,
) -> pd.DataFrame:
    rows = []
    for t, target in enumerate(target_keys):
        for rank, (index, sim) in enumerate(zip(indices[t], sims[t]), start=1):
            if index < 0:
                continue
            row = {"target": target, "rank": rank, "reference": ref_keys[index], "similarity": float(sim)}
            if relevance is not None:
                row["relevant"] = relevance.get(target, {}).get(ref_keys[index], 0.0)
            rows.append(row)
    return pd.DataFrame(
        rows, columns=["target", "rank", "reference", "similarity"] + (["relevant"] if relevance is not None else [])
    )


def _embed_engine(config: RunConfig, encoder: Encoder):
    """The embed stage's engine, as a context manager giving ``embed_files``'s ``source``: None for the local engine
    (threads / worker processes), Ray's for ``--engine ray`` (``benchmark/ray_engine.py``)."""
    if config.engine == "ray":
        from .ray_engine import RayEngine

        return RayEngine(config, encoder, encoder_options(config))
    return contextlib.nullcontext()


def run(config: RunConfig, progress: bool = True, prepared: Prepared | None = None) -> RunResult:
    """Run the whole benchmark for ``config.encoder``; raises ``RunError`` when nothing could be evaluated."""
    timings: dict[str, float] = {}
    started = time.perf_counter()
    prepared = prepared or prepare(config)
    dataset, encoder = prepared.dataset, prepared.encoder
    failures: list[Failure] = []
    prepare_targets = getattr(dataset, "prepare_targets", None)  # a scenario's queries, made (or found cached) now
    source_metrics = prepare_targets(config.workers, failures, progress) if prepare_targets is not None else {}
    hashes, n_hash_index_hits, n_hashes_ahead = _hash_files(dataset, failures, config.cache_dir)
    timings["hash_seconds"] = time.perf_counter() - started

    tick = time.perf_counter()
    cache = ArrayCache(config.cache_dir, encoder.cache_identity(), EntrySpec(shape=(encoder.dim,)))
    embedded = {}
    embed_stats = {"n_embedded": 0, "n_cached": 0, "audio_seconds_embedded": 0.0}
    with (
        _embed_engine(config, encoder) as source,  # None: local; ray: decode + embed on Ray (same cache, same path)
        ProcessWorkers(encoder, config.batch_size, config.workers) as pool,  # one pool for both roles
    ):
        results = [
            (
                role,
                embed_files(
                    [f for f in files if f.path in hashes],
                    role,
                    encoder,
                    cache,
                    hashes,
                    batch_size=config.batch_size,
                    workers=config.workers,
                    progress=progress,
                    pool=pool,
                    source=source,
                ),
            )
            for role, files in (("reference", dataset.refs), ("target", dataset.targets))
        ]
    for role, result in results:
        embedded[role] = result.embeddings
        failures.extend(result.failures)
        embed_stats["n_embedded"] += result.stats.embedded
        embed_stats["n_cached"] += result.stats.cached
        embed_stats["audio_seconds_embedded"] += result.stats.audio_seconds
    timings["embed_seconds"] = time.perf_counter() - tick
    encoder.close()  # its model is not needed any more: the evaluate stage (an hour of melody, …) runs without it

    ref_keys = [f.key for f in dataset.refs if f.key in embedded["reference"]]
    target_files = [f for f in dataset.targets if f.key in embedded["target"]]
    target_keys = [f.key for f in target_files]
    if not ref_keys or not target_keys:
        raise RunError(
            f"no {'reference' if not ref_keys else 'target'} could be embedded "
            f"({len(failures)} failures; first: {failures[0].message if failures else '-'})",
            failures,
        )

    tick = time.perf_counter()
    ref_matrix = np.stack([embedded["reference"][k] for k in ref_keys])
    target_matrix = np.stack([embedded["target"][k] for k in target_keys])
    ref_position = {k: i for i, k in enumerate(ref_keys)}
    exclude = [
        {ref_position[dataset.refs[i].key] for i in matches if dataset.refs[i].key in ref_position}
        for matches, t in zip(dataset.self_matches(), dataset.targets)
        if t.key in embedded["target"]
    ]
    retrieved = retrieval_index.retrieve(target_matrix, ref_matrix, config.k, exclude, config.index)
    indices, sims = retrieved.indices, retrieved.sims
    topk = _topk_table(target_keys, ref_keys, indices, sims, dataset.relevance)
    similarity = (
        cosine_matrix(target_matrix, ref_matrix) if len(target_keys) * len(ref_keys) <= HEATMAP_MAX_CELLS else None
    )
    timings["retrieve_seconds"] = time.perf_counter() - tick
    stage_done("retrieve", timings["retrieve_seconds"], progress, f"top-{config.k} of {len(ref_keys)} references")

    tick = time.perf_counter()
    evaluated = evaluation.evaluate(
        config,
        prepared.metrics,
        prepared.skipped,
        dataset,
        hashes,
        topk,
        target_files,
        (target_matrix, ref_matrix, ref_keys, exclude),
        progress,
    )
    failures.extend(evaluated.failures)
    timings["evaluate_seconds"] = time.perf_counter() - tick
    timings["total_seconds"] = time.perf_counter() - started

    metrics = evaluation.MetricValues()  # each name from one stage: a second source for a name raises, never overwrites
    evaluated_metrics = dict(evaluated.metrics)
    repaired_by_evaluate = evaluated_metrics.pop("n_cache_repaired", 0)  # summed with the embedding cache's below
    metrics.add(evaluated_metrics, "evaluate")
    metrics.add(source_metrics, "dataset source (scenario queries)")
    groups = None
    if getattr(dataset, "query_labels", None):  # metrics also grouped by each query's label (a scenario's deformation)
        from .scenarios.report import per_label

        groups = per_label(evaluated.per_target, dataset.query_labels, dataset.label_order, config.k)
        metrics.add(groups.metrics, "per-label groups")
        evaluated.per_target = groups.per_target
    counts = {
        "n_refs": len(ref_keys),
        "n_targets": len(target_keys),
        "n_failed": len(failures),
        "n_embedded": embed_stats["n_embedded"],
        "n_cached": embed_stats["n_cached"],
        "n_hashes_from_index": n_hash_index_hits,
        "n_hashes_ahead": n_hashes_ahead,
        "n_cache_repaired": cache.repaired + repaired_by_evaluate,
    }
    if dataset.ground_truth is not None:
        counts["n_ground_truth_rows"] = dataset.ground_truth.n_rows
        counts["n_ground_truth_self_pairs"] = len(dataset.ground_truth.self_pairs)
    if embed_stats["audio_seconds_embedded"] > 0:
        counts["embed_audio_seconds_per_second"] = embed_stats["audio_seconds_embedded"] / max(
            timings["embed_seconds"], 1e-9
        )
    metrics.add(counts, "run bookkeeping")
    metrics.add(retrieved.metrics, "retrieval index")
    metrics.add(timings, "stage timings")
    metrics = {name: float(v) for name, v in metrics.items() if v is not None and np.isfinite(v)}  # never log NaN
    return RunResult(
        config=config,
        encoder_params=encoder.card.as_params(),
        encoder_tags={
            "weights_sha256": encoder.weights_sha256 or "none",
            "weights_source": encoder.weights_source or "none",
        },
        dataset=dataset,
        dataset_fingerprint=fingerprint(
            {f"ref/{f.key}": hashes[f.path] for f in dataset.refs if f.path in hashes}
            | {f"target/{f.key}": hashes[f.path] for f in dataset.targets if f.path in hashes}
        ),
        target_keys=target_keys,
        ref_keys=ref_keys,
        topk=evaluated.topk,
        per_target=evaluated.per_target,
        metrics=metrics,
        similarity=similarity,
        skipped_metrics=evaluated.skipped,
        failures=failures,
        stats=embed_stats,
        params=retrieved.params,
        groups=groups,
    )
