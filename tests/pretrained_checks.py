"""Checks of the behaviour every ``PretrainedEncoder`` shares (input checks, equal-length batching), called with a
random-init encoder by the neural encoders' tests (``test_encoder_pretrained.py``). Imports no torch."""

from __future__ import annotations

import numpy as np
import pytest

from encoders.base import EncoderError


def music(sample_rate: int, seconds: float, pitch: float = 220.0, seed: int = 0) -> np.ndarray:
    """Deterministic test audio: a decaying harmonic tone plus a little seeded noise."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    tone = sum(np.sin(2 * np.pi * pitch * k * t) / k for k in (1, 2, 3)) * np.exp(-t)
    noise = np.random.default_rng(seed).standard_normal(t.size) * 0.01
    return (0.3 * tone + noise).astype(np.float32)


def refuses_stereo_and_non_finite_input(encoder) -> None:
    sr = encoder.sample_rate
    with pytest.raises(EncoderError, match="mono"):
        encoder.embed([np.zeros((2, sr), dtype=np.float32)])
    with pytest.raises(EncoderError, match="NaN"):
        encoder.embed([np.full(sr, np.nan, dtype=np.float32)])


def non_finite_output_raises(encoder, monkeypatch) -> None:
    monkeypatch.setattr(encoder, "_embed_equal_length", lambda audio: np.full((len(audio), encoder.dim), np.nan))
    with pytest.raises(EncoderError, match="non-finite"):
        encoder.embed([music(encoder.sample_rate, 0.5)])


def batch_equals_each_alone(encoder, seconds: tuple[float, float], atol: float) -> None:
    first = music(encoder.sample_rate, seconds[0])
    second = music(encoder.sample_rate, seconds[1], pitch=330.0, seed=1)
    together = encoder.embed([first, second])
    alone = np.concatenate([encoder.embed([first]), encoder.embed([second])])
    np.testing.assert_allclose(together, alone, rtol=0, atol=atol)
