"""MFCC statistics: a weight-free timbre baseline."""

from __future__ import annotations

import numpy as np

from .base import FrameStatsEncoder, ModelCard, WindowPolicy

N_MFCC = 20


class MFCCStats(FrameStatsEncoder):
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

    def _frames(self, audio: np.ndarray) -> np.ndarray:
        import librosa

        return librosa.feature.mfcc(y=audio, sr=self.sample_rate, n_mfcc=N_MFCC)
