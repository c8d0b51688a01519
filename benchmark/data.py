"""Datasets: finding audio files, their content hashes and fingerprint, per-file failures (decoding is
``decoding.py``; the ground truth is read by ``ground_truth.py``)."""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .ground_truth import GroundTruth

log = logging.getLogger(__name__)

AUDIO_EXTENSIONS = frozenset(
    {".wav", ".flac", ".ogg", ".oga", ".mp3", ".aiff", ".aif", ".aifc", ".au", ".m4a", ".opus", ".wv"}
)


class DatasetError(ValueError):
    """The dataset cannot be used at all (missing folder, no audio, bad ground truth)."""


class AudioDecodeError(ValueError):
    """One file cannot be decoded; the message names the file."""


@dataclass(frozen=True)
class AudioFile:
    path: Path  # as found (may be a symlink)
    key: str  # path relative to its folder, POSIX separators: the file's name in tables and ground truth

    @property
    def label(self) -> str:
        return self.key


@dataclass
class Dataset:
    refs: list[AudioFile]
    targets: list[AudioFile]
    relevance: dict[str, dict[str, float]] | None = None  # target key → {ref key: relevance}
    refs_root: Path | None = None
    targets_root: Path | None = None
    content_hashes: dict[Path, str] = field(default_factory=dict)
    ground_truth: GroundTruth | None = None  # what reading the ground truth found (self-pairs dropped, fallbacks)

    def self_matches(self) -> list[set[int]]:
        """For each target, the indices of references that are the very same file (excluded from its results):
        the same path, a symlink to it, or a hard link of it (``file_identity``). A byte-identical copy under
        another name is a different file: it is retrieved like any other reference."""
        ref_index: dict[tuple, list[int]] = {}
        for i, ref in enumerate(self.refs):
            ref_index.setdefault(file_identity(ref.path), []).append(i)
        return [set(ref_index.get(file_identity(t.path), ())) for t in self.targets]


def file_identity(path: str | os.PathLike) -> tuple:
    """What makes two paths the same file: (device, inode) of what they point to, so symlinks and hard links of
    one file agree; the resolved path when the file cannot be stat'ed (never raises, even on a symlink loop)."""
    try:
        info = os.stat(path)
    except (OSError, ValueError):
        return ("path", os.path.realpath(path))
    return ("inode", info.st_dev, info.st_ino)


def discover(folder: str | os.PathLike, role: str) -> list[AudioFile]:
    """All audio files below ``folder`` (recursive, sorted).

    Symlinked folders are followed; a folder reached twice (a symlink loop, or two links to one folder) is read
    once, and each skipped link is logged as a warning naming it.
    """
    root = Path(folder).expanduser()
    if not root.exists():
        raise DatasetError(f"{role} folder {root} does not exist")
    if not root.is_dir():
        raise DatasetError(f"{role} folder {root} is not a folder")
    found = []
    visited = {file_identity(root)}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        kept = []
        for name in sorted(dirnames):
            identity = file_identity(Path(dirpath) / name)
            if identity in visited:
                log.warning("%s folder: skipped %s, a link to a folder already read", role, shown(Path(dirpath) / name))
                continue
            visited.add(identity)
            kept.append(name)
        dirnames[:] = kept
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path.suffix.lower() in AUDIO_EXTENSIONS:
                found.append(AudioFile(path=path, key=shown(path.relative_to(root).as_posix())))
    if not found:
        raise DatasetError(
            f"no audio files found in {role} folder {root} (looked for {', '.join(sorted(AUDIO_EXTENSIONS))})"
        )
    return found


def shown(path: str | os.PathLike) -> str:
    """``path`` as printable text: undecodable bytes of a file name (not UTF-8) become ``\\xNN`` escapes."""
    return os.fspath(path).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def content_hash(path: Path, chunk: int = 1 << 20) -> str:
    """sha256 of the file's bytes: the cache key of everything computed from it."""
    from encoders.weights import sha256_stream

    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO or device named *.wav would block or never end
            raise AudioDecodeError(f"{shown(path)}: not a regular file")
        with open(path, "rb") as handle:
            return sha256_stream(handle, chunk)
    except OSError as error:
        raise AudioDecodeError(f"{shown(path)}: cannot read ({error.strerror or error})") from error


def load_dataset(
    refs: str | os.PathLike, targets: str | os.PathLike, ground_truth: str | os.PathLike | None = None
) -> Dataset:
    """Find the files of both folders and read the ground truth; fails before any work on unusable input."""
    ref_files = discover(refs, "reference")
    target_files = discover(targets, "target")
    from .ground_truth import read_ground_truth  # it builds on this module's AudioFile and DatasetError

    judged = read_ground_truth(ground_truth, ref_files, target_files) if ground_truth else None
    return Dataset(
        ref_files,
        target_files,
        judged.relevance if judged else None,
        Path(refs).expanduser(),
        Path(targets).expanduser(),
        ground_truth=judged,
    )


def fingerprint(hashes: dict[str, str]) -> str:
    """A short id of a dataset's content: sha256 over sorted (name, content hash) pairs."""
    digest = hashlib.sha256()
    for name in sorted(hashes):
        digest.update(f"{name}\t{hashes[name]}\n".encode())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class Failure:
    """One file that could not be processed at one stage; the others carry on."""

    role: str  # "reference" | "target"
    key: str
    stage: str  # "read" | "decode" | "embed" | metric name
    message: str

    def as_row(self) -> dict[str, str]:
        return {"role": self.role, "file": self.key, "stage": self.stage, "message": self.message}
