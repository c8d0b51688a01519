"""Datasets: finding audio files, reading ground truth, and the one audio decoding path.

Decoding: soundfile (libsndfile: wav, flac, ogg, mp3, aiff, …), falling back to librosa/audioread for other
containers; mono = mean of channels; resampling with soxr 'HQ' (bit-identical to ``librosa.load(sr=...)``).
torchaudio I/O is never used (its extension does not load on CPU-only machines).
"""
from __future__ import annotations

import csv
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

AUDIO_EXTENSIONS = frozenset({".wav", ".flac", ".ogg", ".oga", ".mp3", ".aiff", ".aif", ".aifc", ".au",
                              ".m4a", ".opus", ".wv"})


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

    def self_matches(self) -> list[set[int]]:
        """For each target, the indices of references that are the very same file (excluded from its results)."""
        ref_index: dict[Path, list[int]] = {}
        for i, ref in enumerate(self.refs):
            ref_index.setdefault(ref.path.resolve(), []).append(i)
        return [set(ref_index.get(t.path.resolve(), ())) for t in self.targets]


def discover(folder: str | os.PathLike, role: str) -> list[AudioFile]:
    """All audio files below ``folder`` (recursive, sorted). Symlinked folders are not followed (no loops)."""
    root = Path(folder).expanduser()
    if not root.exists():
        raise DatasetError(f"{role} folder {root} does not exist")
    if not root.is_dir():
        raise DatasetError(f"{role} folder {root} is not a folder")
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path.suffix.lower() in AUDIO_EXTENSIONS:
                found.append(AudioFile(path=path, key=path.relative_to(root).as_posix()))
    if not found:
        raise DatasetError(
            f"no audio files found in {role} folder {root} (looked for {', '.join(sorted(AUDIO_EXTENSIONS))})")
    return found


def content_hash(path: Path, chunk: int = 1 << 20) -> str:
    """sha256 of the file's bytes: the cache key of everything computed from it."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            while block := handle.read(chunk):
                digest.update(block)
    except OSError as error:
        raise AudioDecodeError(f"{path}: cannot read ({error.strerror or error})") from error
    return digest.hexdigest()


def _read_any(path: Path) -> tuple[np.ndarray, int]:
    """(samples × channels float32, sample rate) via soundfile, else librosa/audioread."""
    import soundfile as sf

    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
        return data, int(rate)
    except sf.LibsndfileError as sf_error:
        if path.suffix.lower() in {".wav", ".flac", ".ogg", ".oga", ".aiff", ".aif", ".aifc", ".au", ".wv"}:
            raise AudioDecodeError(f"{path}: not decodable audio ({sf_error})") from sf_error
        import warnings

        import librosa

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                data, rate = librosa.load(str(path), sr=None, mono=False, dtype=np.float32)
        except Exception as error:  # audioread raises many unrelated types
            raise AudioDecodeError(f"{path}: not decodable audio ({error})") from error
        data = np.atleast_2d(data).T
        return np.ascontiguousarray(data, dtype=np.float32), int(rate)


def decode(path: str | os.PathLike, sample_rate: int) -> np.ndarray:
    """Decode ``path`` to mono float32 at ``sample_rate``. Raises ``AudioDecodeError`` naming the file."""
    import soxr

    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise AudioDecodeError(f"{path}: empty file (0 bytes)")
    except OSError as error:
        raise AudioDecodeError(f"{path}: cannot read ({error.strerror or error})") from error
    if not os.access(path, os.R_OK):
        raise AudioDecodeError(f"{path}: cannot read (permission denied)")
    data, rate = _read_any(path)
    if data.shape[0] == 0:
        raise AudioDecodeError(f"{path}: no audio samples")
    mono = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    if not np.all(np.isfinite(mono)):
        raise AudioDecodeError(f"{path}: audio contains NaN or infinite samples")
    if rate != sample_rate:
        mono = soxr.resample(mono, rate, sample_rate, quality="HQ").astype(np.float32, copy=False)
    return np.ascontiguousarray(mono, dtype=np.float32)


def _match_key(name: str, files: list[AudioFile], role: str, csv_path: Path) -> str:
    """Resolve a ground-truth entry to a file key: exact relative path, else a unique file name, else a unique stem."""
    name = name.strip().replace("\\", "/")
    if any(f.key == name for f in files):
        return name
    for part in (lambda p: p.name, lambda p: p.stem):
        matches = [f.key for f in files if part(Path(f.key)) == part(Path(name))]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise DatasetError(f"{csv_path}: {role} '{name}' is ambiguous: matches {', '.join(matches[:5])}")
    raise DatasetError(f"{csv_path}: {role} '{name}' is not a file in the {role}s folder")


def read_ground_truth(csv_path: str | os.PathLike, refs: list[AudioFile],
                      targets: list[AudioFile]) -> dict[str, dict[str, float]]:
    """Read ``target,reference[,relevance]`` rows (relevance defaults to 1) into target → {ref: relevance}."""
    csv_path = Path(csv_path).expanduser()
    if not csv_path.is_file():
        raise DatasetError(f"ground-truth file {csv_path} does not exist")
    relevance: dict[str, dict[str, float]] = {}
    with open(csv_path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = {"target", "reference"} - set(reader.fieldnames or ())
        if missing:
            raise DatasetError(f"{csv_path}: needs columns target,reference[,relevance]; missing {sorted(missing)}")
        for line, row in enumerate(reader, start=2):
            target = _match_key(row["target"], targets, "target", csv_path)
            reference = _match_key(row["reference"], refs, "reference", csv_path)
            try:
                value = float(row.get("relevance") or 1.0)
            except ValueError:
                raise DatasetError(f"{csv_path}:{line}: relevance '{row.get('relevance')}' is not a number") from None
            if value > 0:
                relevance.setdefault(target, {})[reference] = value
    if not relevance:
        raise DatasetError(f"{csv_path}: no relevant (target, reference) pairs")
    return relevance


def load_dataset(refs: str | os.PathLike, targets: str | os.PathLike,
                 ground_truth: str | os.PathLike | None = None) -> Dataset:
    """Find the files of both folders and read the ground truth; fails before any work on unusable input."""
    ref_files = discover(refs, "reference")
    target_files = discover(targets, "target")
    relevance = read_ground_truth(ground_truth, ref_files, target_files) if ground_truth else None
    return Dataset(ref_files, target_files, relevance, Path(refs).expanduser(), Path(targets).expanduser())


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
