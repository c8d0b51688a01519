"""librosa's mel filter bank, periodic Hann window and ``power_to_db``, in numpy alone and equal to librosa's own
(bit for bit, ``tests/test_baseline_features.py``), so that the worker processes of ``mfcc`` never import librosa:
its import (scipy.signal, numba) costs those processes' fork server ≈1.3 s of CPU on every run, on machines where
every second of CPU counts (``perf/baselines_speed.py``). These are librosa 0.11's formulas, operation for
operation; anything beyond them (chroma, tuning, …) still comes from librosa itself.
"""

from __future__ import annotations

import functools

import numpy as np

# Slaney's mel scale (librosa.hz_to_mel / mel_to_hz with htk=False): linear below 1 kHz, logarithmic above
_F_SP = 200.0 / 3
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = (_MIN_LOG_HZ - 0.0) / _F_SP
_LOGSTEP = np.log(6.4) / 27.0


def _hz_to_mel(hz: float) -> np.ndarray:
    frequency = np.asanyarray(hz)
    mel = (frequency - 0.0) / _F_SP
    if frequency >= _MIN_LOG_HZ:
        mel = _MIN_LOG_MEL + np.log(frequency / _MIN_LOG_HZ) / _LOGSTEP
    return mel


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    hz = 0.0 + _F_SP * mels
    log = mels >= _MIN_LOG_MEL
    hz[log] = _MIN_LOG_HZ * np.exp(_LOGSTEP * (mels[log] - _MIN_LOG_MEL))
    return hz


@functools.lru_cache(maxsize=8)
def mel_basis(sr: int, n_fft: int = 2048, n_mels: int = 128) -> np.ndarray:
    """``librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels)``: slaney scale and norm, 0 Hz to ``sr / 2``,
    float32, shape (n_mels, 1 + n_fft // 2). Read-only (it is cached)."""
    fft_frequencies = np.fft.rfftfreq(n=n_fft, d=1.0 / sr)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(float(sr) / 2), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fft_frequencies)
    weights = np.zeros((n_mels, 1 + n_fft // 2), dtype=np.float32)
    for i in range(n_mels):
        lower = -ramps[i] / fdiff[i]
        upper = ramps[i + 2] / fdiff[i + 1]
        weights[i] = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels]))[:, np.newaxis]
    weights.flags.writeable = False
    return weights


@functools.lru_cache(maxsize=4)
def hann_window(n: int) -> np.ndarray:
    """``librosa.filters.get_window("hann", n, fftbins=True)`` (scipy's periodic Hann), float64. Read-only."""
    fac = np.linspace(-np.pi, np.pi, n + 1)
    window = np.zeros(n + 1)
    for k, a in enumerate((0.5, 0.5)):  # scipy.signal.windows.general_cosine with Hann's coefficients
        window += a * np.cos(k * fac)
    window = window[:-1]
    window.flags.writeable = False
    return window


def power_to_db(S: np.ndarray, amin: float = 1e-10, top_db: float = 80.0) -> np.ndarray:
    """``librosa.power_to_db(S)`` (ref 1.0): 10·log10 of the power, floored ``top_db`` below its maximum."""
    log_spec = 10.0 * np.log10(np.maximum(amin, S))
    log_spec -= 10.0 * np.log10(np.maximum(amin, 1.0))
    return np.maximum(log_spec, log_spec.max() - top_db)
