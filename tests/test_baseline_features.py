"""The weight-free encoders' fast feature paths equal librosa's own functions: chroma bit for bit (the band-limited
tuning estimate, the chroma bank built once per tuning value); MFCC within float32 rounding, ≤ 1e-6 of the largest
coefficient (a float32 FFT over blocks of frames and the sparse mel bank, where librosa's FFT runs in float64)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from audio_factory import SR, tone

from encoders import chroma as chroma_module
from encoders.chroma import ChromaStats, chroma_stft, estimate_tuning_band
from encoders.mfcc import MFCCStats, mfcc


def _signals() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    t = np.arange(4 * SR) / SR
    sweep = np.sin(2 * np.pi * (100 * t + 600 * t**2)).astype(np.float32)  # crosses the 150-4000 Hz band edges
    chord = sum(np.sin(2 * np.pi * f * t) for f in (261.6, 329.6, 392.0, 4100.0, 140.0)).astype(np.float32) / 5
    return {
        "noise": (0.1 * rng.standard_normal(3 * SR)).astype(np.float32),
        "tone": tone(440.0, 2.0, noise=0.01, seed=1),
        "detuned": tone(452.0, 1.5, noise=0.0, seed=2),
        "sweep": sweep,
        "chord": chord,
        "silence": np.zeros(SR, dtype=np.float32),
        "one_frame": (0.2 * rng.standard_normal(2049)).astype(np.float32),
        "shorter_than_fft": (0.2 * rng.standard_normal(300)).astype(np.float32),
        "loud_clipped": np.clip(5 * rng.standard_normal(SR), -1, 1).astype(np.float32),
    }


SIGNALS = _signals()
MFCC_TOLERANCE = 1e-6  # of the largest |coefficient|: float32 rounding (measured: ≤ 5.1e-7)


def assert_mfcc_close(mine: np.ndarray, librosa_s: np.ndarray) -> None:
    assert mine.shape == librosa_s.shape and mine.dtype == np.float32
    scale = max(float(np.max(np.abs(librosa_s))), 1e-30)
    assert float(np.max(np.abs(mine - librosa_s))) <= MFCC_TOLERANCE * scale


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():  # librosa's "n_fft too large" / "empty frequency set", on purpose
        warnings.simplefilter("ignore")
        yield


@pytest.mark.parametrize("name", list(SIGNALS))
def test_mfcc_equals_librosa_within_float32_rounding(name):
    import librosa

    y = SIGNALS[name]
    assert_mfcc_close(mfcc(y, SR), librosa.feature.mfcc(y=y, sr=SR, n_mfcc=20))


@pytest.mark.parametrize("sr", [8000, 16000, 22050, 24000, 44100, 48000])
def test_the_mel_bank_window_and_power_to_db_equal_librosa_bit_for_bit(sr):
    import librosa

    from encoders.mel import hann_window, mel_basis, power_to_db

    assert mel_basis(sr).dtype == np.float32
    np.testing.assert_array_equal(mel_basis(sr), librosa.filters.mel(sr=sr, n_fft=2048))
    np.testing.assert_array_equal(hann_window(2048), librosa.filters.get_window("hann", 2048, fftbins=True))
    power = np.abs(np.random.default_rng(sr).standard_normal((128, 300)).astype(np.float32)) ** 6
    for S in (power, np.zeros_like(power), power * 1e-12):  # spread wider than top_db; silence; under amin
        np.testing.assert_array_equal(power_to_db(S), librosa.power_to_db(S))


def fresh_python(script: str) -> str:
    """The standard output of ``script`` run by a fresh interpreter in the project's root."""
    import subprocess
    import sys
    from pathlib import Path

    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
        cwd=Path(__file__).resolve().parents[1],
    )
    return done.stdout


def test_mfcc_embeds_without_importing_librosa():
    """Its workers' fork server then imports ≈1.3 s less on every run (see ``encoders/mel.py``)."""

    script = (
        "import sys, numpy as np\n"
        "from encoders.mfcc import MFCCStats\n"
        "MFCCStats().embed([np.random.default_rng(0).standard_normal(22050).astype(np.float32)])\n"
        "print('librosa' in sys.modules)"
    )
    assert fresh_python(script).strip() == "False"


@pytest.mark.parametrize("name", list(SIGNALS))
def test_chroma_and_its_tuning_equal_librosa(name):
    import librosa

    y = SIGNALS[name]
    S = np.abs(librosa.stft(y)) ** 2
    assert estimate_tuning_band(S, SR) == librosa.estimate_tuning(S=S, sr=SR, bins_per_octave=12)
    np.testing.assert_array_equal(chroma_stft(y, SR), librosa.feature.chroma_stft(y=y, sr=SR))


def test_other_rates_and_the_fallback_path_equal_librosa(monkeypatch):
    import librosa

    y = SIGNALS["chord"][: 2 * SR]
    for sr in (8000, 16000, 44100):  # the band's position in the bins moves with the rate
        S = np.abs(librosa.stft(y)) ** 2
        assert estimate_tuning_band(S, sr) == librosa.estimate_tuning(S=S, sr=sr, bins_per_octave=12)
        np.testing.assert_array_equal(chroma_stft(y, sr), librosa.feature.chroma_stft(y=y, sr=sr))
        assert_mfcc_close(mfcc(y, sr), librosa.feature.mfcc(y=y, sr=sr, n_mfcc=20))
    monkeypatch.setattr(chroma_module, "_band_tuning_is_exact", lambda: False)
    np.testing.assert_array_equal(chroma_stft(y, SR), librosa.feature.chroma_stft(y=y, sr=SR))


def test_the_encoders_embed_what_librosa_gives():
    import librosa

    batch = [SIGNALS["tone"], SIGNALS["chord"], SIGNALS["noise"]]
    for encoder, feature, exact in (
        (MFCCStats(), lambda y: librosa.feature.mfcc(y=y, sr=SR, n_mfcc=20)[1:], False),  # the level c0 dropped
        (ChromaStats(), lambda y: librosa.feature.chroma_stft(y=y, sr=SR), True),
    ):
        expected = np.stack([np.concatenate([m.mean(axis=1), m.std(axis=1)]) for m in map(feature, batch)])
        if exact:
            np.testing.assert_array_equal(encoder.embed(batch), expected.astype(np.float32))
        else:
            assert_mfcc_close(encoder.embed(batch), expected.astype(np.float32))


FRESH = """
import json, warnings
import numpy as np
from encoders.chroma import ChromaStats
from encoders.mfcc import MFCCStats
warnings.simplefilter("ignore")
y = (0.1 * np.random.default_rng(5).standard_normal(22050)).astype(np.float32)
out = {e.name: e.embed([y]).tolist() for e in (ChromaStats(), MFCCStats())}  # first calls, nothing imported yet
import librosa
for name, feature in (("chroma", librosa.feature.chroma_stft), ("mfcc", librosa.feature.mfcc)):
    m = feature(y=y, sr=22050)[1 if name == "mfcc" else 0 :]  # the mfcc encoder drops the level coefficient c0
    out[name + "_librosa"] = [np.concatenate([m.mean(axis=1), m.std(axis=1)]).astype(np.float32).tolist()]
print(json.dumps(out))
"""


@pytest.mark.slow  # a fresh interpreter imports librosa: 2-6 s
def test_first_call_in_a_fresh_process():
    """The fast paths find what they need on their own (nothing of librosa imported beforehand)."""
    import json

    out = json.loads(fresh_python(FRESH))
    assert out["chroma"] == out["chroma_librosa"]
    assert_mfcc_close(np.array(out["mfcc"], dtype=np.float32), np.array(out["mfcc_librosa"], dtype=np.float32))


@pytest.mark.parametrize("container", ["WAV", "FLAC", "AIFF"])
@pytest.mark.parametrize("channels", [1, 2, 3, 6])
def test_16_bit_pcm_read_as_integers_decodes_to_the_same_samples(tmp_path, container, channels):
    """``decode`` reads 16-bit PCM as int16 and mixes it down in integers: the very samples of the float32 read
    (libsndfile's ``sample / 32768``) mixed down in float32, and of ``librosa.load``."""
    import librosa
    import soundfile as sf
    import soxr

    from benchmark.decoding import _to_mono, decode

    rng = np.random.default_rng(channels)
    audio = np.clip(0.5 * rng.standard_normal((44100 + 17, channels)), -1, 1)
    audio[:5], audio[5:10] = 1.0, -1.0  # full scale, both ways
    path = tmp_path / f"x.{container.lower()}"
    sf.write(path, audio, 44100, subtype="PCM_16", format=container)
    floats, _ = sf.read(path, dtype="float32", always_2d=True)
    for rate in (22050, 44100, 48000):
        mono = _to_mono(floats)
        expected = mono if rate == 44100 else soxr.resample(mono, 44100, rate, quality="HQ")
        np.testing.assert_array_equal(decode(path, rate), expected)
        np.testing.assert_array_equal(decode(path, rate), librosa.load(path, sr=rate, mono=True)[0])
