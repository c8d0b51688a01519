"""Content hashes computed ahead of a run, while it starts up (``start``), for its hash stage to take (``take``).

A run's first second or two go to importing MLflow and opening the store, while the fork server of the workers
imports the encoder's packages (``parallel.prestart_forkserver``). As soon as that server is up, a process forked
from it hashes the dataset's files — those the stat index (``hash_index``) does not know — on the core that would
otherwise wait for the store, so the hash stage finds most digests done.

Nothing is trusted blindly: ``take`` hands a digest over only when the file's stat (device, inode, size, mtime,
ctime) is the one taken before it was read, and the file was not racily clean then (``hash_index.racily_clean``,
the stat index's rule). A file not hashed yet, changed meanwhile, unreadable, or a failure of the process itself:
the hash stage hashes it as before, and reports any error. Without a fork server (encoders that embed in this
process) nothing is started. Files are handed to the process only once it runs: a fork server still importing
(CLAP's takes seconds) makes the hash stage wait for nothing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterable
from concurrent.futures import Future
from pathlib import Path

from .hash_index import HashIndex, racily_clean, stat_signature

FILES_PER_TASK = 8  # files hashed per task: few futures for a large catalogue, little waiting for one in progress

_Digests = dict[str, tuple[tuple, int, str] | None]  # path → (signature, hashed at (ns), sha256); None: not hashed


class _Prehash:
    def __init__(self) -> None:
        self.futures: dict[str, Future] = {}  # path → the future of its task
        self.lock = threading.Lock()
        self.closed = False
        self.executor = None


_STATE: _Prehash | None = None
_INDEX: list[HashIndex] = []  # in the hashing process: the stat index, to skip the files it knows
_EXIT_HOOK: list[bool] = []  # whether ``finish`` is registered to run at exit


def start(folders: Iterable[str | os.PathLike | None], cache_dir: str | os.PathLike | None) -> bool:
    """Hash the audio files below ``folders`` in a process forked from the run's fork server, in the background.

    Returns whether it started (a fork server is up and a folder holds audio). Folders are listed as the run will
    list them; a folder that cannot be listed is skipped quietly (the run reports it)."""
    from . import data
    from .parallel import forkserver_running

    finish()
    if not forkserver_running():
        return False
    paths: list[str] = []
    quiet = logging.getLogger(data.__name__)
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # symlink-loop warnings: the run's own listing gives them
    try:
        for folder in folders:
            if folder is None:
                continue
            with contextlib.suppress(Exception):
                paths.extend(os.fspath(item.path) for item in data.discover(folder, "prehash"))
    finally:
        quiet.setLevel(level)
    paths = list(dict.fromkeys(paths))
    if not paths:
        return False
    global _STATE
    if not _EXIT_HOOK:  # before concurrent.futures' own exit hook, which would finish every pending task first
        threading._register_atexit(finish)  # the hook ProcessPoolExecutor itself uses (runs before atexit's)
        _EXIT_HOOK.append(True)
    state = _STATE = _Prehash()
    threading.Thread(target=_submit, args=(state, paths, cache_dir), name="musicbench-prehash", daemon=True).start()
    return True


def _submit(state: _Prehash, paths: list[str], cache_dir) -> None:
    """In a thread: forking the first process waits for the fork server to finish its imports; this process goes
    on meanwhile."""
    from .parallel import forkserver_executor

    try:
        executor = forkserver_executor(1, _init, (os.fspath(cache_dir) if cache_dir is not None else None,))
    except Exception:  # noqa: BLE001 - no process: the hash stage hashes everything, as without this module
        return
    try:
        # Until the fork server has done its imports, the process cannot start: files are handed over only once it
        # runs, so that the hash stage never waits for a process still starting (nor for this lock) meanwhile.
        executor.submit(_started).result()
    except Exception:  # noqa: BLE001 - as above
        executor.shutdown(wait=False, cancel_futures=True)
        return
    with state.lock:
        if state.closed:
            executor.shutdown(wait=False, cancel_futures=True)
            return
        state.executor = executor
    for begin in range(0, len(paths), FILES_PER_TASK):
        chunk = paths[begin : begin + FILES_PER_TASK]
        with state.lock:
            if state.closed:
                return
            try:
                future = executor.submit(_hash_chunk, chunk)
            except Exception:  # noqa: BLE001 - the pool broke or was shut down: the hash stage does the rest
                return
            for path in chunk:
                state.futures[path] = future


def _started() -> None:
    """A first, empty task: its result says the hashing process runs."""


def _init(cache_dir: str | None) -> None:
    import warnings

    from .parallel import lower_priority

    lower_priority()  # it fills the time the run's start-up leaves a core idle

    with warnings.catch_warnings():  # an unusable index: the run's own hash stage says so, once
        warnings.simplefilter("ignore")
        _INDEX.append(HashIndex(cache_dir))


def _hash_chunk(paths: list[str]) -> _Digests:
    """In the hashing process: each file's stat (before reading), when it was taken, and its sha256; None for a
    file the stat index knows (the hash stage finds it there) or one that cannot be read (the stage says why)."""
    from .data import content_hash

    out: _Digests = {}
    for path in paths:
        out[path] = None
        if _INDEX[0].lookup(path) is not None:
            continue
        try:
            hashed_at = time.time_ns()
            info = os.stat(path)
            out[path] = (stat_signature(info), hashed_at, content_hash(Path(path)))
        except Exception:  # noqa: BLE001, S112 - the hash stage reads it again and reports the error
            continue
    return out


def take(path: str | os.PathLike, info: os.stat_result | None) -> str | None:
    """The sha256 of ``path`` hashed ahead, if it was and ``info`` (its stat now, before any read by the caller)
    shows it unchanged since; None otherwise (the caller hashes it). A task not started yet is cancelled (the
    caller is faster doing it than waiting); one in progress is waited for."""
    state = _STATE
    if state is None or info is None:
        return None
    with state.lock:
        future = state.futures.get(os.fspath(path))
    if future is None or (not future.done() and future.cancel()):
        return None
    try:
        found = future.result().get(os.fspath(path))
    except Exception:  # noqa: BLE001 - e.g. the process died: hashed by the caller
        return None
    if found is None:
        return None
    signature, hashed_at, digest = found
    if signature != stat_signature(info) or racily_clean(info, hashed_at):
        return None
    return digest


def finish() -> None:
    """Stop hashing ahead (the hash stage is over, or another run starts): pending tasks are cancelled and the
    process ends once its current task is done."""
    global _STATE
    state, _STATE = _STATE, None
    if state is None:
        return
    with state.lock:
        state.closed = True
        executor = state.executor
    if executor is not None:
        executor.shutdown(wait=False, cancel_futures=True)
