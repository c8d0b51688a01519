"""Small pieces every neural encoder shares: device choice, random-init seeding, input checks, equal-length
batching. Torch is imported inside the functions, never at module import."""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Iterator, Sequence

import numpy as np

from .base import EncoderError, EncoderUnavailable
from .runtime import package_version


def known_cpu(requested: str | None) -> bool:
    """Whether ``requested`` (``--device``) can only mean the CPU, known without importing torch: ``cpu``, or ``auto``
    with a CPU-only torch build (its version's local label, e.g. ``2.13.0+cpu``)."""
    requested = requested or "auto"
    return requested == "cpu" or (requested == "auto" and (package_version("torch") or "").endswith("+cpu"))


def pick_device(requested: str):
    """``auto`` = CUDA when available, else CPU; an explicit ``cuda`` without CUDA is an error."""
    import torch

    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise EncoderUnavailable(
            "device 'cuda' was requested but CUDA is not available here: "
            "use --device cpu, or --device auto (CUDA when present, else CPU)"
        )
    return torch.device(requested)


@contextlib.contextmanager
def caller_rng_kept():
    """Whatever runs inside may seed or draw from torch's CPU and Python's ``random`` streams: the caller's
    streams are as they were afterwards (some model constructors reseed both)."""
    import random

    import torch

    state = random.getstate()
    try:
        with torch.random.fork_rng(devices=[]):
            yield
    finally:
        random.setstate(state)


@contextlib.contextmanager
def seeded_random_init(seed: int = 0):
    """Build a random-init model reproducibly: torch seeded with ``seed`` inside, the caller's streams kept."""
    import torch

    with caller_rng_kept():
        torch.manual_seed(seed)
        yield


def checked_mono(item: np.ndarray, index: int) -> np.ndarray:
    """The segment as 1-D float32; stereo, empty or non-finite input is refused rather than silently mangled."""
    audio = np.asarray(item, dtype=np.float32)
    if audio.ndim != 1:
        raise EncoderError(f"segment {index}: expected mono 1-D audio, got shape {audio.shape}")
    if audio.size == 0:
        raise EncoderError(f"segment {index} is empty")
    if not np.isfinite(audio).all():
        raise EncoderError(f"segment {index} contains NaN or infinite samples")
    return audio


def pad_to(audio: np.ndarray, min_samples: int) -> np.ndarray:
    return np.pad(audio, (0, min_samples - len(audio))) if len(audio) < min_samples else audio


def equal_length_groups(
    batch: Sequence[np.ndarray], min_samples: int, group_size: int
) -> Iterator[tuple[list[int], np.ndarray]]:
    """Yield (batch indices, stacked audio) for items of equal length, zero-padded to ``min_samples``.

    Only equal lengths are stacked: padding a shorter item to a common length would change its embedding.
    """
    padded = [pad_to(checked_mono(item, index), min_samples) for index, item in enumerate(batch)]
    by_length: dict[int, list[int]] = defaultdict(list)
    for index, audio in enumerate(padded):
        by_length[len(audio)].append(index)
    for indices in by_length.values():
        for start in range(0, len(indices), group_size):
            chunk = indices[start : start + group_size]
            yield chunk, np.stack([padded[i] for i in chunk])
