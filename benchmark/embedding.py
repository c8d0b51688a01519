"""The embed stage: decode → deterministic segments → batched encoder calls → mean-pool → cache.

Files are hashed first; cached embeddings are reused; only misses are decoded (in a bounded thread pool) and
embedded. Windows from several files are batched together. A file that fails (unreadable, undecodable,
non-finite embedding) is recorded as a ``Failure`` and the others carry on.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from encoders.base import Encoder, pool

from .cache import ArrayCache
from .data import AudioDecodeError, AudioFile, Failure, decode, shown
from .parallel import prefetch_map


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


class _Batcher:
    """Collects whole files' windows and embeds them in encoder batches; attributes failures to files."""

    def __init__(self, encoder: Encoder, batch_size: int, on_done: Callable[[AudioFile, np.ndarray], None],
                 on_fail: Callable[[AudioFile, str], None]):
        self.encoder, self.batch_size = encoder, batch_size
        self.on_done, self.on_fail = on_done, on_fail
        self.files: list[tuple[AudioFile, list[np.ndarray]]] = []
        self.n_windows = 0

    def add(self, item: AudioFile, windows: list[np.ndarray]) -> None:
        self.files.append((item, windows))
        self.n_windows += len(windows)
        if self.n_windows >= self.batch_size:
            self.flush()

    def _embed(self, windows: Sequence[np.ndarray]) -> np.ndarray:
        rows = [self.encoder.embed(windows[i:i + self.batch_size]) for i in range(0, len(windows), self.batch_size)]
        return np.concatenate(rows, axis=0)

    def flush(self) -> None:
        files, self.files, self.n_windows = self.files, [], 0
        if not files:
            return
        try:
            rows = self._embed([w for _, windows in files for w in windows])
            groups, start = [], 0
            for item, windows in files:
                groups.append((item, rows[start:start + len(windows)]))
                start += len(windows)
        except Exception:  # find the file(s) responsible: retry one file at a time
            groups = []
            for item, windows in files:
                try:
                    groups.append((item, self._embed(windows)))
                except Exception as error:  # noqa: BLE001 - any model error is this file's failure
                    self.on_fail(item, f"{shown(item.path)}: encoder failed ({type(error).__name__}: {error})")
        for item, rows in groups:
            pooled = pool(rows)
            if not np.all(np.isfinite(pooled)):
                self.on_fail(item, f"{shown(item.path)}: embedding is not finite (NaN/inf)")
                continue
            self.on_done(item, pooled)


def embed_files(files: list[AudioFile], role: str, encoder: Encoder, cache: ArrayCache,
                hashes: dict[Path, str], batch_size: int = 8, workers: int = 2,
                progress: bool = True) -> EmbedResult:
    """Embed ``files`` (whose content hashes are in ``hashes``); reuse the cache; record failures."""
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
    bar = tqdm(total=len(files), initial=result.stats.cached, desc=f"embed {role}s ({encoder.name})",
               unit="file", disable=not progress, leave=False)

    def done(item: AudioFile, embedding: np.ndarray) -> None:
        cache.put(hashes[item.path], embedding)
        result.embeddings[item.key] = embedding
        result.stats.embedded += 1
        bar.update()

    def fail(item: AudioFile, message: str) -> None:
        result.failures.append(Failure(role, item.key, "embed", message))
        result.stats.failed += 1
        bar.update()

    def load(item: AudioFile) -> list[np.ndarray]:
        audio = decode(item.path, encoder.sample_rate)
        return encoder.window.segment(audio, encoder.sample_rate)

    batcher = _Batcher(encoder, batch_size, done, fail)
    for item, future in prefetch_map(load, todo, workers):
        try:
            windows = future.result()
        except Exception as error:  # noqa: BLE001 - one file's problem, whatever it is, is that file's failure
            message = str(error) if isinstance(error, AudioDecodeError) else \
                f"{shown(item.path)}: cannot decode ({type(error).__name__}: {error})"
            result.failures.append(Failure(role, item.key, "decode", message))
            result.stats.failed += 1
            bar.update()
            continue
        result.stats.windows += len(windows)
        result.stats.audio_seconds += sum(len(w) for w in windows) / encoder.sample_rate
        batcher.add(item, windows)
    batcher.flush()
    bar.close()
    return result
