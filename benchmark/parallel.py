"""Bounded look-ahead over a pool: decode the next files while the model works on this one (threads), or decode
and embed whole files in worker processes (``process_pool``, for CPU feature extraction in Python/numpy).

``prestart_forkserver`` starts the fork server early, so that it imports what the workers need (librosa, …) in
the background while this process sets the run up; workers are then forked from it, warm, in milliseconds.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
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


#: modules the fork server that ``prestart_forkserver`` started imports (None: this process started none)
_PRELOADED: frozenset[str] | None = None


def prestart_forkserver(preload: Iterable[str]) -> bool:
    """Start this process's fork server now, importing ``preload`` (module names) in the background; returns
    whether a fork server started here is running and preloads every module of ``preload``.

    Nothing waits for the imports: the server takes them while this process goes on (imports MLflow, sets the
    store up, hashes the files), and forks the first worker when they are done. A server is a fresh interpreter
    (never a fork of this process), so torch or threads here do not matter. Only the first call starts one (the
    preload list is fixed then); false where there is no ``forkserver`` start method or in a daemonic process.
    """
    global _PRELOADED
    wanted = frozenset(preload)
    if _PRELOADED is not None:
        return wanted <= _PRELOADED and _forkserver_alive()
    if "forkserver" not in multiprocessing.get_all_start_methods() or multiprocessing.current_process().daemon:
        return False
    from multiprocessing import forkserver

    if getattr(forkserver._forkserver, "_forkserver_pid", None) is not None:  # started before, preload unknown
        return False
    multiprocessing.get_context("forkserver").set_forkserver_preload(_preload_order(wanted))
    try:
        forkserver.ensure_running()
    except OSError:  # pragma: no cover - cannot start a process: workers start the usual way
        return False
    _PRELOADED = wanted
    import atexit

    atexit.register(stop_forkserver)
    return True


def _preload_order(modules: Iterable[str]) -> list[str]:
    """The fork server's imports, the numba-cache guard first (it must be in place before librosa is imported)."""
    return ["benchmark.numba_cache", *sorted(set(modules) - {"benchmark.numba_cache"})]


def stop_forkserver() -> None:
    """End the fork server now (SIGTERM, no clean-up: it holds nothing, its workers are done): when the runs it was
    started for no longer need it (its imports hold hundreds of MB), and at exit, instead of letting it notice this
    process is gone and tear down librosa, matplotlib & co. (1-2 s during which it, and the resource tracker waiting
    for it, keep this process's stdout open). Processes forked from it end with it. It is then forgotten: a later
    pool, or ``prestart_forkserver``, starts a new one."""
    global _PRELOADED
    from multiprocessing import forkserver

    server = forkserver._forkserver
    pid = getattr(server, "_forkserver_pid", None)
    if pid is not None:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
        with contextlib.suppress(OSError):
            server._stop()  # (multiprocessing's own): reaps it, closes its socket, forgets it
    _PRELOADED = None


def forkserver_preloads(modules: Iterable[str]) -> bool:
    """Whether ``prestart_forkserver`` started a fork server (still running) that preloads all of ``modules``."""
    return _PRELOADED is not None and frozenset(modules) <= _PRELOADED and _forkserver_alive()


def forkserver_running() -> bool:
    """Whether ``prestart_forkserver`` started a fork server that is still running."""
    return _PRELOADED is not None and _forkserver_alive()


def forkserver_executor(
    workers: int, initializer: Callable[..., None] | None = None, initargs: tuple = ()
) -> ProcessPoolExecutor:
    """A pool of ``workers`` processes forked from the fork server (``prestart_forkserver``), which ignore Ctrl-C
    and end with this process; the caller shuts it down. Its first ``submit`` waits until the server has done its
    imports."""
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("forkserver"),
        initializer=_start_worker,
        initargs=(initializer, initargs, os.getpid()),
    )


def _forkserver_alive() -> bool:
    from multiprocessing import forkserver

    pid = getattr(forkserver._forkserver, "_forkserver_pid", None)
    if pid is None:
        return False
    try:  # without reaping it (WNOWAIT): multiprocessing reaps its own server when it restarts or stops it
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None
    except ChildProcessError:
        return False


def _die_with_parent() -> None:
    """Linux: the kernel kills this worker when the process that started it dies (even by SIGKILL), so a killed
    run leaves no orphaned workers behind. Best effort elsewhere."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass


def _die_with(owner: int) -> None:
    """A worker forked from a fork server (its parent is the server, not ``owner``, the process that asked for
    it): a watcher thread ends it as soon as ``owner`` is gone, even killed by SIGKILL (a pidfd; polled once a
    second where there is none) — otherwise it would wait forever on its task queue, whose other end it holds."""
    import threading

    try:
        pidfd = os.pidfd_open(owner)
    except ProcessLookupError:
        os._exit(1)
    except (AttributeError, OSError):  # pragma: no cover - no pidfd (old kernel, not Linux)
        pidfd = None

    def watch() -> None:
        if pidfd is not None:
            import select

            select.select([pidfd], [], [])
        else:  # pragma: no cover
            import time

            while True:
                time.sleep(1.0)
                try:
                    os.kill(owner, 0)
                except ProcessLookupError:
                    break
        os._exit(1)

    threading.Thread(target=watch, name="musicbench-owner-watch", daemon=True).start()


#: glibc's malloc in a worker: blocks up to this size come from its heap (not a fresh mapping each), and ...
HEAP_BLOCK_MAX = 32 << 20
#: ... up to this much freed heap is kept for the next file instead of being given back to the OS
KEPT_FREE = 128 << 20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameters (malloc.h)


def keep_freed_memory() -> bool:
    """Make this process's freed memory reusable by its next file (a worker embeds or scores one file after
    another): blocks up to ``HEAP_BLOCK_MAX`` come from the heap and up to ``KEPT_FREE`` of it stays mapped when
    freed. With glibc's defaults every large array (a decoded file, its frames) was a fresh mapping, unmapped when
    freed, so each file faulted in its tens of MB again as new zeroed pages: 28 % of ``mfcc``'s time per file (60
    files of 30 s: 174,000 page faults, 280 with this; ``perf/worker_memory.py``). The peak is unchanged: only what
    was freed is kept, at most ``KEPT_FREE``. Returns whether it applied (glibc only; best effort elsewhere)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, HEAP_BLOCK_MAX) and libc.mallopt(_M_TRIM_THRESHOLD, KEPT_FREE))
    except (OSError, AttributeError):  # pragma: no cover - no mallopt (not glibc)
        return False


def _start_worker(initializer: Callable[..., None] | None, initargs: tuple, owner: int | None = None) -> None:
    _die_with_parent()
    keep_freed_memory()
    if owner is not None and os.getppid() != owner:
        _die_with(owner)
    # Ctrl-C reaches the whole process group: the parent handles it (and cancels the pool); a SIGTERM handler
    # inherited from the parent (tracking's "end the run KILLED") means nothing here.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if initializer is not None:
        initializer(*initargs)


@contextlib.contextmanager
def process_pool(
    workers: int,
    initializer: Callable[..., None] | None = None,
    initargs: tuple = (),
    preload: Iterable[str] = (),
    method: str | None = None,
) -> Iterator[ProcessPoolExecutor]:
    """A pool of ``workers`` processes (``method``, default ``start_method()``) that ignore Ctrl-C and die with
    their parent.

    On an error or interrupt in the parent, work not yet started is cancelled and the running calls (one file
    per worker) are waited for. ``preload``: modules a forkserver imports once for all its workers (with fork,
    workers simply inherit the parent's).
    """
    method = method or start_method()
    context: Any = multiprocessing.get_context(method)
    if method == "forkserver" and _PRELOADED is None:
        context.set_forkserver_preload(_preload_order(preload))  # only read when the server first starts
    pool = ProcessPoolExecutor(
        max_workers=max(1, workers),
        mp_context=context,
        initializer=_start_worker,
        initargs=(initializer, initargs, os.getpid()),
    )
    try:
        yield pool
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


_HELPER: list[ProcessPoolExecutor] = []  # the spare process ``prestart_helper`` started (kept for later calls)


def prestart_helper(modules: Iterable[str], warm: Callable[[], None] | None = None) -> bool:
    """Start a spare process now — a fresh interpreter (``spawn``) that imports ``modules`` and runs ``warm()`` in
    the background — for ``background_call`` to run work in later (e.g. drawing a run's figures while the run is
    recorded). It is kept for every later call of this process and ends with it. Returns whether it runs."""
    if _HELPER:
        return True
    if multiprocessing.current_process().daemon:
        return False
    pool = ProcessPoolExecutor(
        max_workers=1,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_start_helper,
        initargs=(tuple(sorted(set(modules))), warm, os.getpid()),
    )
    try:
        pool.submit(int)  # starts the process now; its imports run while this process goes on
    except Exception:  # noqa: BLE001 - cannot start a process: work is done in this process instead
        pool.shutdown(wait=False, cancel_futures=True)
        return False
    _HELPER.append(pool)
    import atexit

    atexit.register(_stop_helper)
    return True


#: niceness of the processes that work ahead in the background (the spare process, hashing ahead): on a machine
#: whose cores are all busy (start-up: MLflow here, imports in the fork server), they take what the run's own
#: critical path leaves, instead of slowing it down
BACKGROUND_NICE = 10


def lower_priority() -> None:
    """Make this (background) process nicer by ``BACKGROUND_NICE``; best effort."""
    with contextlib.suppress(OSError, AttributeError):
        os.nice(BACKGROUND_NICE)


def _start_helper(modules: tuple[str, ...], warm: Callable[[], None] | None, owner: int) -> None:
    import atexit
    import importlib

    _start_worker(None, (), owner)
    lower_priority()
    # A spawned interpreter leaves with sys.exit: tearing matplotlib & co. down took ≈0.8 s, which the pool's owner
    # waits for at its own exit. Nothing here needs a clean teardown: leave at once (forked workers do the same).
    atexit.register(os._exit, 0)
    for name in modules:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    if warm is not None:
        with contextlib.suppress(Exception):
            warm()


def _stop_helper() -> None:
    """At exit: end the spare process now, whatever it is doing (it holds nothing of value)."""
    while _HELPER:
        pool = _HELPER.pop()
        pool.shutdown(wait=False, cancel_futures=True)
        for process in list((getattr(pool, "_processes", None) or {}).values()):
            with contextlib.suppress(Exception):
                process.kill()


@contextlib.contextmanager
def background_call(fn: Callable[..., R], *args: Any) -> Iterator[Future | None]:
    """``fn(*args)`` in another process while the caller goes on: the spare process of ``prestart_helper`` (warm), or
    a process forked from the fork server of ``prestart_forkserver``. Yields its future, or None when there is
    neither (then the caller does the work itself). When the block ends, a call still running is waited for."""
    if _HELPER:
        future = _HELPER[0].submit(fn, *args)
        try:
            yield future
        finally:
            try:
                future.result()
            except BrokenProcessPool:  # it died: later calls take another way
                _HELPER.pop(0).shutdown(wait=False)
            except BaseException:  # noqa: BLE001, S110 - the caller reads the future's own outcome
                pass
        return
    if not forkserver_running():
        yield None
        return
    pool = forkserver_executor(1)
    try:
        yield pool.submit(fn, *args)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
