"""Chroma statistics: a weight-free harmony baseline."""

from __future__ import annotations

import numpy as np

from .base import FrameStatsEncoder, ModelCard, WindowPolicy


class ChromaStats(FrameStatsEncoder):
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

    def _frames(self, audio: np.ndarray) -> np.ndarray:
        import librosa

        return librosa.feature.chroma_stft(y=audio, sr=self.sample_rate)
