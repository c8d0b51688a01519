"""Offline-first resolution of pretrained weights, and ``sha256_file``.

Part of the public shared model-runtime layer (with ``encoders.runtime``): encoders and metrics (e.g.
``metrics.aesthetics``) resolve, pin and load their weights through it, and the harness hashes files with
``sha256_file``. Importing it imports no model package and no torch.

Order: an explicit path the user gave → ``$MUSICBENCH_WEIGHTS`` → the Hugging Face cache. The network is
touched only when the caller passes ``allow_download=True`` (the CLI's ``--allow-download``). When nothing is
found, ``WeightsNotFound`` says exactly what to download and where to put it. A path that does not exist is an
error, never a silent fall-back to the hub.

Pinning: ``resolve_weights(..., expected_sha256=...)`` or ``$MUSICBENCH_WEIGHTS_SHA256`` (``model=sha256`` pairs,
comma-separated, e.g. ``clap=3a1f…,muq=9bc0…``) makes a found file whose sha256 differs an error
(``WeightsHashMismatch``, naming both hashes) before anything unpickles it.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from .base import EncoderUnavailable

WEIGHTS_ENV = "MUSICBENCH_WEIGHTS"
SHA256_ENV = "MUSICBENCH_WEIGHTS_SHA256"


class WeightsNotFound(EncoderUnavailable):
    """No weights for a model were found offline."""


class WeightsHashMismatch(EncoderUnavailable):
    """The weights found are not the expected file (sha256 differs): refused before loading."""


@dataclass(frozen=True)
class WeightsSpec:
    """Where a model's weights live.

    ``files`` are the file names that make up the weights (one checkpoint file, or the files of a
    Hugging Face model directory). ``hf_repo`` is the hub repository that hosts them.
    """

    model: str  # short name used as the sub-folder of $MUSICBENCH_WEIGHTS, e.g. "clap"
    hf_repo: str
    files: tuple[str, ...]
    is_directory: bool = False  # True: the weights are a directory holding all ``files``
    url: str | None = None  # where a human downloads them

    @property
    def download_url(self) -> str:
        if self.url:
            return self.url
        return f"https://huggingface.co/{self.hf_repo}/tree/main"

    def help_text(self) -> str:
        files = ", ".join(self.files)
        env_dir = f"${WEIGHTS_ENV}/{self.model}/"
        return (
            f"Weights for '{self.model}' were not found offline. Download {files} from {self.download_url} "
            f"and either pass --weights PATH (the {'directory holding them' if self.is_directory else 'file'}), "
            f"or put {'them' if len(self.files) > 1 else 'it'} in {env_dir}, or in the Hugging Face cache "
            f"(huggingface-cli download {self.hf_repo} {' '.join(self.files)}). "
            f"Pass --allow-download to let musicbench fetch {'them' if len(self.files) > 1 else 'it'} itself."
        )


@dataclass(frozen=True)
class ResolvedWeights:
    path: Path  # the checkpoint file, or the directory for is_directory specs
    source: str  # "explicit" | "env" | "hf-cache" | "download"

    def file(self, name: str) -> Path:
        return self.path / name if self.path.is_dir() else self.path

    def sha256(self) -> str:
        """sha256 of the file, or of the concatenated per-file hashes of a directory's files."""
        if self.path.is_file():
            return sha256_file(self.path)
        digest = hashlib.sha256()
        for child in sorted(p for p in self.path.iterdir() if p.is_file()):
            digest.update(child.name.encode())
            digest.update(sha256_file(child).encode())
        return digest.hexdigest()


_SHA256_MEMO: dict[tuple, str] = {}


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20, *, remember: bool = True) -> str:
    """sha256 of a file's bytes (hex), read in ``chunk``-byte blocks; ``OSError`` when it cannot be read.

    With ``remember`` (the default) the hash is kept while the file is unchanged (same inode, size, mtime and
    ctime), so a multi-GB checkpoint is hashed once per process even when checked, built and tagged separately.
    Pass ``remember=False`` when hashing many files once each (a dataset), so memory stays bounded.
    """
    memo_key = None
    if remember:
        info = os.stat(path)
        memo_key = (os.path.realpath(path), info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
        if memo_key in _SHA256_MEMO:
            return _SHA256_MEMO[memo_key]
    with open(path, "rb") as handle:
        hexdigest = sha256_stream(handle, chunk)
    if memo_key is not None:
        _SHA256_MEMO[memo_key] = hexdigest
    return hexdigest


def sha256_stream(handle, chunk: int = 1 << 20) -> str:
    """sha256 (hex) of what is left in a binary file object, read in ``chunk``-byte blocks."""
    digest = hashlib.sha256()
    while block := handle.read(chunk):
        digest.update(block)
    return digest.hexdigest()


def expected_sha256_from_env(model: str) -> str | None:
    """The sha256 pinned for ``model`` in ``$MUSICBENCH_WEIGHTS_SHA256`` (``model=hex,model=hex``), or None."""
    pins = {}
    for item in filter(None, (part.strip() for part in os.environ.get(SHA256_ENV, "").split(","))):
        name, sep, digest = item.partition("=")
        if not sep or not name.strip() or not digest.strip():
            raise EncoderUnavailable(f"${SHA256_ENV}: expected model=sha256 pairs separated by commas, got '{item}'")
        pins[name.strip()] = digest.strip()
    return pins.get(model)


def verify_sha256(spec: WeightsSpec, resolved: ResolvedWeights, expected: str) -> None:
    """Refuse ``resolved`` unless its sha256 is ``expected`` (case-insensitive hex)."""
    actual = resolved.sha256()
    if actual.lower() != expected.strip().lower():
        raise WeightsHashMismatch(
            f"weights for '{spec.model}' at {resolved.path} have sha256 {actual}, but {expected.strip().lower()} "
            f"was expected; refusing to load them. Replace the file with the expected one "
            f"({spec.download_url}) or update the pinned hash (${SHA256_ENV} / expected_sha256)."
        )


def _complete(spec: WeightsSpec, candidate: Path) -> Path | None:
    """Return the usable weights path inside ``candidate`` (file or directory), or None."""
    if spec.is_directory:
        if candidate.is_dir() and all((candidate / f).is_file() for f in spec.files):
            return candidate
        return None
    if candidate.is_file():
        return candidate
    if candidate.is_dir():
        for name in spec.files:
            if (candidate / name).is_file():
                return candidate / name
    return None


def _from_hf_cache(spec: WeightsSpec) -> Path | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - huggingface_hub ships with transformers
        return None
    found = []
    for name in spec.files:
        hit = try_to_load_from_cache(spec.hf_repo, name)
        if not isinstance(hit, str):
            if spec.is_directory:
                return None
            continue
        found.append(Path(hit))
        if not spec.is_directory:
            return Path(hit)
    if spec.is_directory and found:
        return found[0].parent  # a snapshot directory holds every file of the revision
    return None


def _download(spec: WeightsSpec) -> Path:
    from huggingface_hub import hf_hub_download

    os.environ.pop("HF_HUB_OFFLINE", None)
    paths = [Path(hf_hub_download(spec.hf_repo, name)) for name in spec.files]
    return paths[0].parent if spec.is_directory else paths[0]


def resolve_weights(
    spec: WeightsSpec,
    explicit: str | os.PathLike | None = None,
    allow_download: bool = False,
    expected_sha256: str | None = None,
) -> ResolvedWeights:
    """Find ``spec``'s weights offline, or raise ``WeightsNotFound`` with the fix.

    With ``expected_sha256`` (else the model's pin in ``$MUSICBENCH_WEIGHTS_SHA256``), weights whose sha256
    differs raise ``WeightsHashMismatch`` naming both hashes.
    """
    expected = expected_sha256 or expected_sha256_from_env(spec.model)
    resolved = _locate(spec, explicit, allow_download)
    if expected:
        verify_sha256(spec, resolved, expected)
    return resolved


def _locate(spec: WeightsSpec, explicit: str | os.PathLike | None, allow_download: bool) -> ResolvedWeights:
    if explicit:
        candidate = Path(explicit).expanduser()
        if not candidate.exists():
            raise WeightsNotFound(f"--weights path {candidate} does not exist. " + spec.help_text())
        hit = _complete(spec, candidate)
        if hit is None:
            raise WeightsNotFound(
                f"--weights path {candidate} does not hold {', '.join(spec.files)}. " + spec.help_text()
            )
        return ResolvedWeights(hit, "explicit")
    env_root = os.environ.get(WEIGHTS_ENV)
    if env_root:
        for candidate in (Path(env_root) / spec.model, Path(env_root)):
            hit = _complete(spec, candidate)
            if hit is not None:
                return ResolvedWeights(hit, "env")
    hit = _from_hf_cache(spec)
    if hit is not None:
        return ResolvedWeights(hit, "hf-cache")
    if allow_download:
        return ResolvedWeights(_download(spec), "download")
    raise WeightsNotFound(spec.help_text())


PICKLE_ENV = "MUSICBENCH_ALLOW_PICKLE"


def load_torch_checkpoint(path: Path, model: str, safe_globals: tuple = (), *, mmap: bool = False):
    """``torch.load(weights_only=True)`` (allowing ``safe_globals``); a full unpickle only when permitted.

    A checkpoint that ``weights_only=True`` refuses can run arbitrary code when unpickled, so it is loaded
    fully only if the user vouched for this exact file: its sha256 is pinned for ``model`` in
    ``$MUSICBENCH_WEIGHTS_SHA256`` (``resolve_weights`` has then already checked it), or
    ``$MUSICBENCH_ALLOW_PICKLE=1``. Otherwise ``EncoderUnavailable`` says how to allow it.

    ``mmap``: map the file instead of reading it (private, copy-on-write pages), so tensors that are never
    used are never read; a file in torch's legacy (pre-zip) format, which cannot be mapped, is read as usual.
    """
    import pickle

    import torch

    if mmap and not _zip_format(path):
        mmap = False
    try:
        with torch.serialization.safe_globals(list(safe_globals)):
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as error:
        text = str(error)  # torch's message: boilerplate, then "WeightsUnpickler error: <what it refused>"
        reason = " ".join(text.partition("WeightsUnpickler error:")[2].split("Check the documentation")[0].split())
        reason = reason or " ".join(text.split())[:300]
        if not (expected_sha256_from_env(model) or os.environ.get(PICKLE_ENV) == "1"):
            raise EncoderUnavailable(
                f"{path} cannot be loaded safely (torch.load weights_only=True refused it: {reason}). Loading it "
                f"would unpickle arbitrary objects. If you trust this file, pin its sha256 "
                f"(${SHA256_ENV}={model}={sha256_file(path)}) or set ${PICKLE_ENV}=1."
            ) from None
    # The user vouched for this file (pinned hash or explicit opt-in): the format needs a full unpickle.
    return torch.load(path, map_location="cpu", weights_only=False, mmap=mmap)


def _zip_format(path: Path) -> bool:
    """Whether ``path`` is in torch's zip checkpoint format (the only one ``torch.load(mmap=True)`` reads)."""
    import zipfile

    try:
        return zipfile.is_zipfile(path)
    except OSError:
        return False
