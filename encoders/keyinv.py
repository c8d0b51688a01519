"""Transposition-invariant chroma encoders, invariant by construction and with no key estimate: ``chroma-keyinv``,
``deepchroma-keyinv`` and ``tonal-timbre``.

One transform (``chroma_2dftm``) over any source of 12-bin chroma frames: the **two-dimensional Fourier transform
magnitude** of chroma patches (Bertin-Mahieux & Ellis, "Large-scale cover song recognition using the 2D Fourier
transform magnitude", ISMIR 2012), pooled over patches. The frames are cut into patches of ``patch`` frames (≈ 4 s)
every ``hop`` frames; each patch's 2D DFT (12 pitch classes × ``patch`` frames) is taken, its magnitude compressed by
a square root, and the magnitudes are averaged over the patches. Kept: pitch-class frequencies 0–6 (the others
mirror them, the patch being real) × time frequencies 0 … ``patch``/2.

Why this transform (of the candidates in the literature, measured on the robustness scenario):

* Transposing by ``s`` semitones circularly shifts the chroma bins, which multiplies each 2D DFT coefficient by a
  unit phase ``exp(-2πi·k·s/12)``: the magnitude does not change at all, so the invariance is exact (tested for all
  12 shifts at 1e-6) and needs no key estimate. The key-normalisation it replaces (rotate the whole vector to the
  key phase of the mean chroma) was exact too, but a 7–20 s excerpt's key estimate often differs from its whole
  track's, and then the whole vector was rotated wrongly: hit@1 fell to 0.31 on the real recordings.
* Unlike statistics of single frames (the DFT magnitude or bispectrum of the mean chroma, per-frame interval
  profiles: measured at 0.39–0.55 hit@1 on the real recordings), a patch keeps *how the harmony moves*: chord
  changes, their intervals and their rhythm, relative to each other. The magnitude over time frequencies is also
  invariant to where the patch starts (up to its edges), so excerpts cut anywhere in a track agree with the track.
* The square root (a compression, as in the paper's power-law step; 0.4 for the deep chroma) keeps the few large
  coefficients from hiding the rest. Measured on the 17 real recordings: ``chroma-keyinv`` finds as many songs as
  plain ``chroma`` or more on every deformation that keeps the pitch (0.905 against 0.552 hit@1 over all of them),
  since chroma's absolute key, given up here, is worth less than the harmonic motion gained.

What it is not invariant to: a tempo change stretches the patches' time axis, which shifts the time frequencies
(``chroma-keyinv`` on real recordings: 0.94 hit@1 unchanged, 0.71–0.76 at ±10 % tempo; on the demo set it loses
≈0.03 against plain ``chroma`` there); a change of mode or harmony. It cannot tell a patch from its mirror image
(pitch classes inverted and time reversed: |F(k, l)| = |F(-k, -l)|). Like the plain chroma statistics, it is
independent of the level (each chroma frame is max-normalised) and ignores timbre.

``tonal-timbre`` adds timbre to it: the 2D Fourier magnitude of ≈4.5 s STFT chroma patches and band-limited MFCC
statistics, each block L2-normalised and weighted (see ``TonalTimbre``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from .base import FrameStatsEncoder, ModelCard, WindowPolicy
from .chroma import ChromaStats, chroma_stft
from .deepchroma import DeepChromaStats
from .mel import mel_basis

N_CHROMA = 12
#: pitch-class frequencies kept: 0..6 (the 2D DFT of a real patch is conjugate-symmetric, |F(k,l)| = |F(-k,-l)|)
N_PITCH_FREQUENCIES = N_CHROMA // 2 + 1
#: the power the 2D DFT magnitudes are raised to before pooling (an encoder may set its own)
COMPRESSION = 0.5


def dftm_dim(patch: int) -> int:
    return N_PITCH_FREQUENCIES * (patch // 2 + 1)


def chroma_2dftm(frames: np.ndarray, patch: int, hop: int, compression: float = COMPRESSION) -> np.ndarray:
    """``(12, n_frames)`` chroma → ``(7 · (patch // 2 + 1),)`` float64: the mean over patches of ``patch`` frames
    (every ``hop`` frames) of each patch's 2D DFT magnitude to the power ``compression``. Fewer than ``patch`` frames
    are zero-padded to one patch. Unchanged (up to rounding) when the rows are circularly shifted by any number of
    steps."""
    frames = np.asarray(frames, dtype=np.float64)
    if frames.ndim != 2 or frames.shape[0] != N_CHROMA:
        raise ValueError(f"expected (12, n_frames) chroma, got shape {frames.shape}")
    if frames.shape[1] < patch:
        frames = np.pad(frames, ((0, 0), (0, patch - frames.shape[1])))
    starts = np.arange(0, frames.shape[1] - patch + 1, hop)
    total = np.zeros((N_PITCH_FREQUENCIES, patch // 2 + 1))
    for block in range(0, len(starts), 64):  # bounded memory on long files: 64 patches at a time
        index = starts[block : block + 64, None] + np.arange(patch)[None, :]
        patches = frames[:, index].transpose(1, 0, 2)  # (n, 12, patch)
        magnitude = np.abs(np.fft.fft2(patches))[:, :N_PITCH_FREQUENCIES, : patch // 2 + 1]
        total += (magnitude**compression).sum(axis=0)
    return (total / len(starts)).ravel()


class TwoDFTM:
    """Mixin for a ``FrameStatsEncoder`` whose ``_frames`` are 12-bin chroma: ``chroma_2dftm`` instead of the plain
    mean and std. Put it first in the bases; set ``patch`` and ``hop`` (frames) for the source's frame rate."""

    patch: int
    hop: int
    compression: float = COMPRESSION

    def embed(self, batch: Sequence[np.ndarray]) -> np.ndarray:
        out = np.empty((len(batch), self.dim), dtype=np.float32)
        for i, audio in enumerate(batch):
            frames = self._frames(np.asarray(audio, dtype=np.float32))
            out[i] = chroma_2dftm(frames, self.patch, self.hop, self.compression)
        return out


_CAPTURES = (
    "{source}: the 2D Fourier transform magnitude of {seconds} chroma patches (pitch class × time), pooled over "
    "patches: which intervals sound together and how the harmony moves, relative to itself; invariant to "
    "transposition by construction (exact for a circular shift of the chroma bins; no key estimate), to level and "
    "to where an excerpt starts; not to a change of mode or harmony, and only partly to tempo; no timbre"
)
#: 2: the key-normalised mean/std statistics (v1, 24-d) replaced by the 2D Fourier magnitude of chroma patches
_VERSION = 2


class ChromaKeyInvariant(TwoDFTM, ChromaStats):
    #: ≈3.7 s every 0.19 s at 43 frames/s (measured: 3 s patches every 0.74 s lose 0.07 hit@1 against chroma at
    #: ±10 % tempo on the demo set, and find 0.02 fewer songs on the real recordings)
    patch, hop = 160, 8
    card = dataclasses.replace(
        ChromaStats.card,
        name="chroma-keyinv",
        dim=dftm_dim(160),
        description="2D Fourier transform magnitude of STFT chroma patches (≈3.7 s, Bertin-Mahieux & Ellis 2012), "
        "pooled; transposition-invariant, weight-free",
        captures=_CAPTURES.format(source="STFT chroma", seconds="≈3.7 s (160-frame)"),
    )
    implementation_version = _VERSION


class DeepChromaKeyInvariant(TwoDFTM, DeepChromaStats):
    #: 4 s every 0.4 s at 10 frames/s, magnitudes to the power 0.4 (measured: 3 s patches at hop 0.8 s and power 0.5
    #: find ≈0.1 fewer songs, and lose more than 0.05 hit@1 against deepchroma on tempo changes and excerpts)
    patch, hop, compression = 40, 4, 0.4
    card = dataclasses.replace(
        DeepChromaStats.card,
        name="deepchroma-keyinv",
        dim=dftm_dim(40),
        description="2D Fourier transform magnitude of madmom deep chroma patches (4 s, Bertin-Mahieux & Ellis "
        "2012), pooled; transposition-invariant",
        captures=_CAPTURES.format(source="madmom deep chroma", seconds="4 s (40-frame)"),
    )
    implementation_version = _VERSION


#: mel bands of librosa's 128-band bank at 22.05 kHz kept by the timbre block: up to ≈ 3.1 kHz
TIMBRE_MEL_BANDS = 80
N_MFCC = 20
#: the blocks' weights before the whole vector is scaled to unit norm (each block is L2-normalised first)
TONAL_WEIGHT, TIMBRE_WEIGHT = 4.0, 1.0


def band_limited_mfcc(y: np.ndarray, sr: int) -> np.ndarray:
    """MFCCs 1–19 (the level coefficient 0 dropped) of the lowest ``TIMBRE_MEL_BANDS`` bands of librosa's 128-band
    mel spectrogram (n_fft 2048, hop 512): the spectral envelope below ≈ 3.1 kHz, where a 32 kb/s MP3, a 4 kHz
    low-pass and pink noise at 20 dB change little."""
    import librosa

    S = np.abs(librosa.stft(y, n_fft=2048, hop_length=512)) ** 2.0
    mel = np.einsum("...ft,mf->...mt", S, mel_basis(sr)[:TIMBRE_MEL_BANDS], optimize=True)
    return librosa.feature.mfcc(S=librosa.power_to_db(mel), n_mfcc=N_MFCC)[1:]


def _unit(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x)
    return x / norm if norm > 0 else x


class TonalTimbre(FrameStatsEncoder):
    """``[wt · unit(2D Fourier magnitude of STFT chroma patches), wm · unit(mean+std of band-limited MFCCs 1–19)]``
    with wt : wm = 4 : 1, scaled to unit norm: the ``chroma-keyinv`` transform over longer (≈4.5 s) patches (harmony
    and its motion, invariant to transposition) and a timbre block that ignores the level and the bands lossy codecs
    and noise change most."""

    #: ≈4.5 s every 1.1 s at 43 frames/s: longer than chroma-keyinv's, which alone loses more at ±10 % tempo with
    #: them, while the timbre block makes up for it here (measured: 0.914 against 0.882 hit@1 on real recordings)
    patch, hop, compression = 192, 48, COMPRESSION
    card = ModelCard(
        name="tonal-timbre",
        description="Transposition-invariant harmony (2D Fourier magnitude of ≈4.5 s STFT chroma patches) + timbre "
        "(mean+std of MFCCs 1-19 below ≈3.1 kHz), each block L2-normalised, weighted 4:1; weight-free",
        sample_rate=22050,
        dim=dftm_dim(192) + 2 * (N_MFCC - 1),
        window=WindowPolicy(),
        license="n/a (no weights)",
        package="librosa",
        captures="harmony and how it moves (2D Fourier magnitude of ≈4.5 s chroma patches) and timbre (spectral "
        "envelope below ≈3.1 kHz, MFCCs 1-19 mean+std); invariant to transposition by construction (exact for the "
        "chroma block; the timbre block moves a little with the pitch) and to level; partly to tempo, noise and "
        "lossy coding; not to a change of instrument or harmony",
    )
    worker_modules = ("librosa.feature.spectral",)

    def embed(self, batch: Sequence[np.ndarray]) -> np.ndarray:
        out = np.empty((len(batch), self.dim), dtype=np.float32)
        weights = np.array([TONAL_WEIGHT, TIMBRE_WEIGHT]) / np.hypot(TONAL_WEIGHT, TIMBRE_WEIGHT)
        for i, audio in enumerate(batch):
            y = np.asarray(audio, dtype=np.float32)
            tonal = chroma_2dftm(chroma_stft(y, self.sample_rate), self.patch, self.hop, self.compression)
            mfcc = band_limited_mfcc(y, self.sample_rate).astype(np.float64)
            timbre = np.concatenate([mfcc.mean(axis=1), mfcc.std(axis=1)])
            out[i] = np.concatenate([weights[0] * _unit(tonal), weights[1] * _unit(timbre)])
        return out
