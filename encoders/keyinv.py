"""Transposition-invariant chroma statistics, invariant by construction: ``chroma-keyinv`` and ``deepchroma-keyinv``.

One transform (``key_invariant_stats``) over any source of 12-bin chroma frames (C first): the frames' mean and
standard deviation over time, each expressed in the 12-point DFT over pitch classes and *rotated to the piece's own
key*, the phase of the mean chroma's 5th DFT coefficient.

Why this transform (of the candidates in the literature):

* Transposing by ``s`` semitones circularly shifts the chroma bins, which multiplies the ``k``-th DFT coefficient of
  any chroma vector by ``exp(-2πi·k·s/12)``. The 5th coefficient ``F5`` of the mean chroma is the piece's position on
  the circle of fifths (the Tonal Interval Space, Bernardes et al. 2016; the diatonic collection maximises ``|F5|``
  among 7-note sets, Quinn 2006, Amiot 2016), so it is large and stable for tonal music. Since 5·5 ≡ 1 (mod 12),
  ``F_k · (conj(F5)/|F5|)^(5k mod 12)`` is unchanged by any shift ``s``: the DFT is *phase-normalised* to the key,
  exactly (the same construction as shift-invariant Fourier descriptors). Both the mean and the std vectors are
  normalised with the same key phase, so their relation is kept.
* It is continuous in the audio: a key estimate by ``argmax`` (rotate to the strongest pitch class or the best
  fitting key profile) flips between two near-tied rotations under noise or a different excerpt, and the embedding
  jumps; the phase of ``F5`` only moves a little. The result is the plain chroma statistics, fractionally rotated to
  the key: with the Parseval weights below, the dot product of two embeddings equals that of the two key-aligned
  chroma vectors (except the Nyquist term, kept as its magnitude), so the geometry of the ``chroma`` baseline is kept.
* Circular auto-correlation statistics are invariant too, but a pitch-class set and its inversion share them (a major
  and a minor triad are indistinguishable). The 2D Fourier transform magnitude of chroma patches (Bertin-Mahieux &
  Ellis 2012) discards the phase in time and pitch as well; without a beat tracker its patches are frame-synchronous,
  so its time axis moves with tempo, and it is ~900-d before a learnt projection.

Invariant to: circular shifts of the chroma bins (transposition by any number of semitones), exactly up to float
rounding (tested at 1e-6); and, like the plain statistics, to frame order and level. Not invariant to a change of
mode (major → minor) or of harmony. A flat mean chroma (silence, noise) has no key phase (``|F5|`` ≈ 0): it is left
unrotated, which changes nothing for a flat profile.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from .chroma import ChromaStats
from .deepchroma import DeepChromaStats

N_CHROMA = 12
KEY_HARMONIC = 5  # the DFT coefficient that places a pitch-class distribution on the circle of fifths
#: power of the key phase each DFT coefficient k = 0..6 is multiplied by: 5·q ≡ k (mod 12)
_PHASE_POWERS = np.array([(KEY_HARMONIC * k) % N_CHROMA for k in range(N_CHROMA // 2 + 1)])
#: a mean chroma whose |F5| is below this fraction of its total has no key phase (left unrotated)
FLAT = 1e-9


def key_phase(profile: np.ndarray) -> complex:
    """The unit complex ``conj(F5)/|F5|`` of a 12-bin pitch-class profile (1 when the profile is flat)."""
    profile = np.asarray(profile, dtype=np.float64)
    f5 = np.fft.rfft(profile)[KEY_HARMONIC]
    magnitude = abs(f5)
    if not magnitude > FLAT * (np.abs(profile).sum() + np.finfo(np.float64).tiny):
        return 1.0 + 0.0j
    return complex(np.conj(f5) / magnitude)


def key_normalised(vector: np.ndarray, phase: complex) -> np.ndarray:
    """A 12-bin vector as 12 real numbers: its DFT coefficients k = 0..6 times ``phase`` to the power ``5k mod 12``,
    as [F0, Re F1..F5, Im F1..F5, |F6|], scaled (Parseval) so that the result has the vector's Euclidean norm."""
    spectrum = np.fft.rfft(np.asarray(vector, dtype=np.float64)) * phase**_PHASE_POWERS
    scale = np.sqrt(2.0 / N_CHROMA)
    return np.concatenate(
        [
            [spectrum[0].real / np.sqrt(N_CHROMA)],
            spectrum[1:6].real * scale,
            spectrum[1:6].imag * scale,
            [abs(spectrum[6]) / np.sqrt(N_CHROMA)],
        ]
    )


def key_invariant_stats(frames: np.ndarray) -> np.ndarray:
    """``(12, n_frames)`` chroma → ``(24,)`` float64: the frames' mean and std over time, key-normalised with the key
    phase of the mean. Unchanged (up to rounding) when the rows are circularly shifted by any number of steps."""
    frames = np.asarray(frames, dtype=np.float64)
    if frames.ndim != 2 or frames.shape[0] != N_CHROMA:
        raise ValueError(f"expected (12, n_frames) chroma, got shape {frames.shape}")
    mean, std = frames.mean(axis=1), frames.std(axis=1)
    phase = key_phase(mean)
    return np.concatenate([key_normalised(mean, phase), key_normalised(std, phase)])


class KeyInvariantStats:
    """Mixin for a ``FrameStatsEncoder`` whose ``_frames`` are 12-bin chroma: ``key_invariant_stats`` instead of the
    plain mean and std. Put it first in the bases."""

    def embed(self, batch: Sequence[np.ndarray]) -> np.ndarray:
        out = np.empty((len(batch), self.dim), dtype=np.float32)
        for i, audio in enumerate(batch):
            out[i] = key_invariant_stats(self._frames(np.asarray(audio, dtype=np.float32)))
        return out


_CAPTURES = (
    "{source}, rotated to the piece's own key (phase of the mean chroma's circle-of-fifths DFT coefficient): "
    "harmony and chord vocabulary relative to the key; invariant to transposition by construction (exact for a "
    "circular shift of the chroma bins), to level and tempo; not to a change of mode; no timbre, no rhythm"
)


class ChromaKeyInvariant(KeyInvariantStats, ChromaStats):
    card = dataclasses.replace(
        ChromaStats.card,
        name="chroma-keyinv",
        description="Key-normalised STFT chroma statistics (mean+std in the pitch-class DFT, phase-normalised to the "
        "key); transposition-invariant, weight-free",
        captures=_CAPTURES.format(source="STFT chroma mean+std"),
    )


class DeepChromaKeyInvariant(KeyInvariantStats, DeepChromaStats):
    card = dataclasses.replace(
        DeepChromaStats.card,
        name="deepchroma-keyinv",
        description="Key-normalised madmom deep chroma statistics (mean+std in the pitch-class DFT, phase-normalised "
        "to the key); transposition-invariant",
        captures=_CAPTURES.format(source="madmom deep chroma mean+std"),
    )
