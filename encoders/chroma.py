"""Chroma statistics: a weight-free harmony baseline."""

from __future__ import annotations

import functools

import numpy as np

from .base import FrameStatsEncoder, ModelCard, WindowPolicy

N_FFT, HOP = 2048, 512  # librosa.feature.chroma_stft's defaults
#: piptrack's defaults, as ``estimate_tuning`` (called by ``chroma_stft``) uses them
PIPTRACK_FMIN, PIPTRACK_FMAX, PIPTRACK_THRESHOLD = 150.0, 4000.0, 0.1


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

    worker_modules = ("librosa.feature.spectral",)  # what the first call imports (≈ all of librosa's features)

    def _frames(self, audio: np.ndarray) -> np.ndarray:
        return chroma_stft(audio, self.sample_rate)


def chroma_stft(y: np.ndarray, sr: int) -> np.ndarray:
    """``librosa.feature.chroma_stft(y=y, sr=sr)``, bit for bit, with its tuning estimate computed on the bins
    it looks at (``estimate_tuning_band``) and the chroma filter bank built once per tuning value."""
    import librosa

    if not _band_tuning_is_exact():
        return librosa.feature.chroma_stft(y=y, sr=sr)
    S = np.abs(librosa.stft(y, n_fft=N_FFT, hop_length=HOP)) ** 2  # chroma_stft's _spectrogram(power=2)
    tuning = estimate_tuning_band(S, sr)
    raw = np.einsum("cf,...ft->...ct", _chroma_filters(sr, float(tuning)), S, optimize=True)
    return librosa.util.normalize(raw, norm=np.inf, axis=-2)


@functools.lru_cache(maxsize=256)
def _chroma_filters(sr: int, tuning: float) -> np.ndarray:
    import librosa

    return librosa.filters.chroma(sr=sr, n_fft=N_FFT, tuning=tuning, n_chroma=12)


@functools.lru_cache(maxsize=1)
def _band_tuning_is_exact() -> bool:
    """The band-limited tuning estimate reproduces librosa 0.11's ``piptrack`` (checked bit for bit by the
    tests); any other version takes librosa's own path."""
    import librosa

    try:
        from librosa.core.pitch import _parabolic_interpolation  # noqa: F401
    except ImportError:
        return False
    return librosa.__version__.startswith("0.11.")


def estimate_tuning_band(S: np.ndarray, sr: int) -> float:
    """``librosa.estimate_tuning(S=S, sr=sr, bins_per_octave=12)`` for a power spectrogram ``S`` (n_fft 2048), with
    ``piptrack``'s work done on the bins between its ``fmin`` and ``fmax`` (150–4000 Hz: about a third of them)
    and their two neighbours instead of on all of them. Each value it computes is computed by the same operation
    on the same inputs as in ``piptrack`` (the gradient, parabolic shift and local maxima of a bin only read the
    bin and its neighbours; the threshold still reads the whole column), so the pitches, magnitudes and tuning
    are the same bits."""
    import librosa
    from librosa.core.pitch import _parabolic_interpolation

    S = np.abs(S)
    n_fft = N_FFT
    fft_freqs = librosa.fft_frequencies(sr=sr, n_fft=n_fft)
    fmin, fmax = np.maximum(PIPTRACK_FMIN, 0), np.minimum(PIPTRACK_FMAX, float(sr) / 2)
    band = np.flatnonzero((fmin <= fft_freqs) & (fft_freqs < fmax))
    if band.size == 0 or S.shape[-1] == 0:
        return librosa.estimate_tuning(S=S, sr=sr, bins_per_octave=12)
    lo, hi = int(band[0]), int(band[-1]) + 1  # the band is one run of bins
    start, stop = max(lo - 1, 0), min(hi + 1, S.shape[-2])
    if lo == 0 or hi == S.shape[-2]:  # the band touches an edge row: computed differently there, use librosa's
        return librosa.estimate_tuning(S=S, sr=sr, bins_per_octave=12)
    part = S[start:stop]
    avg = np.gradient(part, axis=-2)
    shift = _parabolic_interpolation(part, axis=-2)
    dskew = 0.5 * avg * shift
    ref_value = np.expand_dims(PIPTRACK_THRESHOLD * np.max(S, axis=-2), -2)  # over every bin, as piptrack
    peaks = librosa.util.localmax(part * (part > ref_value), axis=-2)[lo - start : hi - start]
    rows, cols = np.nonzero(peaks)  # row-major, as np.nonzero over the whole spectrogram
    inner = rows + (lo - start)
    pitch = ((rows + lo) + shift[inner, cols]) * float(sr) / n_fft
    pitch = pitch.astype(S.dtype)  # piptrack writes them into an array like S
    mag = (part[inner, cols] + dskew[inner, cols]).astype(S.dtype, copy=False)
    # estimate_tuning, on the non-zero entries of piptrack's (pitch, mag) arrays
    pitch_mask = pitch > 0
    threshold = np.median(mag[pitch_mask]) if pitch_mask.any() else 0.0
    return librosa.pitch_tuning(pitch[(mag >= threshold) & pitch_mask], resolution=0.01, bins_per_octave=12)
