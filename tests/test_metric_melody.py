"""Melody accuracy (metrics/melody.py): the report's formula, its edge cases and an independent transcription."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest
from audio_factory import melody as melody_clip
from audio_factory import sine, tone

from metrics import melody, melody_stream
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


def n_frames(n_samples: int) -> int:
    return 1 + n_samples // 256  # center=True framing, hop 256


@pytest.fixture(scope="module")
def a_classes() -> np.ndarray:
    return melody_pitch_classes(sine(A4, 2.0, SR), SR)


# --- the formula on clear cases -------------------------------------------------------------------------------


def test_pure_tones_have_their_pitch_class(a_classes):
    c_classes = melody_pitch_classes(sine(C5, 2.0, SR), SR)
    assert a_classes.dtype == np.int8
    assert len(a_classes) == n_frames(88200) == 345
    assert np.all(a_classes == 9) and np.all(c_classes == 0)


def test_identical_audio_scores_one():
    rng = np.random.default_rng(0)
    clip = (sine(A4, 1.0, SR) + 0.1 * rng.standard_normal(SR)).astype(np.float32)
    assert melody_accuracy(clip, SR, clip.copy(), SR) == 1.0


def test_different_pitch_classes_score_zero():
    assert melody_accuracy(sine(A4, 2.0, SR), SR, sine(C5, 2.0, SR), SR) == 0.0


def test_half_a_half_c_against_a_is_about_half(a_classes):
    mixed = np.concatenate([sine(A4, 1.0, SR), sine(C5, 1.0, SR)])  # 2 × 44100 samples
    acc = pitch_class_accuracy(melody_pitch_classes(mixed, SR), a_classes)
    # 345 frames; frame t is centred on sample 256 t, so frames 0..172 (256·172 = 44032 < 44100) are
    # centred in the A half: 173 expected matches, give or take the frames whose window straddles the switch.
    matches = acc * 345
    assert abs(matches - 173) <= 2, matches


def test_compared_over_the_shorter_length(a_classes):
    short = melody_pitch_classes(sine(A4, 1.0, SR), SR)
    assert len(short) == n_frames(44100) == 173
    assert pitch_class_accuracy(a_classes, short) == 1.0
    assert pitch_class_accuracy(short, a_classes) == 1.0
    # sequence level: only the first min(len) frames count
    assert pitch_class_accuracy(np.array([0, 1, 2, 3], np.int8), np.array([0, 1], np.int8)) == 1.0
    assert pitch_class_accuracy(np.array([0, 1, 2], np.int8), np.array([0, 5, 2, 2, 2], np.int8)) == pytest.approx(
        2 / 3
    )


# --- input conventions ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [22050, 48000])
def test_other_sample_rates_give_the_same_classes(rate, a_classes):
    classes = melody_pitch_classes(sine(A4, 2.0, rate), rate)  # resampled to 44.1 kHz (soxr HQ)
    np.testing.assert_array_equal(classes, a_classes)


def test_stereo_channels_first_is_averaged(a_classes):
    left = sine(A4, 2.0, SR, amp=0.6)
    stereo = np.stack([left, np.zeros_like(left)])  # mean = 0.3 · sin
    np.testing.assert_array_equal(melody_pitch_classes(stereo, SR), a_classes)
    np.testing.assert_array_equal(melody_pitch_classes(stereo[:1], SR), melody_pitch_classes(left, SR))
    # stereo at another rate: mean of channels, then resample
    stereo48 = np.stack([sine(A4, 2.0, 48000), sine(A4, 2.0, 48000)])
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
    half = melody_pitch_classes(np.concatenate([sine(A4, 1.0, SR), np.zeros(SR, np.float32)]), SR, mark_silence=True)
    # frames whose 2048-sample window lies wholly in the silent half (centre ≥ 44100 + 1024) have no pitch
    first_silent = -(-(44100 + 1024) // 256)  # = 177
    assert np.all(half[first_silent:] == NO_PITCH)
    assert np.all(half[: first_silent - 8] == 9)
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
        melody_accuracy(np.zeros(0, np.float32), SR, sine(A4, 1.0, SR), SR)
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


def test_matches_a_direct_transcription_of_the_formula(monkeypatch):
    clip = melody_clip(3.0, SR, seed=7)
    expected = _report_formula(clip, SR)
    got = melody_pitch_classes(clip, SR)
    np.testing.assert_array_equal(got, expected)
    # small blocks: the streaming pass (and the whole-file tuning estimate) do not depend on the block size
    monkeypatch.setattr(melody_stream, "_BLOCK_FRAMES", 37)
    np.testing.assert_array_equal(melody_pitch_classes(clip, SR), expected)


def test_matches_the_formula_after_resampling():
    import soxr

    clip = melody_clip(2.0, SR, seed=11)
    at_22k = soxr.resample(clip, SR, 22050, quality="HQ")
    expected = _report_formula(soxr.resample(at_22k, 22050, SR, quality="HQ"), SR)
    np.testing.assert_array_equal(melody_pitch_classes(at_22k, 22050), expected)


# --- the streaming implementation equals the formula's steps, bit for bit ------------------------------------


def _filtfilt(y: np.ndarray) -> np.ndarray:
    from scipy.signal import butter, filtfilt

    b, a = butter(N=2, Wn=261.2 / (0.5 * SR), btype="high", analog=False)
    return filtfilt(b, a, y, padlen=min(9, len(y) - 1))  # scipy's default padding (shortened for tiny clips)


def _librosa_steps(y: np.ndarray):
    """What chroma_stft does on the high-passed signal: power spectrogram, tuning, argmax of the chroma."""
    import librosa

    y_hp = _filtfilt(y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # n_fft larger than tiny clips; no pitch in silence
        power = np.abs(librosa.stft(y_hp, n_fft=2048, hop_length=256, win_length=2048)) ** 2
        tuning = librosa.estimate_tuning(S=power, sr=SR, bins_per_octave=12)
        chroma = librosa.feature.chroma_stft(y=y_hp, sr=SR, n_fft=2048, hop_length=256, win_length=2048)
    return y_hp, power, tuning, np.argmax(chroma, axis=0)


def _signals() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(42)
    chord = sine(261.63, 4.0, SR, amp=0.2) + sine(329.63, 4.0, SR, amp=0.2) + sine(392.0, 4.0, SR, amp=0.2)
    return {
        "melody": melody_clip(7.3, SR, seed=1),
        "tone": tone(A4, 2.0, SR),
        "chord": chord.astype(np.float32),
        "noise": (0.3 * rng.standard_normal(5 * SR)).astype(np.float32),
        "quiet noise": (1e-4 * rng.standard_normal(SR)).astype(np.float32),
        "silences": np.concatenate(
            [
                np.zeros(30000, np.float32),
                tone(C5, 1.0, SR),
                np.zeros(70001, np.float32),
                melody_clip(2.0, SR, seed=3),
                np.zeros(5000, np.float32),
            ]
        ),
        "float64": melody_clip(2.5, SR, seed=9).astype(np.float64),
        "one block + 3": (0.3 * rng.standard_normal(256 * 1024 + 3)).astype(np.float32),
        "short": (0.3 * rng.standard_normal(3000)).astype(np.float32),
        "tiny": (0.3 * rng.standard_normal(7)).astype(np.float32),
    }


SIGNALS = _signals()
# (frames per block, spectrum kept in bytes, forward output kept in bytes): the defaults; small blocks; small
# blocks with part of the spectrum transformed again and part of the forward pass re-filtered; nothing kept
SETTINGS = [None, (37, 1 << 30, 1 << 30), (64, 3 * 64 * 8200, 256 * 64 * 8 * 2), (5, 0, 0)]


@pytest.fixture(params=SETTINGS, ids=["defaults", "small blocks", "partly kept", "nothing kept"])
def setting(request, monkeypatch):
    if request.param is not None:
        frames, spectrum, forward = request.param
        monkeypatch.setattr(melody_stream, "_BLOCK_FRAMES", frames)
        monkeypatch.setattr(melody_stream, "_SPECTRUM_CACHE_BYTES", spectrum)
        monkeypatch.setattr(melody_stream, "_FORWARD_CACHE_BYTES", forward)
    return request.param


@pytest.mark.parametrize("name", list(SIGNALS))
def test_streaming_pass_equals_librosa_bit_for_bit(name, setting):
    y = SIGNALS[name]
    y_hp, power, tuning, classes = _librosa_steps(y)
    np.testing.assert_array_equal(melody_stream._highpass(y, SR), y_hp)  # the blockwise filtfilt, exactly
    got_power = np.full_like(power, np.nan)
    for first, block, _ in melody_stream._Spectrogram(y, SR).blocks():
        got_power[:, first : first + len(block)] = block.T
    np.testing.assert_array_equal(got_power, power)  # every frame once, librosa.stft's numbers exactly
    assert melody_stream._estimate_tuning(y, SR) == tuning  # estimate_tuning(S=power), exactly
    np.testing.assert_array_equal(melody_pitch_classes(y, SR), classes)  # chroma_stft + argmax


@pytest.mark.parametrize("name", ["silences", "melody", "quiet noise"])
def test_voiced_variant_equals_its_definition(name, setting):
    y = SIGNALS[name]
    _, power, _, classes = _librosa_steps(y)
    window = np.hanning(2049)[:-1]  # the periodic Hann window librosa uses
    silence_power = melody.SILENCE_RMS**2 * float(np.sum(window**2)) * 2048
    frame_power = power[0] + power[-1] + 2 * power[1:-1].sum(axis=0)  # Parseval: n_fft × Σ (w x)²
    expected = np.where(frame_power < silence_power, NO_PITCH, classes)
    np.testing.assert_array_equal(melody_pitch_classes(y, SR, mark_silence=True), expected)
    if name == "silences":
        assert (expected == NO_PITCH).any() and (expected != NO_PITCH).any()


def test_file_features_is_thread_safe_and_picklable():
    import pickle
    from concurrent.futures import ThreadPoolExecutor

    metric = pickle.loads(pickle.dumps(MelodyAccuracy()))
    clips = [melody_clip(1.0 + i / 3, SR, seed=i) for i in range(6)]
    expected = [metric.file_features(c) for c in clips]
    with ThreadPoolExecutor(3) as pool:
        got = list(pool.map(metric.file_features, clips * 2))
    for e, g in zip(expected * 2, got):
        np.testing.assert_array_equal(e, g)


@pytest.mark.slow
def test_memory_is_bounded_for_long_audio():
    """Six minutes of white noise (the most spectral peaks) at 44.1 kHz in a fresh process, 16 MB of spectrum
    and 16 MB of forward-filtered signal kept: the peak above the input stays below what a float64 copy of the
    signal alone would take (127 MB) — chroma_stft on the whole file needs ≈ 4.5 GB."""
    code = """
import numpy as np
from pathlib import Path
from metrics import melody, melody_stream

def status(field):
    return int(next(l for l in Path('/proc/self/status').read_text().splitlines() if l.startswith(field)).split()[1])

melody_stream._SPECTRUM_CACHE_BYTES = melody_stream._FORWARD_CACHE_BYTES = 16 << 20
melody.melody_pitch_classes(np.zeros(44100, np.float32), 44100)  # imports
rng = np.random.default_rng(0)
y = np.empty(360 * 44100, np.float32)
for s in range(0, y.size, 1 << 20):
    y[s:s + (1 << 20)] = 0.1 * rng.standard_normal(min(1 << 20, y.size - s), dtype=np.float32)
Path('/proc/self/clear_refs').write_text('5')
before = status('VmRSS')
classes = melody.melody_pitch_classes(y, 44100)
assert classes.size == 1 + y.size // 256
print((status('VmHWM') - before) / 1024)
"""
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    extra_mb = float(out.split()[-1])
    # kept spectrum and forward output (32 MB), ~2M spectral peaks at ≤ 17 B, O(block) temporaries
    assert extra_mb < 120, extra_mb


# --- the pair metric ------------------------------------------------------------------------------------------


def test_pair_metric_protocol():
    metric = MelodyAccuracy()
    assert isinstance(metric, PairMetric)
    assert (metric.name, metric.sample_rate, metric.columns, metric.in_auto) == ("melody", 44100, ("melody_acc",), True)
    assert metric.check_available()
    identity = metric.identity()
    assert identity["sample_rate"] == 44100 and identity["metric"] == "melody"
    assert "soxr HQ" in identity["resampler"] and "261.2" in identity["highpass"] and "hop=256" in identity["chroma"]
    a = metric.file_features(sine(A4, 1.0, SR))
    c = metric.file_features(sine(C5, 1.0, SR))
    assert isinstance(a, np.ndarray) and a.dtype == np.int8
    assert metric.pair_scores(a, a) == {"melody_acc": 1.0}
    assert metric.pair_scores(a, c) == {"melody_acc": 0.0}


def test_key_invariant_variant_is_separate_and_opt_in():
    metric = MelodyAccuracyKeyInvariant()
    assert (metric.name, metric.columns, metric.in_auto) == ("melody_keyinv", ("melody_acc_keyinv",), False)
    a = metric.file_features(sine(A4, 1.0, SR))
    c = metric.file_features(sine(C5, 1.0, SR))  # A transposed up 3 semitones
    assert metric.pair_scores(a, c) == {"melody_acc_keyinv": 1.0}
    assert MelodyAccuracy().pair_scores(a, c) == {"melody_acc": 0.0}
    # brute force over shifts on random sequences, with no-pitch frames
    rng = np.random.default_rng(5)
    x = rng.integers(-1, 12, size=200).astype(np.int8)
    y = rng.integers(-1, 12, size=150).astype(np.int8)
    shifted = [np.where(y == NO_PITCH, NO_PITCH, (y + s) % 12).astype(np.int8) for s in range(12)]
    assert pitch_class_accuracy_key_invariant(x, y) == pytest.approx(max(pitch_class_accuracy(x, z) for z in shifted))


def test_library_imports_no_harness():
    code = (
        "import sys, metrics.melody, metrics.ir; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('benchmark', 'mlflow', 'click', 'torch')]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_voiced_metric_is_separately_named_and_cached():
    from metrics.melody import MelodyAccuracyVoiced

    voiced, report = MelodyAccuracyVoiced(), MelodyAccuracy()
    assert (voiced.name, voiced.columns, voiced.in_auto) == ("melody_voiced", ("melody_acc_voiced",), False)
    assert voiced.identity() != report.identity()  # different features: never share a cache entry
    silent = voiced.file_features(np.zeros(SR, np.float32))
    assert np.all(silent == NO_PITCH) and voiced.pair_scores(silent, silent) == {"melody_acc_voiced": 0.0}
