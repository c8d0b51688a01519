"""The embed stage: decode → deterministic segments → batched encoder calls → mean-pool → cache.

Files are hashed first; cached embeddings are reused; only misses are decoded and embedded. A file that fails
(unreadable, undecodable, non-finite embedding) is recorded as a ``Failure`` and the others carry on.

Two ways to do the work, with the same results, cache entries, failure records and progress:

* threads (neural encoders on an accelerator or without a warm fork server, and small jobs): files are decoded in
  a bounded thread pool while the encoder embeds windows batched across files in this process;
* processes (encoders that say ``parallel = "process"``: ``WeightFreeEncoder``'s CPU feature extraction in
  Python/numpy, when there is enough audio for it to pay; CLAP on the CPU, whenever the fork server has imported
  laion_clap): each file is decoded, cut and embedded in a worker process (``--workers`` of them, sharing the
  cores); its window embeddings come back to be pooled and cached here. A model is loaded in each worker, never
  forked into one (``parallel.start_method``); an unusable one ends the run as it would here.

A run keeps one ``ProcessWorkers`` for its references and targets. ``musicbench run`` calls ``prestart_workers``
first thing, so a fork server imports librosa & co. while the run imports MLflow and sets the store up; the
workers are then forked from it, warm, and the parent never imports the encoder's packages at all.

One file's path: ``embedding_file.py``; batching across files: ``embedding_batches.py``; the worker processes:
``embedding_workers.py``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from encoders.base import Encoder

from .cache import ArrayCache
from .data import AudioFile, Failure
from .embedding_batches import Batcher, add_stream
from .embedding_file import Cut, Embedded, Outcome, Stream, Undecodable, cut, decode_failure, streamed
from .embedding_workers import ProcessWorkers, embed_in_processes, use_processes
from .parallel import prefetch_map
from .progress import bar as progress_bar


@dataclass
class EmbedStats:
    files: int = 0
    cached: int = 0
    embedded: int = 0
    failed: int = 0
    windows: int = 0
    audio_seconds: float = 0.0  # audio actually embedded (cache misses)


@dataclass
class EmbedResult:
    embeddings: dict[str, np.ndarray] = field(default_factory=dict)  # file key → (dim,) float32
    failures: list[Failure] = field(default_factory=list)
    stats: EmbedStats = field(default_factory=EmbedStats)


def _in_threads(todo: list[AudioFile], encoder: Encoder, workers: int) -> Iterator[tuple[AudioFile, Outcome]]:
    def load(item: AudioFile) -> Cut | Stream:
        if streamed(encoder, item.path):
            return Stream(item.path)  # decoded by the consumer, block by block, as it embeds
        return cut(encoder, item.path)

    for item, future in prefetch_map(load, todo, workers):
        try:
            yield item, future.result()
        except Exception as error:  # noqa: BLE001 - one file's problem, whatever it is, is that file's failure
            yield item, decode_failure(item.path, error)


def embed_files(
    files: list[AudioFile],
    role: str,
    encoder: Encoder,
    cache: ArrayCache,
    hashes: dict[Path, str],
    batch_size: int = 8,
    workers: int = 2,
    progress: bool = True,
    processes: bool | None = None,
    pool: ProcessWorkers | None = None,
    source: Callable[[list[AudioFile]], Iterator[tuple[AudioFile, Outcome]]] | None = None,
) -> EmbedResult:
    """Embed ``files`` (whose content hashes are in ``hashes``); reuse the cache; record failures.

    ``processes``: False = threads; None = worker processes when ``use_processes`` says so, or whenever ``pool``
    is already running; True = worker processes whenever the encoder allows them, whatever the amount of audio
    (tests). ``pool``: worker processes to use (and leave running) instead of a pool of this call's own.
    ``source``: another engine's decode + embed (``benchmark.ray_engine``): called with the files to embed, it
    yields ``(file, embed_one(file, ...))``; cache, pooling, failures and progress are then exactly as here.
    """
    result = EmbedResult()
    result.stats.files = len(files)
    todo = []
    for item in files:
        cached = cache.get(hashes[item.path])
        if cached is None or cached.ndim != 1 or not np.all(np.isfinite(cached)):  # absent or unusable: recompute
            todo.append(item)
        else:
            result.embeddings[item.key] = cached
            result.stats.cached += 1
    bar = progress_bar(
        total=len(files),
        initial=result.stats.cached,
        desc=f"embed {role}s ({encoder.name})",
        unit="file",
        disable=not progress,
        leave=False,
    )

    def done(item: AudioFile, embedding: np.ndarray) -> None:
        cache.put(hashes[item.path], embedding)
        result.embeddings[item.key] = embedding
        result.stats.embedded += 1
        bar.update()

    def fail(item: AudioFile, message: str) -> None:
        result.failures.append(Failure(role, item.key, "embed", message))
        result.stats.failed += 1
        bar.update()

    own = pool is None
    pool = pool if pool is not None else ProcessWorkers(encoder, batch_size, workers)
    in_processes = (
        source is None
        and processes is not False
        and bool(todo)
        and (pool.running or use_processes(encoder, todo, workers, at_any_size=bool(processes)))
    )
    if todo and not in_processes and source is None:
        encoder.load_model()  # here, before any file: an unusable model is the run's error, not each file's
    outcomes = embed_in_processes(todo, pool) if in_processes else _in_threads(todo, encoder, workers)
    if source is not None and todo:
        outcomes = source(todo)
    batcher = Batcher(encoder, batch_size, done, fail)
    with (
        pool if own else contextlib.nullcontext(),  # on an error or Ctrl-C: stop our pool now, not when collected
        contextlib.closing(outcomes),
    ):
        for item, outcome in outcomes:
            if isinstance(outcome, Undecodable):
                result.failures.append(Failure(role, item.key, "decode", outcome.message))
                result.stats.failed += 1
                bar.update()
                continue
            if isinstance(outcome, Stream):
                counted = add_stream(batcher, item, encoder)
                if isinstance(counted, Undecodable):
                    result.failures.append(Failure(role, item.key, "decode", counted.message))
                    result.stats.failed += 1
                    bar.update()
                    continue
                n_windows, n_samples = counted
            elif isinstance(outcome, Embedded):
                n_windows, n_samples = outcome.n_windows, outcome.n_samples
                batcher.add(item, outcome)
            else:
                n_windows, n_samples = len(outcome.windows), sum(len(w) for w in outcome.windows)
                batcher.add(item, outcome)
            result.stats.windows += n_windows
            result.stats.audio_seconds += n_samples / encoder.sample_rate
    batcher.flush()
    bar.close()
    return result
