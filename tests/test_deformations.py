"""Each deformation of the robustness scenario does what its name says, on synthetic audio (benchmark/scenarios)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pedalboard")

from benchmark.scenarios import deformations as D  # noqa: E402
from benchmark.scenarios.queries import offsets  # noqa: E402

SR = 44100


def _sine(freq: float, seconds: float, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * SR))) / SR
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _music(seconds: float, seed: int = 0) -> np.ndarray:
    """Broadband, non-periodic test music: low-passed noise under a few harmonic notes."""
    from scipy import signal

    rng = np.random.default_rng(seed)
    n = int(round(seconds * SR))
    noise = signal.sosfilt(signal.butter(4, 6000, fs=SR, output="sos"), rng.standard_normal(n))
    notes = 220 * 2 ** (rng.integers(0, 12, size=int(seconds * 4)) / 12)
    freq = np.repeat(notes, -(-n // len(notes)))[:n]
    tonal = np.sin(2 * np.pi * np.cumsum(freq) / SR)
    y = 0.3 * noise / np.std(noise) + tonal
    return (0.4 * y / np.max(np.abs(y))).astype(np.float32)


def _frequency(audio: np.ndarray) -> float:
    """The dominant frequency of the middle of ``audio`` (Hann window, zero-padded FFT, parabolic peak)."""
    n = len(audio)
    middle = audio[n // 4 : 3 * n // 4].astype(np.float64)
    size = 1 << 20
    spectrum = np.abs(np.fft.rfft(middle * np.hanning(len(middle)), size))
    i = int(np.argmax(spectrum))
    a, b, c = np.log(spectrum[i - 1 : i + 2])
    return (i + 0.5 * (a - c) / (a - 2 * b + c)) * SR / size


@pytest.mark.parametrize(
    "name, semitones", [("pitch_up_1", 1), ("pitch_down_1", -1), ("pitch_up_2", 2), ("pitch_down_2", -2)]
)
def test_pitch_shift_moves_a_tone_by_the_ratio_and_keeps_its_duration(name, semitones):
    audio = _sine(440.0, 2.0)
    shifted = D.parse(name).apply(audio, SR, seed=0)
    assert len(shifted) == len(audio)
    expected = 440.0 * 2 ** (semitones / 12)
    assert _frequency(shifted) == pytest.approx(expected, rel=0.01)
    assert _frequency(audio) == pytest.approx(440.0, rel=0.001)


@pytest.mark.parametrize("name, factor", [("tempo_0.9", 0.9), ("tempo_1.1", 1.1)])
def test_stretch_changes_the_duration_by_the_factor_and_keeps_the_pitch(name, factor):
    audio = _sine(440.0, 2.0)
    stretched = D.parse(name).apply(audio, SR, seed=0)
    assert len(stretched) == pytest.approx(len(audio) / factor, rel=0.01)
    assert _frequency(stretched) == pytest.approx(440.0, rel=0.01)


@pytest.mark.parametrize("snr", [20, 10, 0])
def test_noise_is_added_at_the_named_snr(snr):
    audio = _music(1.5)
    noisy = D.parse(f"noise_snr_{snr}").apply(audio, SR, seed=3)
    noise = noisy.astype(np.float64) - audio
    measured = 10 * np.log10(np.mean(audio.astype(np.float64) ** 2) / np.mean(noise**2))
    assert abs(measured - snr) < 0.5
    again = D.parse(f"noise_snr_{snr}").apply(audio, SR, seed=3)
    assert np.array_equal(noisy, again)  # seeded


def test_noise_is_pink():
    n = D.noise(1 << 16, seed=1, color="pink")
    power = np.abs(np.fft.rfft(n)) ** 2
    freqs = np.fft.rfftfreq(len(n), 1 / SR)
    low = power[(freqs > 100) & (freqs < 200)].mean()  # one octave …
    high = power[(freqs > 6400) & (freqs < 12800)].mean()  # … six octaves up: 1/f is 64× (18 dB) less per Hz
    assert 10 * np.log10(low / high) == pytest.approx(18.06, abs=1.5)


def test_silence_gets_no_noise():
    silence = np.zeros(1000, dtype=np.float32)
    assert np.array_equal(D.parse("noise_snr_10").apply(silence, SR, seed=0), silence)


def test_gain_scales_by_the_named_decibels():
    audio = _music(0.5)
    quieter = D.parse("gain_-10db").apply(audio, SR, seed=0)
    assert 20 * np.log10(np.max(np.abs(quieter)) / np.max(np.abs(audio))) == pytest.approx(-10, abs=1e-3)


def test_lowpass_removes_the_energy_above_its_cutoff():
    audio = (0.1 * np.random.default_rng(0).standard_normal(SR)).astype(np.float32)  # white: flat to 22 kHz
    filtered = D.parse("lowpass_4k").apply(audio, SR, seed=0)
    assert len(filtered) == len(audio)
    spectrum = np.abs(np.fft.rfft(filtered)) ** 2
    before = np.abs(np.fft.rfft(audio)) ** 2
    freqs = np.fft.rfftfreq(len(audio), 1 / SR)
    above, below = freqs > 5000, freqs < 3000
    assert 10 * np.log10(spectrum[above].sum() / before[above].sum()) < -30
    assert 10 * np.log10(spectrum[below].sum() / before[below].sum()) > -0.5
    assert spectrum[freqs > 4000].sum() / spectrum.sum() < 0.05


def test_mp3_round_trip_keeps_the_length_and_the_alignment():
    from scipy import signal

    audio = _music(3.0, seed=2)
    decoded = D.parse("mp3_32k").apply(audio, SR, seed=0)
    assert abs(len(decoded) - len(audio)) <= 1152  # one MPEG-1 layer III frame (it is in fact exactly equal)
    assert len(decoded) == len(audio)
    correlation = signal.correlate(decoded, audio, mode="full", method="fft")
    assert abs(int(np.argmax(correlation)) - (len(audio) - 1)) <= 2  # aligned: the codec's delay removed
    assert not np.array_equal(decoded, audio)  # and lossy
    assert np.corrcoef(decoded, audio)[0, 1] > 0.8


def test_identity_and_excerpt_leave_the_audio_alone():
    audio = _music(0.5)
    assert np.array_equal(D.parse("identity").apply(audio, SR, seed=0), audio)
    assert np.array_equal(D.parse("excerpt").apply(audio, SR, seed=0), audio)


def test_names_parse_to_their_parameters_and_bad_names_are_refused():
    assert [d.name for d in D.parse_list("")] == list(D.DEFAULT_DEFORMATIONS)
    assert [d.name for d in D.parse_list("mp3_32k, identity,mp3_32k")] == ["mp3_32k", "identity"]
    assert D.parse("pitch_down_2").params == {"semitones": -2.0}
    assert D.parse("tempo_1.1").params == {"factor": 1.1}
    assert D.parse("lowpass_4k").params["cutoff_hz"] == 4000.0
    assert D.parse("gain_-10db").params == {"gain_db": -10.0}
    assert D.parse("noise_snr_0").params["snr_db"] == 0.0
    for bad in ("pitch_up", "tempo_1", "mp3_33k", "gain_+3db", "reverb", "lowpass_0k"):
        with pytest.raises(D.DeformationError):
            D.parse(bad)
    # the cache key holds the parameters and the versions of the libraries that compute them
    identity = D.parse("pitch_up_1").identity()
    assert identity["semitones"] == 1.0 and "pedalboard" in identity["libraries"]


def test_query_offsets_are_seeded_and_the_excerpt_never_overlaps():
    q = 100
    for seed in range(20):
        start, other = offsets(1000, q, seed, "ab" * 32)
        assert 0 <= start <= 900 and other is not None and 0 <= other <= 900
        assert abs(start - other) >= q
        assert offsets(1000, q, seed, "ab" * 32) == (start, other)
    assert offsets(2 * q, q, 0, "cd" * 32)[1] is not None  # exactly two excerpts fit
    start, other = offsets(150, q, 0, "cd" * 32)
    assert 0 <= start <= 50 and other is None
    assert offsets(60, q, 0, "cd" * 32) == (0, None)  # shorter than a query: the whole track
