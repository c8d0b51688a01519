"""MFCC statistics: a weight-free timbre baseline."""

from __future__ import annotations

import functools

import numpy as np

from .base import FrameStatsEncoder, ModelCard, WindowPolicy
from .mel import hann_window, mel_basis, power_to_db

N_MFCC = 20
N_FFT, HOP = 2048, 512  # librosa.feature.mfcc's STFT
FRAMES_PER_BLOCK = 128  # frames transformed at once: 1 MB of float32 samples, small enough to stay in cache


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
    #: 2: the 0th coefficient (level) dropped (40-d → 38-d); 3: the float32 STFT of ``mfcc`` (values move by float32
    #: rounding); embeddings cached by an earlier version are never served
    implementation_version = 3

    #: what its first call imports (not librosa: ≈1.3 s less of imports for the workers' fork server)
    worker_modules = ("scipy.fft", "scipy.sparse")

    def _frames(self, audio: np.ndarray) -> np.ndarray:
        return mfcc(audio, self.sample_rate)[1:]  # without the 0th coefficient: the level


def mfcc(y: np.ndarray, sr: int) -> np.ndarray:
    """MFCCs 0-19 as ``librosa.feature.mfcc(y=y, sr=sr, n_mfcc=20)`` defines them — the centred, zero-padded Hann STFT
    (2,048 / 512), the power spectrum, the slaney mel bank (128 bands), ``power_to_db``, the orthonormal DCT-II —
    equal to it within float32 rounding (≤ 1e-6 of the largest coefficient, tested) and about twice as fast: the FFT
    runs in float32 over blocks of frames (librosa's, through numpy, in float64 over the whole file), and the mel
    bank is applied as the sparse matrix it is (about 2,000 of its 131,000 weights are non-zero). Holds one block of
    frames, never the file's whole spectrogram. librosa's bank, window and ``power_to_db`` come from ``encoders.mel``
    (the same values, without importing librosa)."""
    import scipy.fft

    y = np.asarray(y, dtype=np.float32)
    frames = np.lib.stride_tricks.sliding_window_view(np.pad(y, N_FFT // 2), N_FFT)[::HOP]
    window, bank = _stft_window(), _mel_bank_transposed(sr)
    mel = np.empty((len(frames), bank.shape[1]), dtype=np.float32)
    for start in range(0, len(frames), FRAMES_PER_BLOCK):
        spectrum = scipy.fft.rfft(frames[start : start + FRAMES_PER_BLOCK] * window, axis=-1)
        mel[start : start + FRAMES_PER_BLOCK] = (spectrum.real**2 + spectrum.imag**2) @ bank
    return scipy.fft.dct(power_to_db(mel.T), axis=-2, type=2, norm="ortho")[:N_MFCC]


@functools.lru_cache(maxsize=1)
def _stft_window() -> np.ndarray:
    return hann_window(N_FFT).astype(np.float32)


@functools.lru_cache(maxsize=8)
def _mel_bank_transposed(sr: int):
    """``mel_basis(sr)`` transposed (bins × bands), as a sparse matrix."""
    import scipy.sparse

    return scipy.sparse.csr_matrix(mel_basis(sr, N_FFT).T)
