"""The transposition-invariant encoders (``chroma-keyinv``, ``deepchroma-keyinv``): exact invariance of the shared
transform to a circular shift of the chroma bins, and, on synthetic audio, a chord progression found in other keys."""

from __future__ import annotations

import numpy as np
import pytest

from encoders import registry
from encoders.keyinv import N_CHROMA, key_invariant_stats, key_phase

SR = 22050
#: a I–vi–IV–V progression in C (MIDI notes of each chord), and a distractor with other chord qualities
PROGRESSION = [(60, 64, 67), (57, 60, 64), (53, 57, 60), (55, 59, 62)]
OTHER_PROGRESSION = [(60, 64, 68), (62, 65, 68), (58, 62, 65, 68), (64, 68, 71)]  # C+, D°, B♭7, E


def chords(progression, sr: int, transpose: int = 0, seconds_per_chord: float = 0.75, repeats: int = 2):
    """Harmonic tones (4 partials at 1/h) for each chord in turn, with short fades; peak 0.3."""
    n = int(round(seconds_per_chord * sr))
    t = np.arange(n) / sr
    fade = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.02)
    pieces = []
    for chord in progression * repeats:
        y = np.zeros(n)
        for note in chord:
            freq = 440.0 * 2 ** ((note + transpose - 69) / 12)
            y += sum(np.sin(2 * np.pi * freq * h * t) / h for h in range(1, 5))
        pieces.append(y * fade)
    y = np.concatenate(pieces)
    return (0.3 * y / np.abs(y).max()).astype(np.float32)


def available(name: str) -> bool:
    return registry.availability(name)[0]


KEYINV = [
    pytest.param(
        name, marks=pytest.mark.skipif(not available(name), reason=f"{name}: {registry.availability(name)[1]}")
    )
    for name in ("chroma-keyinv", "deepchroma-keyinv")
]


@pytest.mark.parametrize("seed", range(5))
def test_the_transform_is_invariant_to_every_circular_shift(seed):
    rng = np.random.default_rng(seed)
    frames = rng.random((N_CHROMA, 40)) ** 3  # peaky, like real chroma
    base = key_invariant_stats(frames)
    assert base.shape == (24,) and np.all(np.isfinite(base))
    for shift in range(N_CHROMA):
        np.testing.assert_allclose(key_invariant_stats(np.roll(frames, shift, axis=0)), base, rtol=0, atol=1e-6)


def test_the_transform_keeps_the_chroma_norm_and_tells_major_from_minor():
    major = np.zeros((N_CHROMA, 1))
    major[[0, 4, 7]] = 1.0
    minor = np.zeros((N_CHROMA, 1))
    minor[[0, 3, 7]] = 1.0
    stats = key_invariant_stats(major)
    assert np.linalg.norm(stats[:12]) == pytest.approx(np.sqrt(3))  # Parseval: the mean vector's norm
    # a minor triad is the inversion of a major one: circular auto-correlation could not tell them apart
    assert np.abs(key_invariant_stats(minor) - stats).max() > 0.1


def test_a_flat_profile_is_left_unrotated():
    assert key_phase(np.ones(N_CHROMA)) == 1.0 and key_phase(np.zeros(N_CHROMA)) == 1.0
    assert np.all(np.isfinite(key_invariant_stats(np.zeros((N_CHROMA, 5)))))


@pytest.mark.parametrize("name", ["chroma-keyinv", "deepchroma-keyinv"])
def test_the_encoders_share_the_transform_over_their_plain_frames(name):
    if not available(name):
        pytest.skip(registry.availability(name)[1])
    encoder = registry.build(name)
    plain = registry.build(name.removesuffix("-keyinv"))
    y = chords(PROGRESSION, encoder.sample_rate)
    assert type(plain)._frames is type(encoder)._frames  # the same frame source
    expected = key_invariant_stats(plain._frames(y)).astype(np.float32)
    np.testing.assert_array_equal(encoder.embed([y])[0], expected)
    assert encoder.card.dim == plain.card.dim == 24 and encoder.card.license == plain.card.license


@pytest.mark.parametrize("name", KEYINV)
def test_a_progression_finds_itself_in_other_keys(name):
    """The progression and its transpositions by 1, 2 and 5 semitones are each other's nearest neighbours among
    distractors (another progression, in two keys, and noise)."""
    encoder = registry.build(name)
    sr = encoder.sample_rate
    versions = {f"progression+{s}": chords(PROGRESSION, sr, s) for s in (0, 1, 2, 5)}
    distractors = {
        "other": chords(OTHER_PROGRESSION, sr),
        "other+3": chords(OTHER_PROGRESSION, sr, 3),
        "noise": (0.1 * np.random.default_rng(0).standard_normal(len(versions["progression+0"]))).astype(np.float32),
    }
    names = [*versions, *distractors]
    vectors = np.stack([encoder.embed_audio(audio) for audio in [*versions.values(), *distractors.values()]])
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)
    for i, version in enumerate(versions):
        ranked = [names[j] for j in np.argsort(-similarity[i])]
        assert set(ranked[: len(versions) - 1]) == set(versions) - {version}, (version, ranked)


def test_the_plain_chroma_encoder_is_not_invariant():
    """What the invariant encoders fix: plain chroma statistics rotate with the key."""
    plain = registry.build("chroma")
    a, b = (plain.embed_audio(chords(PROGRESSION, SR, s)) for s in (0, 1))
    assert np.abs(a - b).max() > 0.1
