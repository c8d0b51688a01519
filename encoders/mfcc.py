"""MFCC statistics: a weight-free timbre baseline."""

from __future__ import annotations

import functools

import numpy as np

from .base import FrameStatsEncoder, ModelCard, WindowPolicy

N_MFCC = 20


class MFCCStats(FrameStatsEncoder):
    """Mean and standard deviation over time of MFCCs 1–19 (librosa defaults, 22.05 kHz; the 0th dropped) → 38-d.

    Level-independent: with librosa's orthonormal DCT, the 0th coefficient is the mean log-mel energy, and a gain
    change (a constant dB offset in every mel band) moves that coefficient alone; dropping it, as timbre-similarity
    practice does (Logan & Salomon 2001, Aucouturier & Pachet 2002), leaves the embedding unchanged by the level
    (up to power_to_db's floor, 80 dB below the loudest bin). Per-file normalisation of every coefficient was not
    chosen: subtracting the per-file means would discard the average spectral envelope, i.e. the timbre itself.
    """

    card = ModelCard(
        name="mfcc",
        description="MFCC statistics (mean+std of MFCCs 1-19, the level coefficient 0 dropped); weight-free timbre "
        "baseline",
        sample_rate=22050,
        dim=2 * (N_MFCC - 1),
        window=WindowPolicy(),
        license="n/a (no weights)",
        package="librosa",
        captures="spectral envelope / timbre, independent of the level (gain); ignores melody and harmony",
    )
    #: 2: the 0th coefficient (level) dropped (40-d → 38-d); embeddings cached by version 1 are never served
    implementation_version = 2

    worker_modules = ("librosa.feature.spectral",)  # what the first call imports (≈ all of librosa's features)

    def _frames(self, audio: np.ndarray) -> np.ndarray:
        return mfcc(audio, self.sample_rate)[1:]  # without the 0th coefficient: the level


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
