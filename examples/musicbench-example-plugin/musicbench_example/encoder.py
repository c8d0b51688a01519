"""``example-bands``: mean and standard deviation over time of log energies in 24 log-spaced frequency bands.

A weight-free encoder in plain numpy, written the way any plug-in encoder is: a subclass of musicbench's ``Encoder``
(here its frame-statistics base) with a ``ModelCard`` and an ``embed``. Check it with
``musicbench check-encoder example-bands``.
"""

from __future__ import annotations

import functools

import numpy as np

from encoders.base import FrameStatsEncoder, ModelCard, WindowPolicy

SAMPLE_RATE = 16000
N_FFT = 1024
HOP = 512
N_BANDS = 24
FMIN, FMAX = 50.0, 7600.0


class BandEnergyStats(FrameStatsEncoder):
    """24 log-spaced band energies (dB) per 64 ms frame, mean and std over time → 48-d."""

    card = ModelCard(
        name="example-bands",
        description="example plug-in: log energies of 24 log-spaced bands (50 Hz-7.6 kHz), mean+std over time",
        sample_rate=SAMPLE_RATE,
        dim=2 * N_BANDS,
        window=WindowPolicy(),
        license="n/a (no weights)",
        package="musicbench-example-plugin",
        captures="the coarse spectral envelope (timbre, brightness) and its variation; no pitch or rhythm",
    )

    def _frames(self, audio: np.ndarray) -> np.ndarray:
        if len(audio) < N_FFT:  # shorter than one frame: one zero-padded frame
            audio = np.pad(audio, (0, N_FFT - len(audio)))
        starts = np.arange(0, len(audio) - N_FFT + 1, HOP)
        frames = np.stack([audio[start : start + N_FFT] for start in starts]) * np.hanning(N_FFT)
        power = np.abs(np.fft.rfft(frames, axis=1)) ** 2  # (frames, bins), float64
        bands = power @ _band_matrix()  # (frames, bands)
        return (10.0 * np.log10(bands + 1e-10)).T.astype(np.float32)  # (bands, frames)


@functools.lru_cache(maxsize=1)
def _band_matrix() -> np.ndarray:
    """(bins, bands): each FFT bin summed into the log-spaced band it falls in (every band at least one bin)."""
    freqs = np.fft.rfftfreq(N_FFT, 1.0 / SAMPLE_RATE)
    edges = np.geomspace(FMIN, FMAX, N_BANDS + 1)
    matrix = np.zeros((len(freqs), N_BANDS))
    for band in range(N_BANDS):
        inside = (freqs >= edges[band]) & (freqs < edges[band + 1])
        if not inside.any():
            inside = np.arange(len(freqs)) == int(np.argmin(np.abs(freqs - np.sqrt(edges[band] * edges[band + 1]))))
        matrix[inside, band] = 1.0
    return matrix
