"""The tests' one source of synthetic audio: deterministic float32 clips (numpy only, cheap to import).

Importable from any test module (``from audio_factory import tone``): tests/conftest.py puts ``tests/`` on
``sys.path``. Sample counts are ``round(seconds * sr)``.
"""

from __future__ import annotations

import numpy as np

SR = 22050  # the harness's default analysis rate


def _time(seconds: float, sr: int) -> np.ndarray:
    return np.arange(int(round(seconds * sr))) / sr


def tone(
    freq: float, seconds: float, sr: int = SR, harmonics: int = 3, noise: float = 0.0, seed: int = 0
) -> np.ndarray:
    """A harmonic tone (partial h at 1/h), plus optional seeded white noise, scaled to a peak of 0.3."""
    t = _time(seconds, sr)
    y = sum(np.sin(2 * np.pi * freq * h * t) / h for h in range(1, harmonics + 1))
    if noise:
        y = y + noise * np.random.default_rng(seed).standard_normal(len(t))
    return (0.3 * y / max(np.max(np.abs(y)), 1e-9)).astype(np.float32)


def sine(freq: float, seconds: float, sr: int = SR, amp: float = 0.5, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    """``amp · sin(2π freq t)`` plus optional seeded white noise of standard deviation ``noise`` (not rescaled)."""
    t = _time(seconds, sr)
    y = amp * np.sin(2 * np.pi * freq * t)
    if noise:
        y = y + noise * np.random.default_rng(seed).standard_normal(t.size)
    return y.astype(np.float32)


def melody(seconds: float, sr: int, seed: int) -> np.ndarray:
    """A noisy random melody: 4 notes/s over two octaves from C4, strong white noise and a 98 Hz hum."""
    rng = np.random.default_rng(seed)
    t = _time(seconds, sr)
    n = t.size
    notes = 261.63 * 2 ** (rng.integers(0, 24, size=int(seconds * 4)) / 12)
    freq = np.repeat(notes, -(-n // len(notes)))[:n]
    phase = 2 * np.pi * np.cumsum(freq) / sr
    return (0.4 * np.sin(phase) + 0.2 * rng.standard_normal(n) + 0.1 * np.sin(2 * np.pi * 98 * t)).astype(np.float32)
