"""The transposition-invariant encoders (``chroma-keyinv``, ``deepchroma-keyinv``, ``tonal-timbre``): exact invariance
of the shared transform (the 2D Fourier magnitude of chroma patches) to a circular shift of the chroma bins, and, on
synthetic audio, a chord progression found in other keys."""

from __future__ import annotations

import numpy as np
import pytest

from encoders import registry
from encoders.chroma import chroma_stft
from encoders.keyinv import N_CHROMA, ChromaKeyInvariant, DeepChromaKeyInvariant, TonalTimbre, chroma_2dftm, dftm_dim

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
    for name in ("chroma-keyinv", "deepchroma-keyinv", "tonal-timbre")
]
#: (patch, hop, compression) of each invariant encoder's chroma block
PATCHES = [(cls.patch, cls.hop, cls.compression) for cls in (ChromaKeyInvariant, DeepChromaKeyInvariant, TonalTimbre)]


@pytest.mark.parametrize("patch, hop, compression", PATCHES)
@pytest.mark.parametrize("seed", range(3))
def test_the_transform_is_invariant_to_every_circular_shift(seed, patch, hop, compression):
    rng = np.random.default_rng(seed)
    frames = rng.random((N_CHROMA, 3 * patch + 7)) ** 3  # peaky, like real chroma
    base = chroma_2dftm(frames, patch, hop, compression)
    assert base.shape == (dftm_dim(patch),) and np.all(np.isfinite(base))
    for shift in range(N_CHROMA):
        shifted = chroma_2dftm(np.roll(frames, shift, axis=0), patch, hop, compression)
        np.testing.assert_allclose(shifted, base, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", KEYINV)
def test_the_encoders_are_invariant_to_every_circular_shift_of_their_chroma(name, monkeypatch):
    """The whole embedding (for ``tonal-timbre``: its chroma block; the timbre block does not read the chroma) is
    unchanged when the chroma the encoder computes is circularly shifted by any of the 12 steps."""
    import encoders.keyinv as keyinv

    encoder = registry.build(name)
    y = chords(PROGRESSION, encoder.sample_rate)
    base = encoder.embed([y])[0]
    for shift in range(1, N_CHROMA):
        if name == "tonal-timbre":
            monkeypatch.setattr(keyinv, "chroma_stft", lambda a, sr, s=shift: np.roll(chroma_stft(a, sr), s, axis=0))
        else:
            frames = type(encoder)._frames
            monkeypatch.setattr(type(encoder), "_frames", lambda self, a, s=shift, f=frames: np.roll(f(self, a), s, 0))
        np.testing.assert_allclose(encoder.embed([y])[0], base, rtol=0, atol=1e-6)
        monkeypatch.undo()


def test_what_the_transform_tells_apart_and_what_it_does_not():
    """Different chords or a different motion give different vectors; a patch and its mirror image (pitch classes
    inverted *and* time reversed: |F(k, l)| = |F(-k, -l)|) do not — a known blind spot of the 2D Fourier magnitude,
    e.g. C major → F major is the mirror image of F minor → C minor. Zero chroma (silence) gives a finite vector."""
    rng = np.random.default_rng(0)
    frames = rng.random((N_CHROMA, 256)) ** 3
    other = rng.random((N_CHROMA, 256)) ** 3
    base = chroma_2dftm(frames, 128, 32)
    assert np.abs(chroma_2dftm(other, 128, 32) - base).max() > 0.05
    mirrored = np.roll(frames[::-1], 1, axis=0)[:, ::-1]  # pitch class p → -p, time t → -t
    np.testing.assert_allclose(chroma_2dftm(mirrored, 128, 32), base, rtol=0, atol=1e-6)
    assert np.all(np.isfinite(chroma_2dftm(np.zeros((N_CHROMA, 5)), 128, 32)))


@pytest.mark.parametrize("name", ["chroma-keyinv", "deepchroma-keyinv"])
def test_the_encoders_share_the_transform_over_their_plain_frames(name):
    if not available(name):
        pytest.skip(registry.availability(name)[1])
    encoder = registry.build(name)
    plain = registry.build(name.removesuffix("-keyinv"))
    y = chords(PROGRESSION, encoder.sample_rate)
    assert type(plain)._frames is type(encoder)._frames  # the same frame source
    expected = chroma_2dftm(plain._frames(y), encoder.patch, encoder.hop, encoder.compression).astype(np.float32)
    np.testing.assert_array_equal(encoder.embed([y])[0], expected)
    assert encoder.card.dim == dftm_dim(encoder.patch) and encoder.card.license == plain.card.license


def test_tonal_timbre_is_two_unit_blocks_weighted():
    import encoders.keyinv as keyinv

    encoder = registry.build("tonal-timbre")
    vector = encoder.embed([chords(PROGRESSION, encoder.sample_rate)])[0].astype(np.float64)
    split = dftm_dim(encoder.patch)
    tonal, timbre = np.linalg.norm(vector[:split]), np.linalg.norm(vector[split:])
    assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-6)
    assert tonal / timbre == pytest.approx(keyinv.TONAL_WEIGHT / keyinv.TIMBRE_WEIGHT, rel=1e-5)


def test_the_cache_identity_changed():
    """The key-normalised v1 embeddings (24-d) are never served for the new transform."""
    for name in ("chroma-keyinv", "deepchroma-keyinv"):
        cls = registry.encoder_class(name)
        assert cls.implementation_version == 2 and cls.card.dim != 24


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
