"""Bounded look-ahead over a pool: decode the next files while the model works on this one (threads), or decode
and embed whole files in worker processes (``process_pool``, for CPU feature extraction in Python/numpy)."""

from __future__ import annotations

import contextlib
import multiprocessing
import signal
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def prefetch_map(
    fn: Callable[[T], R], items: Iterable[T], workers: int, depth: int | None = None, executor: Executor | None = None
) -> Iterator[tuple[T, Future]]:
    """Yield ``(item, future of fn(item))`` in order, keeping at most ``depth`` calls in flight.

    Unlike ``Executor.map`` this never submits the whole input at once, so memory stays bounded by
    ``depth`` decoded files however large the folder is. Exceptions stay inside the futures, so the caller
    decides per item what a failure means. ``executor``: submit there (e.g. a ``process_pool``; it is left
    open) instead of a thread pool of ``workers`` made for this call.
    """
    depth = depth or 2 * max(1, workers)
    with contextlib.ExitStack() as stack:
        pool = executor or stack.enter_context(ThreadPoolExecutor(max_workers=max(1, workers)))
        pending: deque[tuple[T, Future]] = deque()
        for item in items:
            pending.append((item, pool.submit(fn, item)))
            if len(pending) >= depth:
                yield pending.popleft()
        while pending:
            yield pending.popleft()


def start_method() -> str:
    """How worker processes start: ``fork`` (≈0.1 s for two workers that inherit every module the parent has
    imported) on Linux while torch is not loaded; otherwise ``forkserver`` (a clean process: a torch model, or
    the OpenMP threads torch starts, is never forked into a worker), or ``spawn`` where that is missing."""
    available = multiprocessing.get_all_start_methods()
    if sys.platform.startswith("linux") and "torch" not in sys.modules and "fork" in available:
        return "fork"
    return "forkserver" if "forkserver" in available else "spawn"


def _die_with_parent() -> None:
    """Linux: the kernel kills this worker when the process that started it dies (even by SIGKILL), so a killed
    run leaves no orphaned workers behind. Best effort elsewhere."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass


def _start_worker(initializer: Callable[..., None] | None, initargs: tuple) -> None:
    _die_with_parent()
    # Ctrl-C reaches the whole process group: the parent handles it (and cancels the pool); a SIGTERM handler
    # inherited from the parent (tracking's "end the run KILLED") means nothing here.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if initializer is not None:
        initializer(*initargs)


@contextlib.contextmanager
def process_pool(
    workers: int, initializer: Callable[..., None] | None = None, initargs: tuple = (), preload: Iterable[str] = ()
) -> Iterator[ProcessPoolExecutor]:
    """A pool of ``workers`` processes (``start_method()``) that ignore Ctrl-C and die with their parent.

    On an error or interrupt in the parent, work not yet started is cancelled and the running calls (one file
    per worker) are waited for. ``preload``: modules a forkserver imports once for all its workers (with fork,
    workers simply inherit the parent's).
    """
    method = start_method()
    context: Any = multiprocessing.get_context(method)
    if method == "forkserver":
        context.set_forkserver_preload(sorted(set(preload)))  # only read when the server first starts
    pool = ProcessPoolExecutor(
        max_workers=max(1, workers), mp_context=context, initializer=_start_worker, initargs=(initializer, initargs)
    )
    try:
        yield pool
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
