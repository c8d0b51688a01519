"""One process at a time compiles librosa's numba code into its on-disk cache.

librosa compiles its gufuncs (``@guvectorize(..., cache=True)``) when a submodule is imported, and numba writes
each of them into *two* cache files. Two processes compiling the same gufunc at once can leave one process's
file paired with the other's, and every process that loads that pair later crashes with a segmentation fault
(numba issue #10128, open). A run imports librosa in several processes at once (this one, the fork server of the
feature workers, Ray actors), so on a fresh install — an empty cache — the first run corrupted it for good.

``guard_imports`` (installed when ``benchmark`` is imported) makes every import of a module of ``GUARDED`` hold an
exclusive lock on one file while it executes: one process compiles and writes the cache, the others wait and
then load it. Threads of one process share the lock (numba serialises compilation within a process). A lock
that cannot be had within ``WAIT_SECONDS`` (a stuck process) is given up with a warning, never waited on forever.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.abc
import os
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator

#: top-level packages whose import compiles numba code into a shared on-disk cache
GUARDED = frozenset({"librosa"})
WAIT_SECONDS = 300.0

_mutex = threading.Lock()
_depth = 0
_fd: int | None = None


def lock_path(package_dir: str) -> str:
    """The lock file of one cache: numba's user cache folder when ``NUMBA_CACHE_DIR`` is set, else the package's own
    folder (numba writes next to the sources). One temp file per cache, shared by every process of this machine
    (``flock`` needs only read access, so any user can take it)."""
    cache = os.environ.get("NUMBA_CACHE_DIR") or os.path.realpath(package_dir)
    digest = hashlib.sha1(cache.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    return os.path.join(tempfile.gettempdir(), f"musicbench-numba-{digest}.lock")


def _take(fd: int, path: str) -> bool:
    import fcntl

    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() > deadline:
                warnings.warn(
                    f"another process has held {path} for over {WAIT_SECONDS:.0f} s; importing librosa "
                    "without it (if a later run crashes in librosa, delete librosa's __pycache__/*.nb[ic] files)",
                    RuntimeWarning,
                    stacklevel=2,
                )
                return False
            time.sleep(0.05)
        except OSError:
            return False


@contextlib.contextmanager
def held(package_dir: str) -> Iterator[None]:
    """Hold the lock of the cache of the package in ``package_dir`` (re-entrant, shared by this process's threads;
    nested imports of one package keep the lock the outermost took); best effort where files cannot be locked (no
    ``fcntl``, an unwritable temp folder): then nothing is held."""
    global _depth, _fd
    with _mutex:
        if _depth == 0:
            path = lock_path(package_dir)
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o666)
            except OSError:
                fd = None
            if fd is not None and not _take(fd, path):
                os.close(fd)
                fd = None
            _fd = fd
        _depth += 1
    try:
        yield
    finally:
        with _mutex:
            _depth -= 1
            if _depth == 0 and _fd is not None:
                os.close(_fd)  # closing the only descriptor releases the lock
                _fd = None


def _forget_in_child() -> None:
    """A forked child shares the parent's open lock file: it closes its copy (the lock stays the parent's until the
    parent closes its own; kept open here, it would hold the lock for the child's whole life) and holds nothing."""
    global _depth, _fd, _mutex
    if _fd is not None:
        with contextlib.suppress(OSError):
            os.close(_fd)
    _mutex, _depth, _fd = threading.Lock(), 0, None


class _LockedLoader(importlib.abc.Loader):
    """The real loader, executing the module while the cache lock is held."""

    def __init__(self, loader, package_dir: str):
        self._loader, self._package_dir = loader, package_dir

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        with held(self._package_dir):
            self._loader.exec_module(module)

    def __getattr__(self, name):  # get_source, get_resource_reader, is_package, …
        return getattr(self._loader, name)


class _GuardedFinder(importlib.abc.MetaPathFinder):
    """Finds modules of ``GUARDED`` through the other finders and hands back their spec with a locking loader."""

    def find_spec(self, name, path, target=None):
        top = name.partition(".")[0]
        if top not in GUARDED:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is None:
                continue
            package = sys.modules.get(top) if top != name else None
            locations = list(getattr(package, "__path__", None) or spec.submodule_search_locations or [])
            if locations and spec.loader is not None and hasattr(spec.loader, "exec_module"):
                spec.loader = _LockedLoader(spec.loader, locations[0])
            return spec
        return None


def guard_imports() -> None:
    """Install the guard for this process (idempotent); a no-op where files cannot be locked."""
    if os.name != "posix" or any(isinstance(finder, _GuardedFinder) for finder in sys.meta_path):
        return
    sys.meta_path.insert(0, _GuardedFinder())
    os.register_at_fork(after_in_child=_forget_in_child)
