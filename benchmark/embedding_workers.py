"""Worker processes of the embed stage: each file decoded, cut and embedded in a worker (``embed_one``), for encoders
that say ``parallel = "process"``: CPU feature extraction in Python/numpy when there is enough audio for it to pay,
a model loaded in each worker (CLAP on the CPU) whenever the fork server has imported its package (``use_processes``).
``ProcessWorkers`` keeps one pool for a run's references and targets; ``prestart_workers`` starts a fork server that
imports the encoders' packages while the run sets itself up.
"""

from __future__ import annotations

import contextlib
import functools
import multiprocessing
import os
import sys
import warnings
from collections.abc import Iterable, Iterator
from concurrent.futures.process import BrokenProcessPool

import numpy as np

from encoders.base import Encoder, EncoderUnavailable
from encoders.pretrained import PretrainedEncoder

from .data import AudioFile, shown
from .embedding_file import Embedded, Outcome, Undecodable, decode_failure, embed_one
from .parallel import forkserver_preloads, prefetch_map, prestart_forkserver, process_pool, stop_forkserver

#: The process pool is used only when the files to embed hold at least this many bytes: below it, the whole job
#: takes well under a second in threads and a pool (≈0.1 s to fork two workers, and one warm-up call) cannot win.
PROCESS_MIN_BYTES = 8 << 20
#: files in flight per worker process: results are small (window embeddings, not audio), so a deep queue
#: keeps every worker busy when file lengths differ.
PROCESS_DEPTH_PER_WORKER = 8

_WORKER: dict[str, object] = {}  # in a worker process: the encoder and batch size it embeds with
_Warning = tuple[str, type, str, int]  # text, category, file name, line number


def _init_worker(encoder: Encoder, batch_size: int, workers: int = 1) -> None:
    _WORKER.update(encoder=encoder, batch_size=batch_size)
    encoder.in_worker(workers)
    try:
        with warnings.catch_warnings(record=True) as caught:  # shown by the parent with the first file's
            encoder.load_model()  # a model loaded in each worker (``PretrainedEncoder``, ``parallel = "process"``)
    except EncoderUnavailable as error:  # the run's error: raised for the first file, in the parent (``_collect``)
        _WORKER["unusable"] = error
        return
    finally:
        _WORKER["init_warnings"] = _as_sent(caught)
    if not isinstance(encoder, PretrainedEncoder):  # (a model's first call is no slower than a warm-up's would be)
        _warm_up(encoder)  # almost free when forked from a warmed parent


def _embed_file(item: AudioFile) -> Embedded | Undecodable:
    if "unusable" in _WORKER:
        raise _WORKER["unusable"]
    return embed_one(item, _WORKER["encoder"], _WORKER["batch_size"])


def _embed_in_worker(item: AudioFile, busy: int | None = None) -> tuple[Embedded | Undecodable, list[_Warning]]:
    """Runs in a worker process. A bad file does not raise: the outcome says what happened, as text (no exception
    has to survive pickling). An unusable model raises (``EncoderUnavailable``): that is the run's error. Warnings
    (the worker's start-up's with its first file's) are sent back to be shown by the parent, once, as threads would
    show them. ``busy``: how many workers embed at once for this call (``Encoder.in_worker``)."""
    if busy is not None and "encoder" in _WORKER:
        _WORKER["encoder"].in_worker(busy)
    with warnings.catch_warnings(record=True) as caught:
        outcome = _embed_file(item)
    return outcome, _WORKER.pop("init_warnings", []) + _as_sent(caught)


def _as_sent(caught: list[warnings.WarningMessage]) -> list[_Warning]:
    return [(str(w.message), w.category, w.filename, w.lineno) for w in caught]


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
    if getattr(encoder, "parallel", "thread") != "process" or workers < 2 or not todo:
        return False
    if multiprocessing.current_process().daemon:  # a daemonic process may not start children
        return False
    if isinstance(encoder, PretrainedEncoder) and not at_any_size:
        # a model loaded in each worker: worth it whenever the fork server has imported its package ahead, so that
        # this process never has to (and the model loads in the workers at once); else it is loaded here, once
        return forkserver_preloads(worker_modules(type(encoder)))
    if len(todo) < 2:
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


def embed_in_processes(todo: list[AudioFile], workers: ProcessWorkers) -> Iterator[tuple[AudioFile, Outcome]]:
    start, depth = 0, PROCESS_DEPTH_PER_WORKER * workers.workers
    # a call with fewer files than workers leaves cores idle: each file's worker then takes their share
    embed = functools.partial(_embed_in_worker, busy=min(workers.workers, len(todo)))
    while start < len(todo):
        executor = workers.executor()
        try:
            for item, future in prefetch_map(embed, todo[start:], workers.workers, depth, executor):
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
    started = prestart_forkserver(set().union(*map(worker_modules, process)) | set(extra))
    _PLANNED[0] = len(process) if started else 0
    return started


#: how many of the encoders ``prestart_workers`` started the fork server for have not finished their embed stage:
#: when the last one has (``ProcessWorkers`` closed), the fork server is stopped, since the rest of the run (the
#: evaluate stage) does not use it, and its imports (laion_clap's: ≈ 0.4 GB) would only take memory
_PLANNED = [0]


class ProcessWorkers:
    """The worker processes of one encoder, started on first use and kept for every ``embed_files`` call made with
    them (a run's references, then its targets); a context manager that shuts them down.

    *Warm*: a fork server started by ``prestart_workers`` has imported the encoder's modules, so workers are forked
    from it ready to embed (in milliseconds) and this process never imports them. Once running, the pool is used
    for every later call, whatever its amount of audio.
    Otherwise the pool is started as before: the encoder is warmed up here, then workers are forked from this
    process (or from a fork server told to preload what the warm-up imported, when torch is loaded here). A model
    (``PretrainedEncoder``) is never loaded here for that: its fork server preloads its ``worker_modules``.
    Each worker computes with its share of the cores (``Encoder.in_worker``).
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
            if isinstance(self.encoder, PretrainedEncoder):  # its model is loaded in the workers, never here
                self._preload = worker_modules(type(self.encoder))  # (its package, imported with the runtime's fixes)
            else:
                _warm_up(self.encoder)  # fork: the workers inherit it; forkserver: tells what to preload
                self._preload = _preload(self.encoder)
        initargs = (self.encoder, self.batch_size, workers)
        return process_pool(workers, _init_worker, initargs, self._preload, self._method)

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
        """On an error or interrupt, work not yet started is cancelled (``process_pool``); the error propagates.
        The last encoder the fork server was prestarted for stops it (``_PLANNED``)."""
        stack, self._stack, self._executor = self._stack, None, None
        if stack is not None:
            stack.__exit__(*exc_info)
        if getattr(type(self.encoder), "parallel", "thread") == "process" and _PLANNED[0] > 0:
            _PLANNED[0] -= 1
            if _PLANNED[0] == 0:
                stop_forkserver()


def _collect(item: AudioFile, future) -> Outcome:
    """A worker's outcome for ``item`` (its warnings shown here). ``BrokenProcessPool`` propagates."""
    try:
        outcome, caught = future.result()
    except (BrokenProcessPool, EncoderUnavailable):  # a dead worker is looked into; an unusable model ends the run
        raise
    except Exception as error:  # noqa: BLE001 - e.g. a result that could not be pickled: this file's failure
        return decode_failure(item.path, error)
    _show(caught)
    return outcome


def _alone(item: AudioFile, workers: ProcessWorkers) -> Outcome:
    """Retry one file in a worker of its own after a pool broke: it either succeeds (another file was to blame;
    it will be isolated in turn) or it is the file whose processing kills its worker."""
    with workers._pool(1) as executor:
        try:
            return _collect(item, executor.submit(_embed_in_worker, item))
        except BrokenProcessPool:
            return Embedded(
                0,
                0,
                error=f"{shown(item.path)}: the worker process decoding and embedding it died "
                "(a crash, or killed: out of memory?)",
            )
