"""Controlled deformations of a mono excerpt, each named as it is logged (``pitch_up_1``, ``noise_snr_20``, …).

The signal processing is done by maintained libraries, never by hand-written DSP:

* pitch shift (tempo kept) and time stretch (pitch kept): Rubber Band through ``pedalboard.time_stretch``
  (offline, high quality; its ``PitchShift`` plugin is ~0.2 semitone short at ±1 and is not used);
* MP3: LAME through ``pedalboard.io.AudioFile`` (constant bit rate), decoded back by pedalboard; the codec's fixed
  delay (encoder + decoder, measured once per sample rate on a noise burst) is removed so the result is aligned
  with its input and exactly as long;
* low-pass: an 8th-order Butterworth filter run forward and backward (``scipy.signal.sosfiltfilt``: zero phase);
* noise: pink (1/f power) Gaussian noise, numpy's seeded generator shaped in the frequency domain, scaled to the
  exact signal-to-noise ratio over the whole excerpt; gain: a multiplication.

A deformation's name carries its parameter, so any strength can be asked for: ``pitch_up_<semitones>``,
``pitch_down_<semitones>``, ``tempo_<factor>`` (> 1 faster and shorter), ``noise_snr_<dB>``, ``gain_<dB>db``,
``lowpass_<kHz>k``, ``mp3_<kbps>k``, plus ``identity`` and ``excerpt`` (another, non-overlapping excerpt of the
same track; cut by ``queries.py``, not here).
"""

from __future__ import annotations

import functools
import io
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: the issue's set, in the order tables and figures show it
DEFAULT_DEFORMATIONS = (
    "identity",
    "excerpt",
    "pitch_up_1",
    "pitch_down_1",
    "pitch_up_2",
    "pitch_down_2",
    "tempo_0.9",
    "tempo_1.1",
    "noise_snr_20",
    "noise_snr_10",
    "gain_-10db",
    "lowpass_4k",
    "mp3_32k",
)
NOISE_COLOR = "pink"
LOWPASS_ORDER = 8
#: bit rates LAME accepts in constant bit-rate mode (MPEG-1 and -2 layer III)
MP3_BITRATES = (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160, 192, 224, 256, 320)

_NUMBER = r"(\d+(?:\.\d+)?)"


class DeformationError(ValueError):
    """A deformation name that means nothing (the message lists the forms that do)."""


@dataclass(frozen=True)
class Deformation:
    """One named deformation: ``kind`` and its parameters (part of the deformed-audio cache key)."""

    name: str
    kind: str  # identity | excerpt | pitch | tempo | noise | gain | lowpass | mp3
    params: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def family(self) -> str:
        """What the figure groups by: the kind, with pitch up and down apart."""
        if self.kind == "pitch":
            return "pitch_up" if self.params["semitones"] > 0 else "pitch_down"
        return self.kind

    @property
    def strength(self) -> float:
        """How far from the original (for ordering within a family): semitones, |1 - factor|, -SNR, …"""
        p = self.params
        return {
            "pitch": lambda: abs(p["semitones"]),
            "tempo": lambda: abs(1.0 - p["factor"]),
            "noise": lambda: -p["snr_db"],
            "gain": lambda: abs(p["gain_db"]),
            "lowpass": lambda: -p["cutoff_hz"],
            "mp3": lambda: -p["kbps"],
        }.get(self.kind, lambda: 0.0)()

    def identity(self) -> dict[str, Any]:
        """Everything that changes the deformed audio, with the versions of the libraries that compute it."""
        return {"deformation": self.name, "kind": self.kind, **self.params, "libraries": library_versions(self.kind)}

    def apply(self, audio: np.ndarray, sample_rate: int, seed: int) -> np.ndarray:
        """The deformed mono float32 audio (``excerpt`` and ``identity`` return it unchanged)."""
        audio = np.ascontiguousarray(audio, dtype=np.float32)
        p = self.params
        if self.kind in ("identity", "excerpt"):
            return audio
        if self.kind == "pitch":
            return pitch_shift(audio, sample_rate, p["semitones"])
        if self.kind == "tempo":
            return time_stretch(audio, sample_rate, p["factor"])
        if self.kind == "noise":
            return add_noise(audio, p["snr_db"], seed, p["color"])
        if self.kind == "gain":
            return gain(audio, p["gain_db"])
        if self.kind == "lowpass":
            return lowpass(audio, sample_rate, p["cutoff_hz"], p["order"])
        if self.kind == "mp3":
            return mp3_round_trip(audio, sample_rate, p["kbps"])
        raise AssertionError(self.kind)


_FORMS: list[tuple[str, str, Callable[[re.Match], dict[str, Any]]]] = [
    (r"identity", "identity", lambda m: {}),
    (r"excerpt", "excerpt", lambda m: {}),
    (rf"pitch_up_{_NUMBER}", "pitch", lambda m: {"semitones": float(m[1])}),
    (rf"pitch_down_{_NUMBER}", "pitch", lambda m: {"semitones": -float(m[1])}),
    (rf"tempo_{_NUMBER}", "tempo", lambda m: {"factor": float(m[1])}),
    (r"noise_snr_(-?\d+(?:\.\d+)?)", "noise", lambda m: {"snr_db": float(m[1]), "color": NOISE_COLOR}),
    (r"gain_(-?\d+(?:\.\d+)?)db", "gain", lambda m: {"gain_db": float(m[1])}),
    (rf"lowpass_{_NUMBER}k", "lowpass", lambda m: {"cutoff_hz": float(m[1]) * 1000.0, "order": LOWPASS_ORDER}),
    (r"mp3_(\d+)k", "mp3", lambda m: {"kbps": int(m[1])}),
]
FORMS_HELP = (
    "identity, excerpt, pitch_up_<semitones>, pitch_down_<semitones>, tempo_<factor>, noise_snr_<dB>, "
    "gain_<dB>db, lowpass_<kHz>k, mp3_<kbps>k"
)


def parse(name: str) -> Deformation:
    """The deformation a name stands for; ``DeformationError`` (naming the forms) for anything else."""
    text = name.strip()
    for pattern, kind, params in _FORMS:
        match = re.fullmatch(pattern, text)
        if match:
            deformation = Deformation(text, kind, params(match))
            _check(deformation)
            return deformation
    raise DeformationError(f"unknown deformation '{text}'; known forms: {FORMS_HELP}")


def _check(d: Deformation) -> None:
    p = d.params
    if d.kind == "pitch" and not 0 < abs(p["semitones"]) <= 24:
        raise DeformationError(f"{d.name}: a pitch shift of more than 0 and at most 24 semitones")
    if d.kind == "tempo" and not (0.25 <= p["factor"] <= 4.0 and p["factor"] != 1.0):
        raise DeformationError(f"{d.name}: a tempo factor between 0.25 and 4, not 1 (use identity)")
    if d.kind == "gain" and not -60 <= p["gain_db"] <= 0:
        raise DeformationError(f"{d.name}: a gain between -60 and 0 dB (a boost would clip)")
    if d.kind == "noise" and not -20 <= p["snr_db"] <= 100:
        raise DeformationError(f"{d.name}: an SNR between -20 and 100 dB")
    if d.kind == "lowpass" and not 100 <= p["cutoff_hz"] <= 20000:
        raise DeformationError(f"{d.name}: a cut-off between 0.1k and 20k")
    if d.kind == "mp3" and p["kbps"] not in MP3_BITRATES:
        raise DeformationError(f"{d.name}: an MP3 bit rate in kb/s, one of {', '.join(map(str, MP3_BITRATES))}")


def parse_list(text: str | None) -> tuple[Deformation, ...]:
    """``--deformations a,b,…`` (empty: ``DEFAULT_DEFORMATIONS``), each once, in the order given."""
    names = list(dict.fromkeys(part.strip() for part in (text or "").split(",") if part.strip()))
    return tuple(parse(name) for name in (names or DEFAULT_DEFORMATIONS))


def library_versions(kind: str) -> dict[str, str]:
    """The versions of what computes ``kind`` (part of the cache key: a new Rubber Band or LAME re-deforms)."""
    from importlib.metadata import version

    packages = {"pitch": ("pedalboard",), "tempo": ("pedalboard",), "mp3": ("pedalboard",), "lowpass": ("scipy",)}
    packages["noise"] = ("numpy",)
    return {name: version(name) for name in packages.get(kind, ())}


# --- the deformations -------------------------------------------------------------------------------------------


def pitch_shift(audio: np.ndarray, sample_rate: int, semitones: float) -> np.ndarray:
    """Rubber Band pitch shift by ``semitones`` (tempo and length kept)."""
    import pedalboard

    out = pedalboard.time_stretch(audio[None, :], float(sample_rate), pitch_shift_in_semitones=float(semitones))[0]
    return _length(out, len(audio))


def time_stretch(audio: np.ndarray, sample_rate: int, factor: float) -> np.ndarray:
    """Rubber Band time stretch: ``factor`` > 1 plays faster (length / factor), pitch kept."""
    import pedalboard

    return np.ascontiguousarray(
        pedalboard.time_stretch(audio[None, :], float(sample_rate), stretch_factor=float(factor))[0]
    )


def gain(audio: np.ndarray, gain_db: float) -> np.ndarray:
    return (audio * np.float32(10.0 ** (gain_db / 20.0))).astype(np.float32)


def lowpass(audio: np.ndarray, sample_rate: int, cutoff_hz: float, order: int = LOWPASS_ORDER) -> np.ndarray:
    """Zero-phase Butterworth low-pass (``sosfiltfilt``: the response is that of the filter squared)."""
    from scipy import signal

    if cutoff_hz >= sample_rate / 2:
        return audio
    sos = signal.butter(order, cutoff_hz, btype="low", fs=sample_rate, output="sos")
    return signal.sosfiltfilt(sos, audio.astype(np.float64)).astype(np.float32)


def noise(n: int, seed: int, color: str = NOISE_COLOR) -> np.ndarray:
    """``n`` samples of seeded Gaussian noise, white or pink (power ∝ 1/f: amplitude spectrum ∝ 1/√f)."""
    rng = np.random.default_rng(seed)
    white = rng.standard_normal(n)
    if color == "white" or n < 2:
        return white
    if color != "pink":
        raise ValueError(f"noise colour must be white or pink, got {color!r}")
    spectrum = np.fft.rfft(white)
    freqs = np.arange(len(spectrum), dtype=np.float64)
    freqs[0] = 1.0  # the DC bin keeps the white level of the first bin
    return np.fft.irfft(spectrum / np.sqrt(freqs), n)


def add_noise(audio: np.ndarray, snr_db: float, seed: int, color: str = NOISE_COLOR) -> np.ndarray:
    """``audio`` plus noise scaled so that 10·log10(P_signal / P_noise) is exactly ``snr_db`` over the whole clip.
    Digital silence has no level to set a ratio against: it is returned unchanged."""
    signal_power = float(np.mean(audio.astype(np.float64) ** 2)) if len(audio) else 0.0
    if signal_power == 0.0:
        return audio
    n = noise(len(audio), seed, color)
    n *= np.sqrt(signal_power / (float(np.mean(n**2)) * 10.0 ** (snr_db / 10.0)))
    return (audio + n).astype(np.float32)


@functools.cache
def mp3_delay(sample_rate: int, kbps: int) -> int:
    """The codec's fixed delay in samples (LAME's encoder delay plus the decoder's), measured on a noise burst by
    cross-correlation: what ``mp3_round_trip`` removes. (Measured: 1105 samples = 576 + 529 at 44.1 kHz.)"""
    from scipy import signal

    burst = np.zeros(sample_rate, dtype=np.float32)
    rng = np.random.default_rng(0)
    start = sample_rate // 4
    burst[start : start + sample_rate // 4] = 0.3 * rng.standard_normal(sample_rate // 4)
    decoded = _encode_decode(burst, sample_rate, kbps)
    correlation = signal.correlate(decoded, burst, mode="full", method="fft")
    delay = int(np.argmax(correlation)) - (len(burst) - 1)
    if not 0 <= delay <= 4 * 1152:
        raise RuntimeError(f"MP3 round trip: implausible codec delay {delay} samples")
    return delay


def _encode_decode(audio: np.ndarray, sample_rate: int, kbps: int) -> np.ndarray:
    from pedalboard.io import AudioFile

    encoded = AudioFile.encode(audio[None, :], float(sample_rate), "mp3", 1, quality=float(kbps))
    with AudioFile(io.BytesIO(encoded)) as handle:
        decoded = handle.read(handle.frames)
        rate = handle.samplerate
    if int(rate) != sample_rate:
        raise RuntimeError(f"MP3 round trip changed the sample rate ({sample_rate} → {rate})")
    return np.ascontiguousarray(decoded.mean(axis=0) if decoded.ndim == 2 else decoded, dtype=np.float32)


def mp3_round_trip(audio: np.ndarray, sample_rate: int, kbps: int) -> np.ndarray:
    """Encode as constant-bit-rate MP3 at ``kbps`` and decode again: aligned with the input, the same length."""
    decoded = _encode_decode(audio, sample_rate, kbps)
    return _length(decoded[mp3_delay(sample_rate, kbps) :], len(audio))


def _length(audio: np.ndarray, n: int) -> np.ndarray:
    """Exactly ``n`` samples: cut, or padded with zeros (a codec's last frame can fall short)."""
    if len(audio) >= n:
        return np.ascontiguousarray(audio[:n], dtype=np.float32)
    return np.concatenate([audio, np.zeros(n - len(audio), dtype=np.float32)]).astype(np.float32)
