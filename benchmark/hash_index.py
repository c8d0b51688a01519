"""Content hashes of unchanged files without reading them: a stat index, as git's index does.

Every file's sha256 is the key of everything computed from it (embeddings, metric features), so a warm re-run
would otherwise read and hash every byte of the library before it could use the cache. The index remembers
``(path, device, inode, size, mtime_ns, ctime_ns) → sha256``; a file whose stat still matches is trusted, and any
change (touched, rewritten, replaced by another file under the same name) makes it miss and be re-hashed.

Like git, it refuses to remember a "racily clean" file: one modified less than ``RACY_SECONDS`` ago could still
change within the file system's timestamp granularity without its stat changing, so it is hashed again next time.

The index is one SQLite file next to the cache folder (``<cache>.hash-index.sqlite3``), written once per run in one
transaction; concurrent runs wait for each other's write (WAL mode, a timeout). A cache folder that cannot
hold it (read-only, corrupt) disables the index with a warning; hashing then reads every file, as before.
"""

from __future__ import annotations

import os
import sqlite3
import time
import warnings
from contextlib import closing
from pathlib import Path

FILE_NAME = "hash-index.sqlite3"
RACY_SECONDS = 2.0
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, device INTEGER, inode INTEGER, "
    "size INTEGER, mtime_ns INTEGER, ctime_ns INTEGER, sha256 TEXT NOT NULL)"
)


def stat_signature(info: os.stat_result) -> tuple[int, int, int, int, int]:
    """What must be unchanged for a file's remembered sha256 to be trusted: device, inode, size, mtime, ctime."""
    return info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns


def racily_clean(info: os.stat_result, hashed_at_ns: int) -> bool:
    """Whether a file with stat ``info``, read at ``hashed_at_ns``, had been modified less than ``RACY_SECONDS``
    before: it could still change within the file system's timestamp granularity without its stat changing, so its
    hash is not trusted on its stat alone."""
    return hashed_at_ns - info.st_mtime_ns < RACY_SECONDS * 1e9


def _key(path: os.PathLike | str) -> str:
    """The absolute path as text SQLite can store: latin-1 maps every byte of a (maybe non-UTF-8) name 1:1."""
    return os.fsencode(os.path.abspath(path)).decode("latin-1")


def index_path(cache_root: str | os.PathLike) -> Path:
    """``<cache>.hash-index.sqlite3``, next to the cache folder."""
    root = Path(cache_root).expanduser().absolute()
    return root.with_name(root.name + "." + FILE_NAME)


class HashIndex:
    """``lookup(path)`` → the remembered sha256 when the file is unchanged; ``remember(path, sha256)``; ``save()``.

    ``root=None`` (no cache) disables it: ``lookup`` always misses and nothing is written.
    """

    def __init__(self, root: str | os.PathLike | None):
        # beside the cache folder, not in it: the cache holds only arrays (and their identity files)
        self.path = index_path(root) if root is not None else None
        self._known: dict[str, tuple] = {}
        self._pending: dict[str, tuple] = {}
        self.hits = 0
        if self.path is not None:
            self._load()

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, timeout=30)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute(_SCHEMA)
        return connection

    def _disable(self, error: Exception) -> None:
        warnings.warn(f"hash index {self.path} unusable ({error}); every file will be read and hashed", stacklevel=3)
        self.path = None

    def _load(self) -> None:
        try:
            with closing(self._connect()) as connection:
                rows = connection.execute("SELECT path, device, inode, size, mtime_ns, ctime_ns, sha256 FROM files")
                self._known = {row[0]: (tuple(row[1:6]), row[6]) for row in rows}
        except (sqlite3.Error, OSError) as error:
            self._disable(error)

    def lookup(self, path: os.PathLike | str) -> str | None:
        """The sha256 of ``path`` if its stat is what it was when it was hashed; None otherwise (or on error)."""
        known = self._known.get(_key(path))
        if known is None:
            return None
        try:
            signature = stat_signature(os.stat(path))
        except OSError:
            return None
        if signature != known[0]:
            return None
        self.hits += 1
        return known[1]

    def remember(self, path: os.PathLike | str, digest: str, info: os.stat_result | None) -> None:
        """Record ``path``'s hash with ``info``, its stat taken before it was read (None: nothing to record)."""
        if self.path is None or info is None:
            return
        if racily_clean(info, time.time_ns()):
            return
        key = _key(path)
        entry = (stat_signature(info), digest)
        if self._known.get(key) != entry:
            self._pending[key] = entry
            self._known[key] = entry

    def save(self) -> None:
        """Write what ``remember`` added, in one transaction."""
        if self.path is None or not self._pending:
            return
        rows = [(key, *signature, digest) for key, (signature, digest) in self._pending.items()]
        try:
            with closing(self._connect()) as connection, connection:
                connection.executemany("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        except (sqlite3.Error, OSError) as error:
            self._disable(error)
            return
        self._pending.clear()
