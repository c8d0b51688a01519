"""The embed stage: decode → deterministic segments → batched encoder calls → mean-pool → cache.

Files are hashed first; cached embeddings are reused; only misses are decoded and embedded. A file that fails
(unreadable, undecodable, non-finite embedding) is recorded as a ``Failure`` and the others carry on.

Two ways to do the work, with the same results, cache entries, failure records and progress:

* threads (neural encoders, and small jobs): files are decoded in a bounded thread pool while the encoder
  embeds windows batched across files in this process;
* processes (encoders whose work is CPU feature extraction in Python/numpy, which say ``parallel = "process"``
  as ``WeightFreeEncoder`` does, when there is enough audio for it to pay):
  each file is decoded, cut and embedded in a worker process (``--workers`` of them); its window embeddings come
  back to be pooled and cached here. Torch models are never forked into workers (``parallel.start_method``).

A run keeps one ``ProcessWorkers`` for its references and targets. ``musicbench run`` calls ``prestart_workers``
first thing, so a fork server imports librosa & co. while the run imports MLflow and sets the store up; the
workers are then forked from it, warm, and the parent never imports the encoder's packages at all.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from encoders.base import Encoder, pool

from .cache import ArrayCache
from .data import AudioDecodeError, AudioFile, Failure, shown
from .decoding import decode, decode_blocks, decoded_length
from .parallel import forkserver_preloads, prefetch_map, prestart_forkserver, process_pool
from .progress import bar as progress_bar

#: The process pool is used only when the files to embed hold at least this many bytes: below it, the whole job
#: takes well under a second in threads and a pool (≈0.1 s to fork two workers, and one warm-up call) cannot win.
PROCESS_MIN_BYTES = 8 << 20
#: A file longer than this (at the encoder's rate, from its header) is decoded block by block and its windows are
#: embedded as they come (``WindowPolicy.stream``), so the embed stage never holds it whole: an hour at 48 kHz is
#: 691 MB of float32. Only for windowed encoders (a whole-file policy embeds the file as one segment anyway).
STREAM_MIN_SECONDS = 300.0
#: files in flight per worker process: results are small (window embeddings, not audio), so a deep queue
#: keeps every worker busy when file lengths differ.
PROCESS_DEPTH_PER_WORKER = 8


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


@dataclass(frozen=True)
class _Undecodable:
    message: str


@dataclass(frozen=True)
class _Embedded:
    """One file decoded, cut and embedded in a worker process: its window embeddings, or why the encoder failed."""

    n_windows: int
    n_samples: int
    rows: np.ndarray | None = None
    error: str | None = None
    weights: np.ndarray | None = None  # the rows' pooling weights (``WindowPolicy.weights``); None: equal


@dataclass(frozen=True)
class _Stream:
    """A long file to be decoded and cut as it is embedded (``streamed``): nothing of it is decoded yet."""

    path: Path


@dataclass(frozen=True)
class _Cut:
    """One file decoded and cut here (threads): its windows and their pooling weights (``WindowPolicy.weights``)."""

    windows: list[np.ndarray]
    weights: np.ndarray


_Outcome = _Cut | _Embedded | _Undecodable | _Stream  # windows | embedded (processes) | decode failure | long file


def streamed(encoder: Encoder, path: Path) -> bool:
    """Whether ``path`` is decoded and cut into ``encoder``'s windows as a stream: its policy is windowed and the
    file is longer than ``STREAM_MIN_SECONDS`` (the same windows either way, see ``WindowPolicy.stream``)."""
    if encoder.window.window_seconds is None:
        return False
    length = decoded_length(path, encoder.sample_rate)
    return length is not None and length > STREAM_MIN_SECONDS * encoder.sample_rate


def stream_windows(encoder: Encoder, path: Path, length: list[int] | None = None) -> Iterator[list[np.ndarray]]:
    """``encoder``'s windows of ``path``, list by list as it is decoded (``AudioDecodeError`` may come from any
    ``next()``, a truncated file being known only at its end). ``length``: a one-item list that counts the samples
    decoded (the file's length once the windows are exhausted, for ``WindowPolicy.weights``)."""
    blocks = decode_blocks(path, encoder.sample_rate)
    if length is not None:
        blocks = _counted(blocks, length)
    return encoder.window.stream(blocks, encoder.sample_rate)


def _counted(blocks: Iterable[np.ndarray], length: list[int]) -> Iterator[np.ndarray]:
    for block in blocks:
        length[0] += len(block)
        yield block


def _weights(encoder: Encoder, n_samples: int) -> np.ndarray:
    """The pooling weights of the windows of a file of ``n_samples`` samples at the encoder's rate."""
    return encoder.window.weights(n_samples, encoder.sample_rate)


def _decode_failure(path: Path, error: Exception) -> _Undecodable:
    return _Undecodable(
        str(error)
        if isinstance(error, AudioDecodeError)
        else f"{shown(path)}: cannot decode ({type(error).__name__}: {error})"
    )


def _encoder_failure(path: Path, error: Exception) -> str:
    return f"{shown(path)}: encoder failed ({type(error).__name__}: {error})"


def _embed_windows(encoder: Encoder, windows: Sequence[np.ndarray], batch_size: int) -> np.ndarray:
    rows = [encoder.embed(windows[i : i + batch_size]) for i in range(0, len(windows), batch_size)]
    return np.concatenate(rows, axis=0)


class _File:
    """One file in the batcher: its window embeddings so far, how many of its windows wait in the queue, and
    whether all of its windows have been added (``complete``) or it failed (``error``)."""

    __slots__ = ("item", "rows", "pending", "complete", "error", "weights")

    def __init__(self, item: AudioFile):
        self.item, self.rows, self.pending, self.complete, self.error = item, [], 0, False, None
        self.weights: np.ndarray | None = None  # its windows' pooling weights, known when it is closed


class _Batcher:
    """Embeds files' windows in encoder batches across files, pools each file's rows and reports files in order.

    Windows join one queue in file order; a full batch (``batch_size`` windows) is embedded as soon as the queue
    holds one, and when a file's last window has been added while the windows added since the last partial batch
    number ``batch_size`` or more, the rest of the queue is embedded too. The batches are therefore exactly those
    of cutting the concatenated windows of whole files (``add``) into ``batch_size`` pieces, and a long file can
    be added window list by window list as it is decoded (``open`` / ``push`` / ``close``), never held whole, with
    the same batches and so the same numbers as when it is added at once.

    A batch the encoder fails on is retried file by file to find the file(s) responsible. Files embedded in worker
    processes (``_Embedded``) bring their rows with them and are reported in the same order.
    """

    def __init__(
        self,
        encoder: Encoder,
        batch_size: int,
        on_done: Callable[[AudioFile, np.ndarray], None],
        on_fail: Callable[[AudioFile, str], None],
    ):
        self.encoder, self.batch_size = encoder, batch_size
        self.on_done, self.on_fail = on_done, on_fail
        self.queue: list[tuple[_File, np.ndarray]] = []  # windows not embedded yet, in order
        self.group = 0  # windows added since the queue was last emptied by a partial batch
        self.files: deque[_File] = deque()  # files not reported yet, in order

    def add(self, item: AudioFile, windows: _Cut | _Embedded) -> None:
        """A whole file: its windows, or its rows embedded by a worker process."""
        file = self.open(item)
        if isinstance(windows, _Embedded):
            file.rows, file.error = [windows.rows] if windows.error is None else [], windows.error
        else:
            self.push(file, windows.windows)
        self.close(file, windows.weights)

    def open(self, item: AudioFile) -> _File:
        file = _File(item)
        self.files.append(file)
        return file

    def push(self, file: _File, windows: Sequence[np.ndarray]) -> None:
        """More windows of ``file``, in order."""
        if file.error is not None:
            return
        self.queue.extend((file, window) for window in windows)
        file.pending += len(windows)
        self.group += len(windows)
        while len(self.queue) >= self.batch_size:
            self._embed(self.batch_size)

    def close(self, file: _File, weights: np.ndarray | None = None) -> None:
        """``file`` has no more windows; ``weights``: their pooling weights (None: equal)."""
        file.complete, file.weights = True, weights
        if self.group >= self.batch_size:
            self.flush()
        self._report()

    def abandon(self, file: _File) -> None:
        """Forget ``file`` (its decoding failed part way): its rows and queued windows are dropped, nothing is
        reported for it here."""
        self.queue = [(owner, window) for owner, window in self.queue if owner is not file]
        self.group -= file.pending
        file.pending, file.rows, file.complete = 0, [], True
        self.files.remove(file)
        self._report()

    def flush(self) -> None:
        """Embed every queued window (the last batch may be partial) and report the files that are complete."""
        while self.queue:
            self._embed(min(self.batch_size, len(self.queue)))
        self.group = 0
        self._report()

    def _embed(self, n: int) -> None:
        batch, self.queue = self.queue[:n], self.queue[n:]
        parts: list[tuple[_File, list[np.ndarray]]] = []  # the batch's windows, file by file
        for owner, window in batch:
            owner.pending -= 1
            if owner.error is None:
                if parts and parts[-1][0] is owner:
                    parts[-1][1].append(window)
                else:
                    parts.append((owner, [window]))
        if not parts:
            return
        try:
            rows = _embed_windows(self.encoder, [w for _, windows in parts for w in windows], self.batch_size)
        except Exception:  # noqa: BLE001 - find the file(s) responsible: retry one file at a time
            for owner, windows in parts:
                try:
                    owner.rows.append(_embed_windows(self.encoder, windows, self.batch_size))
                except Exception as error:  # noqa: BLE001 - any model error is this file's failure
                    owner.error, owner.rows = _encoder_failure(owner.item.path, error), []
            return
        start = 0
        for owner, windows in parts:
            owner.rows.append(rows[start : start + len(windows)])
            start += len(windows)

    def _report(self) -> None:
        while self.files and self.files[0].complete and (self.files[0].pending == 0 or self.files[0].error):
            file = self.files.popleft()
            if file.error is not None:
                self.on_fail(file.item, file.error)
                continue
            pooled = pool(np.concatenate(file.rows, axis=0), file.weights)
            file.rows = []
            if not np.all(np.isfinite(pooled)):
                self.on_fail(file.item, f"{shown(file.item.path)}: embedding is not finite (NaN/inf)")
                continue
            self.on_done(file.item, pooled)


# --- threads: decode ahead, embed here --------------------------------------------------------------------------


def _in_threads(todo: list[AudioFile], encoder: Encoder, workers: int) -> Iterator[tuple[AudioFile, _Outcome]]:
    def load(item: AudioFile) -> _Cut | _Stream:
        if streamed(encoder, item.path):
            return _Stream(item.path)  # decoded by the consumer, block by block, as it embeds
        audio = decode(item.path, encoder.sample_rate)
        return _Cut(encoder.window.segment(audio, encoder.sample_rate), _weights(encoder, len(audio)))

    for item, future in prefetch_map(load, todo, workers):
        try:
            yield item, future.result()
        except Exception as error:  # noqa: BLE001 - one file's problem, whatever it is, is that file's failure
            yield item, _decode_failure(item.path, error)


def _add_stream(batcher: _Batcher, item: AudioFile, encoder: Encoder) -> tuple[int, int] | _Undecodable:
    """Decode a long file block by block here, handing its windows to ``batcher`` as they come (the batches, and so
    the numbers, are those of adding its windows at once); its window and sample counts, or why it could not be
    decoded (then nothing of it is kept)."""
    file = batcher.open(item)
    length = [0]
    chunks = stream_windows(encoder, item.path, length)
    n_windows = n_samples = 0
    try:
        while True:
            try:
                windows = next(chunks)
            except StopIteration:
                break
            except Exception as error:  # noqa: BLE001 - as in the threaded path: this file's failure
                batcher.abandon(file)
                return _decode_failure(item.path, error)
            n_windows += len(windows)
            n_samples += sum(len(w) for w in windows)
            batcher.push(file, windows)
    finally:
        chunks.close()
    batcher.close(file, _weights(encoder, length[0]))
    return n_windows, n_samples


# --- processes: decode, cut and embed each file in a worker -----------------------------------------------------

_WORKER: dict[str, object] = {}  # in a worker process: the encoder and batch size it embeds with
_Warning = tuple[str, type, str, int]  # text, category, file name, line number


def _init_worker(encoder: Encoder, batch_size: int) -> None:
    _WORKER.update(encoder=encoder, batch_size=batch_size)
    _warm_up(encoder)  # almost free when forked from a warmed parent


def _embed_file(item: AudioFile) -> _Embedded | _Undecodable:
    return embed_one(item, _WORKER["encoder"], _WORKER["batch_size"])


def embed_one(item: AudioFile, encoder: Encoder, batch_size: int) -> _Embedded | _Undecodable:
    """One file decoded, cut and embedded, as a worker does it: its window embeddings (``_Embedded``, pooled and
    checked by ``embed_files``), or why it failed. Never raises for a bad file. Engines that embed files elsewhere
    (``benchmark.ray_engine``) call this and hand the outcomes back to ``embed_files(source=...)``. A long file
    (``streamed``) is decoded and embedded block by block, with the same results."""
    if streamed(encoder, item.path):
        return _embed_stream(encoder, item, batch_size)
    try:
        audio = decode(item.path, encoder.sample_rate)
        windows = encoder.window.segment(audio, encoder.sample_rate)
        weights = _weights(encoder, len(audio))
    except Exception as error:  # noqa: BLE001 - as in the threaded path
        return _decode_failure(item.path, error)
    n_windows, n_samples = len(windows), sum(len(w) for w in windows)
    try:
        rows = _embed_windows(encoder, windows, batch_size)
    except Exception as error:  # noqa: BLE001 - as in the threaded path
        return _Embedded(n_windows, n_samples, error=_encoder_failure(item.path, error))
    return _Embedded(n_windows, n_samples, rows=rows, weights=weights)


def _embed_stream(encoder: Encoder, item: AudioFile, batch_size: int) -> _Embedded | _Undecodable:
    """``embed_one`` of a long file, decoded and cut as it is embedded: the same batches (``batch_size`` windows
    from the file's start), so the same rows, holding only a batch of windows and a block of audio."""
    length = [0]
    chunks, queue, rows = stream_windows(encoder, item.path, length), [], []
    n_windows = n_samples = 0
    error = None
    while True:
        try:
            windows = next(chunks)
        except StopIteration:
            break
        except Exception as failure:  # noqa: BLE001 - as in _embed_file
            return _decode_failure(item.path, failure)
        n_windows += len(windows)
        n_samples += sum(len(w) for w in windows)
        if error is not None:
            continue  # the encoder failed: read on, to report a decoding problem the way _embed_file would
        queue.extend(windows)
        try:
            while len(queue) >= batch_size:
                rows.append(encoder.embed(queue[:batch_size]))
                del queue[:batch_size]
        except Exception as failure:  # noqa: BLE001 - as in _embed_file
            error, queue, rows = _encoder_failure(item.path, failure), [], []
    if error is None and queue:
        try:
            rows.append(encoder.embed(queue))
        except Exception as failure:  # noqa: BLE001 - as in _embed_file
            error, rows = _encoder_failure(item.path, failure), []
    if error is not None:
        return _Embedded(n_windows, n_samples, error=error)
    return _Embedded(n_windows, n_samples, rows=np.concatenate(rows, axis=0), weights=_weights(encoder, length[0]))


def _embed_in_worker(item: AudioFile) -> tuple[_Embedded | _Undecodable, list[_Warning]]:
    """Runs in a worker process. A bad file does not raise: the outcome says what happened, as text (no exception
    has to survive pickling). Warnings are sent back to be shown by the parent, once, as threads would show them."""
    with warnings.catch_warnings(record=True) as caught:
        outcome = _embed_file(item)
    return outcome, [(str(w.message), w.category, w.filename, w.lineno) for w in caught]


_SHOWN: dict = {}  # the "once per location" registry of warnings raised in worker processes


def _show(caught: list[_Warning]) -> None:
    for text, category, filename, lineno in caught:
        try:
            warnings.warn_explicit(text, category, filename, lineno, registry=_SHOWN)
        except Exception:  # noqa: BLE001, S110 - a warning filter set to "error": the worker has applied it
            pass


_WARM_MODULES: dict[type, set[str]] = {}  # encoder class → modules its first call imported (see _preload)


def _warm_up(encoder: Encoder) -> None:
    """Embed a tenth of a second of silence once, discarding the result: the encoder's lazy imports (librosa,
    scipy, numba) and lazily built state then exist before workers are forked, so each worker inherits them
    instead of importing them again. A failure here is ignored: real files report their own errors."""
    before = set(sys.modules)
    try:
        with warnings.catch_warnings():  # e.g. librosa's "tuning from empty frequency set" on silence
            warnings.simplefilter("ignore")
            silence = np.zeros(max(1, encoder.sample_rate // 10), dtype=np.float32)
            encoder.embed(encoder.window.segment(silence, encoder.sample_rate)[:1])
    except Exception:  # noqa: BLE001, S110 - see the docstring
        pass
    _WARM_MODULES.setdefault(type(encoder), set(sys.modules) - before)


def use_processes(encoder: Encoder, todo: list[AudioFile], workers: int, at_any_size: bool = False) -> bool:
    """Whether ``todo`` is embedded in worker processes: the encoder asks for them (``parallel = "process"``),
    there are two workers and two files or more, and at least ``PROCESS_MIN_BYTES`` of audio (unless
    ``at_any_size``)."""
    if getattr(encoder, "parallel", "thread") != "process" or workers < 2 or len(todo) < 2:
        return False
    if multiprocessing.current_process().daemon:  # a daemonic process may not start children
        return False
    if at_any_size:
        return True
    size = 0
    for item in todo:
        try:
            size += os.stat(item.path).st_size
        except OSError:
            continue  # the worker reports it
        if size >= PROCESS_MIN_BYTES:
            return True
    return False


def _preload(encoder: Encoder) -> set[str]:
    """What a forkserver imports once for all the workers it forks: this module, the encoder's, what the encoder's
    warm-up imported, and the parent's modules of the encoder's package (e.g. ``librosa.*``)."""
    package = (encoder.card.package or "").replace("-", "_")
    loaded = {name for name in list(sys.modules) if package and name.split(".")[0] == package}
    return {type(encoder).__module__, __name__} | _WARM_MODULES.get(type(encoder), set()) | loaded


def _in_processes(todo: list[AudioFile], workers: ProcessWorkers) -> Iterator[tuple[AudioFile, _Outcome]]:
    start, depth = 0, PROCESS_DEPTH_PER_WORKER * workers.workers
    while start < len(todo):
        executor = workers.executor()
        try:
            for item, future in prefetch_map(_embed_in_worker, todo[start:], workers.workers, depth, executor):
                outcome = _collect(item, future)
                start += 1
                yield item, outcome
        except BrokenProcessPool:  # a worker died (crash, out-of-memory kill): find the file responsible
            workers.discard()
        if start < len(todo):
            yield todo[start], _alone(todo[start], workers)
            start += 1


def worker_modules(encoder_class: type) -> set[str]:
    """What a fork server imports for ``encoder_class``'s worker processes: this module, the encoder's own, and
    the modules its first call would import (``encoder_class.worker_modules``, e.g. ``librosa.feature.spectral``)."""
    return {__name__, encoder_class.__module__, *getattr(encoder_class, "worker_modules", ())}


def prestart_workers(encoder_classes: Iterable[type], workers: int, extra: Iterable[str] = ()) -> bool:
    """Start the fork server of the worker processes now, for every encoder of ``encoder_classes`` that embeds in
    processes (``parallel = "process"``), when ``workers`` ≥ 2: it imports their modules (and ``extra``, e.g.
    what the figures need) while this process goes on setting the run up. Returns whether it runs."""
    process = [cls for cls in encoder_classes if getattr(cls, "parallel", "thread") == "process"]
    if not process or workers < 2:
        return False
    return prestart_forkserver(set().union(*map(worker_modules, process)) | set(extra))


class ProcessWorkers:
    """The worker processes of one encoder, started on first use and kept for every ``embed_files`` call made with
    them (a run's references, then its targets); a context manager that shuts them down.

    *Warm*: a fork server started by ``prestart_workers`` has imported the encoder's modules, so workers are forked
    from it ready to embed (in milliseconds) and this process never imports them. Once running, the pool is used
    for every later call, whatever its amount of audio.
    Otherwise the pool is started as before: the encoder is warmed up here, then workers are forked from this
    process (or from a fork server told to preload what the warm-up imported, when torch is loaded here).
    """

    def __init__(self, encoder: Encoder, batch_size: int = 8, workers: int = 2):
        self.encoder, self.batch_size, self.workers = encoder, batch_size, workers
        self.warm = (
            getattr(encoder, "parallel", "thread") == "process"
            and workers >= 2
            and forkserver_preloads(worker_modules(type(encoder)))
        )
        self._method = "forkserver" if self.warm else None
        self._preload: set[str] = set()
        self._stack: contextlib.ExitStack | None = None
        self._executor = None

    def _pool(self, workers: int):
        if not self.warm and not self._preload:
            _warm_up(self.encoder)  # fork: the workers inherit it; forkserver: tells what to preload
            self._preload = _preload(self.encoder)
        return process_pool(workers, _init_worker, (self.encoder, self.batch_size), self._preload, self._method)

    @property
    def running(self) -> bool:
        """Whether the pool has been started (by an earlier call): using it costs nothing more."""
        return self._executor is not None

    def executor(self):
        """The running pool (started now if needed)."""
        if self._executor is None:
            self._stack = contextlib.ExitStack()
            self._executor = self._stack.enter_context(self._pool(self.workers))
        return self._executor

    def discard(self) -> None:
        """Shut the pool down (e.g. broken: a worker died); the next ``executor()`` starts another."""
        stack, self._stack, self._executor = self._stack, None, None
        if stack is not None:
            stack.close()

    def __enter__(self) -> ProcessWorkers:
        return self

    def __exit__(self, *exc_info) -> None:
        """On an error or interrupt, work not yet started is cancelled (``process_pool``); the error propagates."""
        stack, self._stack, self._executor = self._stack, None, None
        if stack is not None:
            stack.__exit__(*exc_info)


def _collect(item: AudioFile, future) -> _Outcome:
    """A worker's outcome for ``item`` (its warnings shown here). ``BrokenProcessPool`` propagates."""
    try:
        outcome, caught = future.result()
    except BrokenProcessPool:
        raise
    except Exception as error:  # noqa: BLE001 - e.g. a result that could not be pickled: this file's failure
        return _decode_failure(item.path, error)
    _show(caught)
    return outcome


def _alone(item: AudioFile, workers: ProcessWorkers) -> _Outcome:
    """Retry one file in a worker of its own after a pool broke: it either succeeds (another file was to blame;
    it will be isolated in turn) or it is the file whose processing kills its worker."""
    with workers._pool(1) as executor:
        try:
            return _collect(item, executor.submit(_embed_in_worker, item))
        except BrokenProcessPool:
            return _Embedded(
                0,
                0,
                error=f"{shown(item.path)}: the worker process decoding and embedding it died "
                "(a crash, or killed: out of memory?)",
            )


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
    source: Callable[[list[AudioFile]], Iterator[tuple[AudioFile, _Outcome]]] | None = None,
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
    outcomes = _in_processes(todo, pool) if in_processes else _in_threads(todo, encoder, workers)
    if source is not None and todo:
        outcomes = source(todo)
    batcher = _Batcher(encoder, batch_size, done, fail)
    with (
        pool if own else contextlib.nullcontext(),  # on an error or Ctrl-C: stop our pool now, not when collected
        contextlib.closing(outcomes),
    ):
        for item, outcome in outcomes:
            if isinstance(outcome, _Undecodable):
                result.failures.append(Failure(role, item.key, "decode", outcome.message))
                result.stats.failed += 1
                bar.update()
                continue
            if isinstance(outcome, _Stream):
                counted = _add_stream(batcher, item, encoder)
                if isinstance(counted, _Undecodable):
                    result.failures.append(Failure(role, item.key, "decode", counted.message))
                    result.stats.failed += 1
                    bar.update()
                    continue
                n_windows, n_samples = counted
            elif isinstance(outcome, _Embedded):
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
