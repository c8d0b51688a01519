"""Content-addressed store of per-file arrays (embeddings, metric features).

Layout: ``<root>/<namespace>/<hash[:2]>/<hash>.npy`` where ``namespace`` is a hash of what computed the array
(encoder model card + weights sha256 + preprocessing, or a metric's identity) and ``hash`` the file's content
sha256. So a changed file alone is recomputed, and a changed model or parameter misses the whole namespace.
Every write goes to a temporary file in the same folder and is renamed into place (atomic on POSIX): a killed
run leaves no partial entry, and two runs writing the same entry both leave a complete one. A run killed
mid-write can leave a hidden ``.tmp-*.partial`` file: never read, never mistaken for an entry, safe to delete.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

TEMP_PREFIX = ".tmp-"


def namespace(identity: dict[str, Any]) -> str:
    """A stable short hash of a JSON-serialisable identity."""
    text = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


class ArrayCache:
    """Arrays keyed by (namespace identity, content hash). ``root=None`` disables caching."""

    def __init__(self, root: str | os.PathLike | None, identity: dict[str, Any]):
        self.identity = identity
        self.namespace = namespace(identity)
        self.folder = Path(root).expanduser() / self.namespace if root is not None else None
        self.hits = 0
        self.misses = 0
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            info = self.folder / "identity.json"
            if not info.exists():
                _atomic_write_bytes(info, json.dumps(identity, indent=2, sort_keys=True, default=str).encode())

    def _path(self, content_hash: str) -> Path:
        assert self.folder is not None
        return self.folder / content_hash[:2] / f"{content_hash}.npy"

    def get(self, content_hash: str) -> np.ndarray | None:
        if self.folder is None:
            self.misses += 1
            return None
        path = self._path(content_hash)
        try:
            value = np.load(path, allow_pickle=False)
        except (FileNotFoundError, ValueError, OSError, EOFError):
            self.misses += 1  # absent, or unreadable (treated as absent and overwritten on put)
            return None
        self.hits += 1
        return value

    def put(self, content_hash: str, value: np.ndarray) -> None:
        if self.folder is None:
            return
        path = self._path(content_hash)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=TEMP_PREFIX, suffix=".partial")  # never "*.npy"
        try:
            # No fsync: it cost ~5 ms per entry (as much as embedding a 0.05 s file), and killed runs do not need
            # it (a kill cannot tear a renamed file). Only an OS crash / power loss could leave a torn entry; an
            # empty or headerless one is a miss in ``get``. After such a crash, deleting the cache is the safe bet.
            with os.fdopen(fd, "wb") as handle:
                np.save(handle, np.ascontiguousarray(value), allow_pickle=False)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=TEMP_PREFIX, suffix=".partial")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
