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


#: the pooling rule's version, part of every windowed policy's identity (``as_params``, so the cache key): bump it
#: when the way window embeddings become a file embedding changes, so that no embedding pooled the old way is served.
#: 1 (implicit, before issue 14): equal weights, every window kept. 2: weighted by real audio, short tail dropped.
POOLING_VERSION = 2
#: the default shortest tail window kept (when the file has other windows): max(1 s, 10 % of the window) ...
MIN_TAIL_SECONDS, MIN_TAIL_FRACTION = 1.0, 0.1
#: ... but never more than half the window (a 0.5 s ``--window`` keeps tails of 0.25 s and more)
MIN_TAIL_MAX_FRACTION = 0.5


@dataclass(frozen=True)
class WindowPolicy:
    """How a file becomes segments, and how their embeddings become the file's.

    ``window_seconds=None`` embeds the whole file as one segment. Otherwise the file is cut into
    windows of ``window_seconds`` every ``hop_seconds`` (default: ``window_seconds``); the last,
    shorter window is zero-padded to full length when ``pad_last`` is true, else kept short (CLAP's
    library then repeat-pads it to 10 s).

    Pooling (``weights``, ``pool``; issue 14): the file embedding is the mean of its windows' embeddings
    *weighted by the real audio each window holds* (samples of the file in it / window length; padding
    counts for nothing). Only the last window can be partial, so a file exactly a whole number of windows
    long (or one window or less) has equal weights and the plain mean it always had, bit for bit. A 14 s
    file under 10 s windows at hop 10 s: weights 1 and 0.4 (was 1 and 1, making the last 4 s half of it).

    Short tail: a last window holding less than ``min_tail_seconds`` of real audio is **dropped** when
    the file has other windows (never when it is the only one): its audio is not embedded at all. It is
    dropped rather than merged into the previous window, because every window keeps the model's input
    length (CLAP's 10 s) and at most ``min_tail_seconds`` of the file's end is lost; weighting alone would
    already make such a tail count for little, dropping also saves its forward pass. Default
    (``min_tail_seconds=None``): max(1 s, 10 % of the window), at most half the window — 1 s for CLAP's
    10 s windows, so a file one sample longer than 60 s has 6 windows, not a 7th of one sample.

    The rule is part of the policy's identity (``as_params``: ``pooling`` = ``POOLING_VERSION``,
    ``min_tail_seconds``), and so of every windowed encoder's cache key: embeddings pooled the old way
    are never served. A whole-file policy has one segment and its identity is unchanged.
    """

    window_seconds: float | None = None
    hop_seconds: float | None = None
    pad_last: bool = True
    min_seconds: float = 0.0  # shorter audio is zero-padded up to this length before embedding
    min_tail_seconds: float | None = None  # a shorter last window is dropped (None: the default rule above)

    @property
    def hop(self) -> float | None:
        return self.hop_seconds if self.hop_seconds is not None else self.window_seconds

    def describe(self) -> str:
        if self.window_seconds is None:
            return "whole-file"
        return f"windows {self.window_seconds:g}s hop {self.hop:g}s" + (" padded" if self.pad_last else "")

    @property
    def min_tail(self) -> float | None:
        """The shortest last window kept, in seconds, when the file has other windows (None: whole-file)."""
        if self.window_seconds is None:
            return None
        if self.min_tail_seconds is not None:
            return self.min_tail_seconds
        return min(
            max(MIN_TAIL_SECONDS, MIN_TAIL_FRACTION * self.window_seconds), MIN_TAIL_MAX_FRACTION * self.window_seconds
        )

    def _samples(self, sample_rate: int) -> tuple[int, int, int]:
        """Window, hop and shortest kept tail, in samples."""
        window = max(1, int(round(self.window_seconds * sample_rate)))
        hop = max(1, int(round(self.hop * sample_rate)))
        return window, hop, int(round(self.min_tail * sample_rate))

    def _starts(self, n_samples: int, sample_rate: int) -> range:
        """The start sample of each window of a file of ``n_samples`` real samples (a windowed policy)."""
        window, hop, min_tail = self._samples(sample_rate)
        length = max(n_samples, int(round(self.min_seconds * sample_rate)))  # after the ``min_seconds`` padding
        count = 1 if length <= window else 1 + -(-(length - window) // hop)  # the first start reaching the end
        if count > 1 and n_samples - (count - 1) * hop < min_tail:  # a short tail, and other windows: dropped
            count -= 1
        return range(0, count * hop, hop)

    def weights(self, n_samples: int, sample_rate: int) -> np.ndarray:
        """Each window's pooling weight (float64, one per window of ``segment`` of a file of ``n_samples``
        samples): the real audio it holds, as a fraction of the window (1.0 for a whole-file policy)."""
        if self.window_seconds is None:
            return np.ones(1)
        window = self._samples(sample_rate)[0]
        starts = np.asarray(self._starts(n_samples, sample_rate), dtype=np.int64)
        return np.clip(n_samples - starts, 0, window) / window

    def segment(self, audio: np.ndarray, sample_rate: int) -> list[np.ndarray]:
        """Cut mono audio into this policy's windows: deterministic, covers the whole file but a short tail (see
        the class), never empty. Pool their embeddings with ``pool(rows, weights(len(audio), sample_rate))``."""
        n_samples = len(audio)
        min_len = int(round(self.min_seconds * sample_rate))
        if len(audio) < min_len:
            audio = np.pad(audio, (0, min_len - len(audio)))
        if self.window_seconds is None:
            return [audio]
        window = self._samples(sample_rate)[0]
        windows = []
        for start in self._starts(n_samples, sample_rate):
            piece = audio[start : start + window]
            if self.pad_last and len(piece) < window:
                piece = np.pad(piece, (0, window - len(piece)))
            windows.append(piece)
        return windows

    def stream(self, blocks: Iterable[np.ndarray], sample_rate: int) -> Iterator[list[np.ndarray]]:
        """``segment`` of the concatenation of ``blocks`` (consecutive pieces of one mono signal), yielded as lists
        of windows as soon as each is known, so that a long file is never held whole: at any time only the tail
        not yet cut (under one window plus one block) is kept. The windows, concatenated over the yielded lists,
        equal ``segment``'s exactly (same starts, same padding, same ``min_seconds`` and short-tail rules); each is
        a copy. Their weights are ``weights(total length, sample_rate)``, the total being known at the end.

        Only for windowed policies: a whole-file policy has one segment, the whole file (``ValueError``)."""
        if self.window_seconds is None:
            raise ValueError("a whole-file window policy cannot be streamed: its one segment is the whole file")
        window, hop, min_tail = self._samples(sample_rate)
        tail = np.empty(0, dtype=np.float32)  # samples [offset, offset + len(tail)) of the signal, not yet cut
        offset = start = total = 0  # start: the next window's start (always one of segment's starts)
        for block in blocks:
            if len(block) == 0:
                continue
            tail = np.concatenate([tail, block]) if len(tail) else np.array(block, copy=True)
            total += len(block)
            windows = []
            # that window is full and, as in segment, another one starts after it: it is never the (short) tail
            while total > start + window:
                windows.append(tail[start - offset : start - offset + window].copy())
                start += hop
            drop = min(start, total) - offset
            if drop > 0:
                tail, offset = tail[drop:], offset + drop
            if windows:
                yield windows
        real = total
        min_len = int(round(self.min_seconds * sample_rate))
        if total < min_len:  # zeros appended at the end: no window cut so far reaches that far
            tail = np.pad(tail, (0, min_len - total))
            total = min_len
        windows = []
        while True:  # the last windows, as segment cuts them once the length is known
            last = not start + window < total
            if last and start > 0 and real - start < min_tail:  # a short tail, and other windows: dropped
                break
            piece = tail[max(0, start - offset) : max(0, start - offset + window)]
            if self.pad_last and len(piece) < window:
                piece = np.pad(piece, (0, window - len(piece)))
            windows.append(np.array(piece, copy=True))
            if last:
                break
            start += hop
        if windows:
            yield windows

    def as_params(self) -> dict[str, Any]:
        return {
            "window_seconds": self.window_seconds if self.window_seconds is not None else "whole",
            "hop_seconds": self.hop if self.hop is not None else "whole",
            "pad_last": self.pad_last,
            "min_seconds": self.min_seconds,
            # the pooling rule (issue 14), in the identity of windowed policies only: a whole-file one has one segment
            **(
                {"pooling": POOLING_VERSION, "min_tail_seconds": self.min_tail}
                if self.window_seconds is not None
                else {}
            ),
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


def pool(window_embeddings: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """How window embeddings become a file embedding: their mean (in float64) weighted by ``weights`` (the real
    audio each window holds, ``WindowPolicy.weights``), as float32. Equal weights (or none) give the plain mean,
    bit for bit; so do weights summing to zero (no real audio anywhere: nothing to prefer)."""
    rows = np.asarray(window_embeddings)
    if weights is not None:
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (len(rows),):
            raise ValueError(f"{len(w)} pooling weights for {len(rows)} window embeddings")
        total = w.sum()
        if len(w) > 1 and np.any(w != w[0]) and total > 0:
            return ((w / total) @ rows.astype(np.float64)).astype(np.float32)
    return rows.mean(axis=0, dtype=np.float64).astype(np.float32)


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
        """One file's embedding: the policy's windows, embedded in batches, pooled weighted by the real audio each
        holds (``WindowPolicy.weights``; float32 ``(dim,)``).

        The harness batches windows across files but pools exactly like this.
        """
        windows = self.window.segment(audio, self.sample_rate)
        rows = np.concatenate([self.embed(windows[i : i + batch_size]) for i in range(0, len(windows), batch_size)])
        return pool(rows, self.window.weights(len(audio), self.sample_rate))

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

    def load_model(self) -> None:  # noqa: B027  (an optional hook: most encoders load nothing lazily)
        """Load now what embedding needs, where an encoder loads it lazily (``PretrainedEncoder`` with
        ``parallel = "process"``). The harness calls it before it embeds any file here, so an unusable model is
        the run's error, never one file's."""

    def in_worker(self, workers: int) -> None:  # noqa: B027  (an optional hook)
        """Called in a worker process before it embeds, with how many workers embed at once (at most the pool's
        size: fewer when fewer files are left than workers)."""


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
