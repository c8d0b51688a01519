"""MFCC statistics: a weight-free timbre baseline."""

from __future__ import annotations

import functools

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

    worker_modules = ("librosa.feature.spectral",)  # what the first call imports (≈ all of librosa's features)

    def _frames(self, audio: np.ndarray) -> np.ndarray:
        return mfcc(audio, self.sample_rate)


def mfcc(y: np.ndarray, sr: int) -> np.ndarray:
    """``librosa.feature.mfcc(y=y, sr=sr, n_mfcc=20)``, bit for bit, with the mel filter bank built once (librosa
    builds it on every call): the same power spectrogram, the same ``einsum`` with the same bank, then librosa's
    own ``power_to_db`` and DCT."""
    import librosa

    S = np.abs(librosa.stft(y, n_fft=2048, hop_length=512)) ** 2.0  # melspectrogram's _spectrogram(power=2.0)
    mel = np.einsum("...ft,mf->...mt", S, _mel_basis(sr), optimize=True)
    return librosa.feature.mfcc(S=librosa.power_to_db(mel), n_mfcc=N_MFCC)


@functools.lru_cache(maxsize=8)
def _mel_basis(sr: int) -> np.ndarray:
    import librosa

    return librosa.filters.mel(sr=sr, n_fft=2048, norm="slaney")
