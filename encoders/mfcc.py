"""MFCC statistics: a weight-free timbre baseline."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .base import ModelCard, WeightFreeEncoder, WindowPolicy

N_MFCC = 20


class MFCCStats(WeightFreeEncoder):
    """Mean and standard deviation over time of 20 MFCCs (librosa defaults, 22.05 kHz) → 40-d."""

    card = ModelCard(
        name="mfcc",
        description="MFCC statistics (mean+std of 20 MFCCs); weight-free timbre baseline",
        sample_rate=22050,
        dim=2 * N_MFCC,
        window=WindowPolicy(),
        license="n/a (no weights)",
        package="librosa",
        captures="spectral envelope / timbre and loudness; ignores melody and harmony",
    )

    def embed(self, batch: Sequence[np.ndarray]) -> np.ndarray:
        import librosa

        out = np.empty((len(batch), self.dim), dtype=np.float32)
        for i, audio in enumerate(batch):
            mfcc = librosa.feature.mfcc(y=np.asarray(audio, dtype=np.float32), sr=self.sample_rate, n_mfcc=N_MFCC)
            out[i] = np.concatenate([mfcc.mean(axis=1), mfcc.std(axis=1)])
        return out
