"""The ``mfcc`` encoder is level-independent (its 0th coefficient, the log energy, is dropped), and its cache
identity changed with it, so embeddings of the level-dependent version are never served."""

from __future__ import annotations

import numpy as np
import pytest
from audio_factory import melody, tone

from encoders import registry
from encoders.mfcc import MFCCStats

SR = 22050
GAIN = 10 ** (-10 / 20)  # -10 dB


def library() -> dict[str, np.ndarray]:
    t = np.arange(3 * SR) / SR
    return {
        "tone_a3": tone(220.0, 3.0, SR, harmonics=6),
        "tone_a4": tone(440.0, 3.0, SR, harmonics=2, noise=0.02, seed=3),
        "melody": melody(3.0, SR, seed=1),
        "melody_2": melody(3.0, SR, seed=2),
        "chirp": (0.3 * np.sin(2 * np.pi * (200 + 300 * t) * t)).astype(np.float32),
        "noise": (0.1 * np.random.default_rng(4).standard_normal(3 * SR)).astype(np.float32),
    }


def test_a_copy_at_minus_10_db_embeds_the_same_and_is_the_nearest_neighbour():
    encoder = registry.build("mfcc")
    refs = library()
    names = list(refs)
    ref_vectors = encoder.embed(list(refs.values()))
    quiet_vectors = encoder.embed([(GAIN * y).astype(np.float32) for y in refs.values()])
    np.testing.assert_allclose(quiet_vectors, ref_vectors, rtol=1e-3, atol=1e-3)
    unit = ref_vectors / np.linalg.norm(ref_vectors, axis=1, keepdims=True)
    queries = quiet_vectors / np.linalg.norm(quiet_vectors, axis=1, keepdims=True)
    nearest = [names[j] for j in np.argmax(queries @ unit.T, axis=1)]
    assert nearest == names


def test_the_level_coefficient_is_what_was_dropped():
    from encoders.mfcc import mfcc

    y = library()["melody"]
    full = mfcc(y, SR)
    quiet = mfcc((GAIN * y).astype(np.float32), SR)
    assert abs(quiet[0].mean() - full[0].mean()) > 10  # c0 moves with the level ...
    np.testing.assert_allclose(quiet[1:], full[1:], atol=1e-3)  # ... the others do not
    np.testing.assert_array_equal(MFCCStats()._frames(y), full[1:])


def test_the_cache_identity_changed():
    card = registry.card("mfcc")
    assert card.dim == 38
    identity = MFCCStats().identity()
    assert identity["implementation_version"] == 3  # 2: c0 dropped; 3: the float32 STFT
    assert identity["card"]["encoder_dim"] == 38


@pytest.mark.parametrize("name", ["chroma", "chroma-keyinv"])
def test_the_chroma_encoders_are_level_independent_too(name):
    encoder = registry.build(name)
    y = library()["melody"]
    np.testing.assert_allclose(encoder.embed([GAIN * y])[0], encoder.embed([y])[0], rtol=1e-4, atol=1e-5)
