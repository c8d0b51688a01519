"""Base class of the encoders whose pretrained weights come from a model package and are resolved offline."""
from __future__ import annotations

import dataclasses
import importlib.util
from collections.abc import Sequence
from typing import Any

import numpy as np

from .torch_utils import equal_length_groups
from .base import Encoder, EncoderError, EncoderUnavailable, ModelCard
from .weights import ResolvedWeights, WeightsSpec, resolve_weights


class PretrainedEncoder(Encoder):
    """Subclasses set ``card``, ``weights_spec``, ``module`` (import name), ``install`` (pip line) and, for
    ``embed``'s equal-length batching, ``min_samples`` and ``_embed_equal_length``."""

    weights_spec: WeightsSpec
    module: str
    install: str
    min_samples: int = 1

    @classmethod
    def require_package(cls) -> None:
        if importlib.util.find_spec(cls.module) is None:
            raise EncoderUnavailable(f"encoder '{cls.card.name}' needs the '{cls.card.package}' package: "
                                     f"pip install {cls.install}")

    @classmethod
    def check_available(cls, options) -> str:
        """Package installed and weights found offline? Loads no model and imports no torch."""
        cls.require_package()
        resolved = resolve_weights(cls.weights_spec, options.weights, options.allow_download)
        return f"weights: {resolved.path} ({resolved.source})"

    @classmethod
    def card_for(cls, options) -> ModelCard:
        """The card with a ``--window`` override applied (never below the model's minimum input length)."""
        if options.window is None:
            return cls.card
        floor = cls.card.window.min_seconds
        return cls.card.with_window(
            dataclasses.replace(options.window, min_seconds=max(options.window.min_seconds, floor)))

    @classmethod
    def identity_for(cls, options) -> dict[str, Any]:
        """``identity()`` of the encoder ``options`` would build, without building it (hashes the weights)."""
        cls.require_package()
        resolved = resolve_weights(cls.weights_spec, options.weights, options.allow_download)
        return cls.make_identity(cls.card_for(options), resolved.sha256())

    def resolve(self, options) -> ResolvedWeights:
        """Find the weights, record their path and sha256, and apply a ``--window`` override. Call first in
        ``__init__``."""
        self.options = options
        self.require_package()
        resolved = resolve_weights(self.weights_spec, options.weights, options.allow_download)
        self.weights_sha256 = resolved.sha256()
        self.weights_source = str(resolved.path)
        self.card = self.card_for(options)
        return resolved

    def embed(self, batch: Sequence[np.ndarray]) -> np.ndarray:
        """One embedding per item; equal-length items share forward passes (padding would change them)."""
        out = np.empty((len(batch), self.dim), dtype=np.float32)
        min_samples = max(self.min_samples, int(round(self.window.min_seconds * self.sample_rate)))
        for indices, audio in equal_length_groups(batch, min_samples, max(1, self.options.batch_size)):
            out[indices] = self._embed_equal_length(audio)
        bad = np.flatnonzero(~np.isfinite(out).all(axis=1))
        if bad.size:
            raise EncoderError(f"{self.name} produced non-finite embeddings for batch items {bad.tolist()}")
        return out

    def _embed_equal_length(self, audio: np.ndarray) -> np.ndarray:
        """Embed ``(n, samples)`` float32 audio in one forward pass → ``(n, dim)``."""
        raise NotImplementedError
