"""The protocol every encoder meets, and the model card that describes it.

An encoder turns a batch of mono float32 segments (all at ``card.sample_rate``) into one embedding
per segment. How a file is cut into segments (whole file, or fixed windows) is a ``WindowPolicy``;
the harness cuts, batches and mean-pools, so every encoder gets the same deterministic treatment.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .runtime import package_version


class EncoderError(RuntimeError):
    """An encoder cannot be built or cannot embed a given input."""


class EncoderUnavailable(EncoderError):
    """An encoder cannot run here (missing weights or package); the message says how to fix it."""


class UnusableWeights(EncoderUnavailable):
    """The weights given cannot be used: the file is unreadable, or does not fit the encoder's architecture."""


@dataclass(frozen=True)
class WindowPolicy:
    """How a file becomes segments.

    ``window_seconds=None`` embeds the whole file as one segment. Otherwise the file is cut into
    windows of ``window_seconds`` every ``hop_seconds`` (default: ``window_seconds``); the last,
    shorter window is zero-padded to full length when ``pad_last`` is true (as CLAP pads), else kept
    short. Segment embeddings are mean-pooled into the file embedding.
    """

    window_seconds: float | None = None
    hop_seconds: float | None = None
    pad_last: bool = True
    min_seconds: float = 0.0  # shorter audio is zero-padded up to this length before embedding

    @property
    def hop(self) -> float | None:
        return self.hop_seconds if self.hop_seconds is not None else self.window_seconds

    def describe(self) -> str:
        if self.window_seconds is None:
            return "whole-file"
        return f"windows {self.window_seconds:g}s hop {self.hop:g}s" + (" padded" if self.pad_last else "")

    def segment(self, audio: np.ndarray, sample_rate: int) -> list[np.ndarray]:
        """Cut mono audio into this policy's windows: deterministic, covers the whole file, never empty."""
        min_len = int(round(self.min_seconds * sample_rate))
        if len(audio) < min_len:
            audio = np.pad(audio, (0, min_len - len(audio)))
        if self.window_seconds is None:
            return [audio]
        window = max(1, int(round(self.window_seconds * sample_rate)))
        hop = max(1, int(round(self.hop * sample_rate)))
        starts = [0]
        while starts[-1] + window < len(audio):
            starts.append(starts[-1] + hop)
        windows = []
        for start in starts:
            piece = audio[start : start + window]
            if self.pad_last and len(piece) < window:
                piece = np.pad(piece, (0, window - len(piece)))
            windows.append(piece)
        return windows

    def stream(self, blocks: Iterable[np.ndarray], sample_rate: int) -> Iterator[list[np.ndarray]]:
        """``segment`` of the concatenation of ``blocks`` (consecutive pieces of one mono signal), yielded as lists
        of windows as soon as each is known, so that a long file is never held whole: at any time only the tail
        not yet cut (under one window plus one block) is kept. The windows, concatenated over the yielded lists,
        equal ``segment``'s exactly (same starts, same padding, same ``min_seconds`` rule); each is a copy.

        Only for windowed policies: a whole-file policy has one segment, the whole file (``ValueError``)."""
        if self.window_seconds is None:
            raise ValueError("a whole-file window policy cannot be streamed: its one segment is the whole file")
        window = max(1, int(round(self.window_seconds * sample_rate)))
        hop = max(1, int(round(self.hop * sample_rate)))
        tail = np.empty(0, dtype=np.float32)  # samples [offset, offset + len(tail)) of the signal, not yet cut
        offset = start = total = 0  # start: the next window's start (always one of segment's starts)
        for block in blocks:
            if len(block) == 0:
                continue
            tail = np.concatenate([tail, block]) if len(tail) else np.array(block, copy=True)
            total += len(block)
            windows = []
            while total > start + window:  # that window is full, and (as in segment) another one starts after it
                windows.append(tail[start - offset : start - offset + window].copy())
                start += hop
            drop = min(start, total) - offset
            if drop > 0:
                tail, offset = tail[drop:], offset + drop
            if windows:
                yield windows
        min_len = int(round(self.min_seconds * sample_rate))
        if total < min_len:  # zeros appended at the end: no window cut so far reaches that far
            tail = np.pad(tail, (0, min_len - total))
            total = min_len
        windows = []
        while True:  # the last windows, as segment cuts them once the length is known
            piece = tail[max(0, start - offset) : max(0, start - offset + window)]
            if self.pad_last and len(piece) < window:
                piece = np.pad(piece, (0, window - len(piece)))
            windows.append(np.array(piece, copy=True))
            if not start + window < total:
                break
            start += hop
        yield windows

    def as_params(self) -> dict[str, Any]:
        return {
            "window_seconds": self.window_seconds if self.window_seconds is not None else "whole",
            "hop_seconds": self.hop if self.hop is not None else "whole",
            "pad_last": self.pad_last,
            "min_seconds": self.min_seconds,
        }


@dataclass(frozen=True)
class ModelCard:
    """What an encoder is, as recorded with every run (one place for each fact)."""

    name: str
    description: str
    sample_rate: int
    dim: int
    window: WindowPolicy
    license: str
    package: str | None = None  # distribution name, e.g. "laion-clap"
    weights_id: str | None = None  # e.g. "lukewys/laion_clap:630k-audioset-best.pt"; None = weight-free
    captures: str = ""  # what musical property the embedding reflects, honestly
    extra: dict[str, Any] = field(default_factory=dict)

    def package_version(self) -> str | None:
        return package_version(self.package) if self.package else None

    def as_params(self) -> dict[str, Any]:
        params = {
            "encoder": self.name,
            "encoder_sample_rate": self.sample_rate,
            "encoder_dim": self.dim,
            "encoder_license": self.license,
            "encoder_package": self.package or "none",
            "encoder_package_version": self.package_version() or "none",
            "encoder_weights_id": self.weights_id or "none",
        }
        params.update(
            {f"window_{k}" if not k.startswith("window") else k: v for k, v in self.window.as_params().items()}
        )
        params.update({f"encoder_{k}": v for k, v in self.extra.items()})
        return params

    def with_window(self, window: WindowPolicy) -> ModelCard:
        return dataclasses.replace(self, window=window)


def pool(window_embeddings: np.ndarray) -> np.ndarray:
    """Mean over windows (in float64), as float32: how window embeddings become a file embedding."""
    return window_embeddings.mean(axis=0, dtype=np.float64).astype(np.float32)


class Encoder(ABC):
    """Base class of every encoder. Subclasses set ``card`` and implement ``embed``."""

    card: ModelCard
    #: sha256 of the loaded weights file(s), or None for weight-free encoders.
    weights_sha256: str | None = None
    #: where the weights were found (path), for the run's tags.
    weights_source: str | None = None

    # The card's facts, read through the encoder (a ``--window`` override gives an instance its own card).
    name = property(lambda self: self.card.name, doc="The card's name (str).")
    sample_rate = property(lambda self: self.card.sample_rate, doc="The rate ``embed`` expects (int, Hz).")
    dim = property(lambda self: self.card.dim, doc="The embedding size (int).")
    window = property(lambda self: self.card.window, doc="How a file becomes segments (WindowPolicy).")

    @abstractmethod
    def embed(self, batch: Sequence[np.ndarray]) -> np.ndarray:
        """Embed a batch of mono float32 segments at ``sample_rate``; return float32 ``(len(batch), dim)``.

        Segments may differ in length unless the window policy makes them equal. Implementations must
        be deterministic and must not resample or crop at random.
        """

    def embed_audio(self, audio: np.ndarray, batch_size: int = 8) -> np.ndarray:
        """One file's embedding: the policy's windows, embedded in batches, mean-pooled (float32 ``(dim,)``).

        The harness batches windows across files but pools exactly like this.
        """
        windows = self.window.segment(audio, self.sample_rate)
        rows = np.concatenate([self.embed(windows[i : i + batch_size]) for i in range(0, len(windows), batch_size)])
        return pool(rows)

    #: bump when a change to an encoder's code changes its embeddings (invalidates cached ones)
    implementation_version: int = 1

    @classmethod
    def make_identity(cls, card: ModelCard, weights_sha256: str | None) -> dict[str, Any]:
        return {
            "card": card.as_params(),
            "weights_sha256": weights_sha256,
            "implementation_version": cls.implementation_version,
        }

    def identity(self) -> dict[str, Any]:
        """Everything that changes the embedding: part of the cache key."""
        return self.make_identity(self.card, self.weights_sha256)

    def cache_identity(self) -> dict[str, Any]:
        """The embedding cache namespace (shared by anything that needs this encoder's file embeddings)."""
        return {"kind": "embedding", **self.identity()}

    @classmethod
    def card_for(cls, options) -> ModelCard:
        """The card with a ``--window`` override (``options.window``) applied, never below the card's
        ``min_seconds`` (the model's shortest input). The one place every encoder takes its window from."""
        if options is None or options.window is None:
            return cls.card
        floor = cls.card.window.min_seconds
        return cls.card.with_window(
            dataclasses.replace(options.window, min_seconds=max(options.window.min_seconds, floor))
        )

    def close(self) -> None:  # noqa: B027  (an optional hook; most encoders hold nothing)  # pragma: no cover
        """Release model memory."""


class WeightFreeEncoder(Encoder):
    """An encoder with no weights: always available."""

    parallel = "process"  # numpy feature extraction per segment: the harness embeds files in worker processes
    #: modules the first ``embed`` call imports (e.g. ``librosa.feature.spectral``): a harness can import them in
    #: its worker processes ahead of time, while it sets a run up
    worker_modules: tuple[str, ...] = ()

    def __init__(self, options=None):
        self.options = options
        self.card = self.card_for(options)

    @classmethod
    def check_available(cls, options) -> str:
        return "weight-free"


class FrameStatsEncoder(WeightFreeEncoder):
    """Mean and standard deviation over time of a per-frame feature: ``dim`` = 2 × the feature's size.

    Subclasses implement ``_frames(audio) -> (n_features, n_frames)``; the embedding is
    ``[mean over frames, std over frames]`` in the feature's own dtype, stored as float32.
    """

    def _frames(self, audio: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def embed(self, batch: Sequence[np.ndarray]) -> np.ndarray:
        out = np.empty((len(batch), self.dim), dtype=np.float32)
        for i, audio in enumerate(batch):
            frames = self._frames(np.asarray(audio, dtype=np.float32))
            out[i] = np.concatenate([frames.mean(axis=1), frames.std(axis=1)])
        return out
