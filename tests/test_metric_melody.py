"""Melody accuracy (metrics/melody.py): the report's formula, its edge cases and an independent transcription."""
from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest

from metrics import melody
from metrics.base import PairMetric
from metrics.melody import (
    MELODY_SAMPLE_RATE,
    NO_PITCH,
    MelodyAccuracy,
    MelodyAccuracyKeyInvariant,
    melody_accuracy,
    melody_pitch_classes,
    pitch_class_accuracy,
    pitch_class_accuracy_key_invariant,
)

SR = MELODY_SAMPLE_RATE
A4, C5 = 440.0, 523.25  # pitch classes 9 (A) and 0 (C), both above the 261.2 Hz high-pass


def tone(freq: float, seconds: float, sr: int = SR, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def n_frames(n_samples: int) -> int:
    return 1 + n_samples // 256  # center=True framing, hop 256


@pytest.fixture(scope="module")
def a_classes() -> np.ndarray:
    return melody_pitch_classes(tone(A4, 2.0), SR)


# --- the formula on clear cases -------------------------------------------------------------------------------

def test_pure_tones_have_their_pitch_class(a_classes):
    c_classes = melody_pitch_classes(tone(C5, 2.0), SR)
    assert a_classes.dtype == np.int8
    assert len(a_classes) == n_frames(88200) == 345
    assert np.all(a_classes == 9) and np.all(c_classes == 0)


def test_identical_audio_scores_one():
    rng = np.random.default_rng(0)
    clip = (tone(A4, 1.0) + 0.1 * rng.standard_normal(SR)).astype(np.float32)
    assert melody_accuracy(clip, SR, clip.copy(), SR) == 1.0


def test_different_pitch_classes_score_zero():
    assert melody_accuracy(tone(A4, 2.0), SR, tone(C5, 2.0), SR) == 0.0


def test_half_a_half_c_against_a_is_about_half(a_classes):
    mixed = np.concatenate([tone(A4, 1.0), tone(C5, 1.0)])  # 2 × 44100 samples
    acc = pitch_class_accuracy(melody_pitch_classes(mixed, SR), a_classes)
    # 345 frames; frame t is centred on sample 256 t, so frames 0..172 (256·172 = 44032 < 44100) are
    # centred in the A half: 173 expected matches, give or take the frames whose window straddles the switch.
    matches = acc * 345
    assert abs(matches - 173) <= 2, matches


def test_compared_over_the_shorter_length(a_classes):
    short = melody_pitch_classes(tone(A4, 1.0), SR)
    assert len(short) == n_frames(44100) == 173
    assert pitch_class_accuracy(a_classes, short) == 1.0
    assert pitch_class_accuracy(short, a_classes) == 1.0
    # sequence level: only the first min(len) frames count
    assert pitch_class_accuracy(np.array([0, 1, 2, 3], np.int8), np.array([0, 1], np.int8)) == 1.0
    assert pitch_class_accuracy(np.array([0, 1, 2], np.int8), np.array([0, 5, 2, 2, 2], np.int8)) == pytest.approx(2 / 3)


# --- input conventions ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("rate", [22050, 48000])
def test_other_sample_rates_give_the_same_classes(rate, a_classes):
    classes = melody_pitch_classes(tone(A4, 2.0, sr=rate), rate)  # resampled to 44.1 kHz (soxr HQ)
    np.testing.assert_array_equal(classes, a_classes)


def test_stereo_channels_first_is_averaged(a_classes):
    left = tone(A4, 2.0, amp=0.6)
    stereo = np.stack([left, np.zeros_like(left)])  # mean = 0.3 · sin
    np.testing.assert_array_equal(melody_pitch_classes(stereo, SR), a_classes)
    np.testing.assert_array_equal(melody_pitch_classes(stereo[:1], SR), melody_pitch_classes(left, SR))
    # stereo at another rate: mean of channels, then resample
    stereo48 = np.stack([tone(A4, 2.0, sr=48000), tone(A4, 2.0, sr=48000)])
    np.testing.assert_array_equal(melody_pitch_classes(stereo48, 48000), a_classes)


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match="channels-first"):
        melody_pitch_classes(np.zeros((1000, 2), np.float32), SR)
    with pytest.raises(ValueError, match="floating-point"):
        melody_pitch_classes(np.zeros(1000, np.int16), SR)
    with pytest.raises(ValueError, match="NaN"):
        melody_pitch_classes(np.array([0.0, np.nan, 0.0]), SR)
    with pytest.raises(ValueError, match="shape"):
        melody_pitch_classes(np.zeros((1, 2, 3)), SR)


# --- silence, short and empty audio ---------------------------------------------------------------------------

def test_report_formula_lets_silence_match_as_c(a_classes):
    silent = melody_pitch_classes(np.zeros(2 * SR, np.float32), SR)
    assert len(silent) == 345 and np.all(silent == 0)  # all-zero chroma: argmax 0 = "C", as in the report
    assert pitch_class_accuracy(silent, silent) == 1.0
    assert MelodyAccuracy().pair_scores(silent, silent) == {"melody_acc": 1.0}


def test_voiced_variant_silence_has_no_pitch_and_never_matches(a_classes):
    silent = melody_pitch_classes(np.zeros(2 * SR, np.float32), SR, mark_silence=True)
    assert len(silent) == 345 and np.all(silent == NO_PITCH)
    assert pitch_class_accuracy(silent, silent) == 0.0  # no pitch is not a match (the report would say 1.0)
    assert pitch_class_accuracy(silent, a_classes) == 0.0
    assert pitch_class_accuracy_key_invariant(silent, silent) == 0.0


def test_tone_then_silence(a_classes):
    half = melody_pitch_classes(np.concatenate([tone(A4, 1.0), np.zeros(SR, np.float32)]), SR, mark_silence=True)
    # frames whose 2048-sample window lies wholly in the silent half (centre ≥ 44100 + 1024) have no pitch
    first_silent = -(-(44100 + 1024) // 256)  # = 177
    assert np.all(half[first_silent:] == NO_PITCH)
    assert np.all(half[:first_silent - 8] == 9)
    matches = pitch_class_accuracy(half, a_classes) * 345
    assert abs(matches - 173) <= 4, matches  # still counted over all 345 frames


def test_near_silent_but_not_digital_silence_keeps_the_formula():
    # 16-bit-like dither (≈ -100 dBFS) is above the -120 dBFS no-pitch threshold: the report's argmax stands
    rng = np.random.default_rng(3)
    dither = (1e-5 * rng.standard_normal(SR)).astype(np.float32)
    assert np.all(melody_pitch_classes(dither, SR, mark_silence=True) != NO_PITCH)


@pytest.mark.parametrize("n", [1, 5, 9, 10, 100, 2047, 2048, 2049])
def test_very_short_audio_does_not_crash(n):
    rng = np.random.default_rng(n)
    clip = (0.3 * rng.standard_normal(n)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and no librosa warning leaks
        classes = melody_pitch_classes(clip, SR)
    assert len(classes) == n_frames(n)
    assert classes.min() >= NO_PITCH and classes.max() <= 11


def test_empty_audio_has_no_frames_and_accuracy_refuses():
    empty = melody_pitch_classes(np.zeros(0, np.float32), SR)
    assert empty.shape == (0,) and empty.dtype == np.int8
    with pytest.raises(ValueError, match="no frames"):
        pitch_class_accuracy(empty, np.array([9], np.int8))
    with pytest.raises(ValueError, match="no frames"):
        pitch_class_accuracy(np.array([9], np.int8), empty)
    with pytest.raises(ValueError, match="no frames"):
        melody_accuracy(np.zeros(0, np.float32), SR, tone(A4, 1.0), SR)
    with pytest.raises(ValueError, match="no frames"):  # the harness records this file as a failure
        MelodyAccuracy().file_features(np.zeros(0, np.float32))


# --- independent transcription of the formula -----------------------------------------------------------------

def _report_formula(y: np.ndarray, sr: int) -> np.ndarray:
    """The report's steps written out: filtfilt(butter(2, 261.2 Hz, high)) → librosa chroma_stft → argmax."""
    import librosa
    from scipy.signal import butter, filtfilt

    b, a = butter(N=2, Wn=261.2 / (0.5 * sr), btype="high", analog=False)
    y_hp = filtfilt(b, a, y)
    chroma = librosa.feature.chroma_stft(y=y_hp, sr=sr, n_fft=2048, hop_length=256, win_length=2048)
    one_hot = np.zeros_like(chroma)
    one_hot[np.argmax(chroma, axis=0), np.arange(chroma.shape[1])] = 1
    return np.argmax(one_hot, axis=0)


def _noisy_melody(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    notes = 261.63 * 2 ** (rng.integers(0, 24, size=int(seconds * 4)) / 12)  # 4 notes/s over two octaves
    freq = np.repeat(notes, -(-n // len(notes)))[:n]
    phase = 2 * np.pi * np.cumsum(freq) / SR
    return (0.4 * np.sin(phase) + 0.2 * rng.standard_normal(n) + 0.1 * np.sin(2 * np.pi * 98 * t)).astype(np.float32)


def test_matches_a_direct_transcription_of_the_formula(monkeypatch):
    clip = _noisy_melody(3.0, seed=7)
    expected = _report_formula(clip, SR)
    got = melody_pitch_classes(clip, SR)
    np.testing.assert_array_equal(got, expected)
    # small blocks: the blockwise chroma (and the whole-file tuning estimate) do not depend on the block size
    monkeypatch.setattr(melody, "_BLOCK_FRAMES", 37)
    np.testing.assert_array_equal(melody_pitch_classes(clip, SR), expected)


def test_matches_the_formula_after_resampling():
    import soxr

    clip = _noisy_melody(2.0, seed=11)
    at_22k = soxr.resample(clip, SR, 22050, quality="HQ")
    expected = _report_formula(soxr.resample(at_22k, 22050, SR, quality="HQ"), SR)
    np.testing.assert_array_equal(melody_pitch_classes(at_22k, 22050), expected)


# --- the pair metric ------------------------------------------------------------------------------------------

def test_pair_metric_protocol():
    metric = MelodyAccuracy()
    assert isinstance(metric, PairMetric)
    assert (metric.name, metric.sample_rate, metric.columns, metric.in_auto) == ("melody", 44100, ("melody_acc",), True)
    assert metric.check_available()
    identity = metric.identity()
    assert identity["sample_rate"] == 44100 and identity["metric"] == "melody"
    assert "soxr HQ" in identity["resampler"] and "261.2" in identity["highpass"] and "hop=256" in identity["chroma"]
    a = metric.file_features(tone(A4, 1.0))
    c = metric.file_features(tone(C5, 1.0))
    assert isinstance(a, np.ndarray) and a.dtype == np.int8
    assert metric.pair_scores(a, a) == {"melody_acc": 1.0}
    assert metric.pair_scores(a, c) == {"melody_acc": 0.0}


def test_key_invariant_variant_is_separate_and_opt_in():
    metric = MelodyAccuracyKeyInvariant()
    assert (metric.name, metric.columns, metric.in_auto) == ("melody_keyinv", ("melody_acc_keyinv",), False)
    a = metric.file_features(tone(A4, 1.0))
    c = metric.file_features(tone(C5, 1.0))  # A transposed up 3 semitones
    assert metric.pair_scores(a, c) == {"melody_acc_keyinv": 1.0}
    assert MelodyAccuracy().pair_scores(a, c) == {"melody_acc": 0.0}
    # brute force over shifts on random sequences, with no-pitch frames
    rng = np.random.default_rng(5)
    x = rng.integers(-1, 12, size=200).astype(np.int8)
    y = rng.integers(-1, 12, size=150).astype(np.int8)
    shifted = [np.where(y == NO_PITCH, NO_PITCH, (y + s) % 12).astype(np.int8) for s in range(12)]
    assert pitch_class_accuracy_key_invariant(x, y) == pytest.approx(max(pitch_class_accuracy(x, z) for z in shifted))


def test_library_imports_no_harness():
    code = ("import sys, metrics.melody, metrics.ir; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('benchmark', 'mlflow', 'click', 'torch')]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_voiced_metric_is_separately_named_and_cached():
    from metrics.melody import MelodyAccuracyVoiced

    voiced, report = MelodyAccuracyVoiced(), MelodyAccuracy()
    assert (voiced.name, voiced.columns, voiced.in_auto) == ("melody_voiced", ("melody_acc_voiced",), False)
    assert voiced.identity() != report.identity()  # different features: never share a cache entry
    silent = voiced.file_features(np.zeros(SR, np.float32))
    assert np.all(silent == NO_PITCH) and voiced.pair_scores(silent, silent) == {"melody_acc_voiced": 0.0}
