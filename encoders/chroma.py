"""Chroma statistics: a weight-free harmony baseline."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .base import ModelCard, WeightFreeEncoder, WindowPolicy


class ChromaStats(WeightFreeEncoder):
    """Mean and standard deviation over time of the 12-bin STFT chroma (22.05 kHz) → 24-d."""

    card = ModelCard(
        name="chroma",
        description="Chroma statistics (mean+std of STFT chroma); weight-free harmony baseline",
        sample_rate=22050,
        dim=24,
        window=WindowPolicy(),
        license="n/a (no weights)",
        package="librosa",
        captures="pitch-class distribution (key/harmony); not transposition-invariant; ignores timbre",
    )

    def embed(self, batch: Sequence[np.ndarray]) -> np.ndarray:
        import librosa

        out = np.empty((len(batch), self.dim), dtype=np.float32)
        for i, audio in enumerate(batch):
            chroma = librosa.feature.chroma_stft(y=np.asarray(audio, dtype=np.float32), sr=self.sample_rate)
            out[i] = np.concatenate([chroma.mean(axis=1), chroma.std(axis=1)])
        return out
