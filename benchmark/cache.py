"""Content-addressed store of per-file arrays (embeddings, metric features).

Layout: ``<root>/<namespace>/<hash[:2]>/<hash>.npy`` where ``namespace`` is a hash of what computed the array
(encoder model card + weights sha256 + preprocessing, or a metric's identity) and ``hash`` the file's content
sha256. So a changed file alone is recomputed, and a changed model or parameter misses the whole namespace.
Every write goes to a temporary file in the same folder and is renamed into place (atomic on POSIX): a killed
run leaves no partial entry, and two runs writing the same entry both leave a complete one. A run killed
mid-write can leave a hidden ``.tmp-*.partial`` file: never read, never mistaken for an entry, safe to delete.

Entries are validated on read (``EntrySpec``): a regular file under a size cap, an array of an expected dtype
(floating point for embeddings; a metric may declare others, e.g. melody's int8 pitch classes) and shape, every
value finite and, where declared, within a range. Anything else (an integer or boolean array as an embedding, a
wrong length, a FIFO or a folder in an entry's place, a torn file) is a miss: the value is computed again,
overwrites the entry, and is counted in ``repaired`` (logged as ``n_cache_repaired``). A write that fails (a full
disk, a read-only folder) never fails the run: it warns once, and the run carries on uncached.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import logging
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

TEMP_PREFIX = ".tmp-"
#: the largest entry read back (a per-file embedding or feature sequence is far smaller; ~4 h of 10 ms frames is 11 MB)
MAX_ENTRY_BYTES = 256 * 1024 * 1024
#: write errors after which the cache stops trying to write for the rest of the run
_FATAL_WRITE_ERRORS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT}


@dataclass(frozen=True)
class EntrySpec:
    """What a valid entry looks like: ``shape`` with ``None`` for a free axis (``(512,)``, ``(None,)``)."""

    shape: tuple[int | None, ...] = (None,)
    min_size: int = 1  # an empty array is never a valid embedding or feature sequence
    dtypes: tuple[str, ...] = ("float32", "float64")
    value_range: tuple[float, float] | None = None  # inclusive bounds of every value, when they are known

    def problem(self, value: np.ndarray) -> str | None:
        """Why ``value`` is not a valid entry, or None."""
        if value.dtype.name not in self.dtypes:
            return f"dtype {value.dtype} (expected {' or '.join(self.dtypes)})"
        if value.ndim != len(self.shape) or any(want not in (None, got) for want, got in zip(self.shape, value.shape)):
            return f"shape {value.shape} (expected {tuple('*' if n is None else n for n in self.shape)})"
        if value.size < self.min_size:
            return "empty"
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            return "non-finite values"
        if (
            self.value_range is not None
            and value.size
            and (value.min() < self.value_range[0] or value.max() > self.value_range[1])
        ):
            return f"values outside {list(self.value_range)}"
        return None


def namespace(identity: dict[str, Any]) -> str:
    """A stable short hash of a JSON-serialisable identity."""
    text = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


class ArrayCache:
    """Arrays keyed by (namespace identity, content hash). ``root=None`` disables caching."""

    def __init__(self, root: str | os.PathLike | None, identity: dict[str, Any], spec: EntrySpec | None = None):
        self.identity = identity
        self.namespace = namespace(identity)
        self.spec = spec or EntrySpec()
        self.folder = Path(root).expanduser() / self.namespace if root is not None else None
        self.hits = 0
        self.misses = 0
        self.repaired = 0  # invalid entries found (and re-computed by the caller)
        self.write_failures = 0
        self._writable = True
        if self.folder is not None:
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
                info = self.folder / "identity.json"
                if not info.exists():
                    _atomic_write_bytes(info, json.dumps(identity, indent=2, sort_keys=True, default=str).encode())
            except OSError as error:
                self._write_failed(error)

    def _path(self, content_hash: str) -> Path:
        assert self.folder is not None
        return self.folder / content_hash[:2] / f"{content_hash}.npy"

    def get(self, content_hash: str) -> np.ndarray | None:
        """The entry, or None when it is absent or invalid (an invalid one is counted in ``repaired``)."""
        if self.folder is None:
            self.misses += 1
            return None
        path = self._path(content_hash)
        try:
            info = path.lstat()
        except OSError:
            self.misses += 1  # absent (or an unreadable folder): computed and written as usual
            return None
        value, problem = None, None
        if not stat.S_ISREG(info.st_mode):
            problem = "not a regular file"  # checked before opening: a FIFO would block the read for ever
        elif info.st_size > MAX_ENTRY_BYTES:
            problem = f"{info.st_size} bytes, over the {MAX_ENTRY_BYTES}-byte cap"
        else:
            try:
                value = np.load(path, allow_pickle=False)
                problem = self.spec.problem(value)
            except (ValueError, OSError, EOFError) as error:
                problem = f"unreadable ({type(error).__name__})"
        if problem is not None:
            self.misses += 1
            self.repaired += 1
            (log.warning if self.repaired == 1 else log.debug)(
                "cache entry %s is invalid (%s); computing it again (further ones are counted, not shown)",
                path,
                problem,
            )
            return None
        self.hits += 1
        return value

    def put(self, content_hash: str, value: np.ndarray) -> None:
        """Store ``value``; a failed write warns (once) and leaves the entry uncached."""
        if self.folder is None or not self._writable:
            return
        path = self._path(content_hash)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.is_dir() and not path.is_symlink():
                raise IsADirectoryError(errno.EISDIR, "a folder stands in the entry's place", str(path))
            buffer = io.BytesIO()
            np.save(buffer, np.ascontiguousarray(value), allow_pickle=False)
            # No fsync: it cost ~5 ms per entry (as much as embedding a 0.05 s file), and killed runs do not need
            # it (a kill cannot tear a renamed file). Only an OS crash / power loss could leave a torn entry; an
            # empty or headerless one is a miss in ``get``. After such a crash, deleting the cache is the safe bet.
            _atomic_write_bytes(path, buffer.getvalue())
        except OSError as error:
            self._write_failed(error)

    def _write_failed(self, error: OSError) -> None:
        self.write_failures += 1
        fatal = error.errno in _FATAL_WRITE_ERRORS
        if fatal:
            self._writable = False
        if self.write_failures == 1 or fatal:
            log.warning(
                "cannot write to the cache %s (%s: %s); %s",
                self.folder,
                type(error).__name__,
                error.strerror or error,
                "carrying on uncached" if fatal else "that entry stays uncached",
            )


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=TEMP_PREFIX, suffix=".partial")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
