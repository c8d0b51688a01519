"""The report's melody formula (see ``metrics/melody.py``) computed in one streaming pass, in bounded memory:
its parameters, and ``melody_pitch_classes``.

Why: ``chroma_stft`` on a whole file holds the complex STFT and
``piptrack``'s full-size arrays at once (0.9 GB for 60 s, 3.7 GB for 5 min at 44.1 kHz), and ``filtfilt``
a float64 copy of the signal. Here, in one streaming pass over the file, last block first:

- **high-pass by blocks** (``_HighPass``): the forward ``lfilter`` runs once over scipy's odd-extended
  signal keeping only its 2-value state at each block start; the backward pass then goes from the end,
  re-filtering each block forward from its saved state, carrying the backward state — bit-identical to
  ``filtfilt`` (same operations in the same order), with O(block) memory and no float64 copy of the file;
- **one STFT** per frame (scipy's rfft of the Hann-windowed frames, exactly ``librosa.stft``'s numbers),
  power spectrogram per block;
- **tuning from that spectrogram** (``librosa.estimate_tuning(S=power)`` as ``chroma_stft`` calls it):
  ``piptrack``'s peak picking and parabolic interpolation are frame-local and only bins 150–4000 Hz
  can be peaks, so they are evaluated at those bins only (plus each frame's maximum for the 10 %
  threshold); each peak keeps its magnitude and its tuning-histogram bin, and the whole-file median and
  histogram give the very value librosa returns;
- **chroma** (``filters.chroma`` with that tuning, its product with the power, inf-norm, argmax) on the
  power blocks kept from the pass (up to ``_SPECTRUM_CACHE_BYTES``, ≈ 3 min of audio at 44.1 kHz); the
  frames of longer files beyond that are transformed a second time from a saved resume point, not held.

The argmax equals ``chroma_stft`` + argmax on ``filtfilt``'s output (checked in the tests on tones, chords,
noise, silences and many lengths). The tuning estimate is exact bit for bit; the chroma matrix product is
BLAS's, whose last bit depends on its blocking and thread count even for librosa's own whole-file call
(1 vs 2 OpenBLAS threads change ~20 % of the entries by one ulp), so only a frame whose two top pitch
classes are within one ulp could differ — as it could between two runs of librosa itself. Memory: the
input, ~10 bytes per spectral peak, the kept power blocks and O(block) temporaries (a 1-hour file: see
``perf/melody_speed.py``). Each call holds only its own state: ``file_features`` is thread-safe.

"""

from __future__ import annotations

import numpy as np

#: the report's analysis sample rate
MELODY_SAMPLE_RATE = 44100
#: resampler used when the input is at another rate (the harness decoder's; the report used torchaudio's)
RESAMPLER = "soxr"
RESAMPLER_QUALITY = "HQ"
#: high-pass: 2nd-order Butterworth at 261.2 Hz (≈ middle C), applied forward-backward
HIGHPASS_ORDER = 2
HIGHPASS_CUTOFF_HZ = 261.2
#: librosa.feature.chroma_stft parameters (everything else at librosa's defaults)
CHROMA_N_FFT = 2048
CHROMA_HOP_LENGTH = 256
CHROMA_WIN_LENGTH = 2048
N_CHROMA = 12
#: a frame whose high-passed, windowed RMS is below this (-120 dBFS) has no pitch
SILENCE_RMS = 1e-6
#: pitch class of a no-pitch frame; it never matches
NO_PITCH = -1
#: frames per block of the STFT (≈ 6 s of audio): the high-pass runs in blocks of 256 × this many samples
_BLOCK_FRAMES = 1024
#: frames per FFT call (windowed frames and spectrum stay in cache)
_FFT_FRAMES = 64
#: power-spectrogram blocks kept from the tuning pass for the chroma pass (≈ 3 min 20 s of audio at 44.1 kHz);
#: the frames of longer files beyond it are transformed again instead of held
_SPECTRUM_CACHE_BYTES = 256 << 20
#: forward-filtered blocks kept for the backward pass (the last ≈ 3 min of audio); the others are re-filtered
_FORWARD_CACHE_BYTES = 64 << 20
#: piptrack's defaults, as estimate_tuning calls it from chroma_stft
_PIPTRACK_FMIN, _PIPTRACK_FMAX, _PIPTRACK_THRESHOLD = 150.0, 4000.0, 0.1
#: pitch_tuning's histogram: resolution 0.01 of a bin over [-0.5, 0.5]
_TUNING_RESOLUTION = 0.01


def _to_mono(audio: np.ndarray) -> np.ndarray:
    audio = np.asarray(audio)
    if not np.issubdtype(audio.dtype, np.floating):
        raise ValueError(f"expected floating-point audio in [-1, 1], got dtype {audio.dtype}")
    if audio.ndim == 1:
        mono = audio
    elif audio.ndim == 2:
        if audio.shape[0] > audio.shape[1]:
            raise ValueError(
                f"expected channels-first audio (C, T); got shape {audio.shape}, which looks like (T, C) — pass audio.T"
            )
        # the harness decoder's mean: same dtype as the input (float32 stays float32)
        mono = audio[0] if audio.shape[0] == 1 else audio.mean(axis=0, dtype=audio.dtype)
    else:
        raise ValueError(f"expected audio of shape (T,) or (C, T), got shape {audio.shape}")
    if mono.dtype not in (np.float32, np.float64):
        mono = mono.astype(np.float64)
    mono = np.ascontiguousarray(mono)
    _check_finite(mono)
    return mono


def _check_finite(mono: np.ndarray) -> None:
    for start in range(0, mono.size, 1 << 20):  # no whole-file boolean temporary
        if not np.isfinite(mono[start : start + (1 << 20)]).all():
            raise ValueError("audio contains NaN or infinite samples")


class _HighPass:
    """``scipy.signal.filtfilt(b, a, x)`` of the report's high-pass with scipy's default padding (odd
    extension of ``3 · max(len(a), len(b))`` samples, shortened to ``len - 1`` for tiny clips), produced block
    by block from the end, bit-identical to ``filtfilt``, in O(block) memory.

    ``filtfilt`` filters the extended signal forward (initial state ``zi · ext[0]``), then the reversed
    result backward (initial state ``zi · y[-1]``). Here the forward pass keeps the filter state at each
    block start (and the last ``_FORWARD_CACHE_BYTES`` of its output); ``blocks()`` then walks the blocks
    from the last, re-filtering forward from its saved state each block it did not keep, and backward with
    the carried state; it can resume from any state it yielded."""

    def __init__(self, x: np.ndarray, sample_rate: int, block: int):
        from scipy import signal

        self.b, self.a = signal.butter(
            HIGHPASS_ORDER, HIGHPASS_CUTOFF_HZ / (0.5 * sample_rate), btype="high", analog=False
        )
        self.zi = signal.lfilter_zi(self.b, self.a)
        n = x.shape[-1]
        pad = 3 * max(len(self.a), len(self.b))  # scipy's default padlen
        if n <= pad:  # scipy would refuse: shorten the edge padding for tiny clips only
            pad = n - 1
        self.x, self.n, self.pad, self.block = x, n, pad, block
        # scipy.signal.odd_ext, in x's dtype
        self.left = 2 * x[:1] - x[pad:0:-1]
        self.right = 2 * x[-1:] - x[-2 : -(pad + 2) : -1]
        self.starts = list(range(0, n + 2 * pad, block))
        self.states = []
        self.forward: dict[int, np.ndarray] = {}  # forward outputs kept (≤ _FORWARD_CACHE_BYTES), used once
        state = self.zi * self._ext(0, 1)
        for j, start in enumerate(self.starts):
            self.states.append(state)
            forward, state = signal.lfilter(self.b, self.a, self._ext(start, start + block), zi=state)
            self.forward[j] = forward  # keep the last ones: blocks() starts with them
            if len(self.forward) * block * 8 > _FORWARD_CACHE_BYTES and len(self.forward) > 1:
                del self.forward[min(self.forward)]
        self.first_backward_state = self.zi * forward[-1:]

    def _ext(self, start: int, stop: int) -> np.ndarray:
        """The odd-extended signal's samples [start, stop), as float64 (what lfilter computes in; converting
        here is exact and much faster than lfilter's own conversion of float32 input)."""
        pad, n = self.pad, self.n
        stop = min(stop, n + 2 * pad)
        pieces = []
        if start < pad:
            pieces.append(self.left[start : min(stop, pad)])
        if stop > pad and start < pad + n:
            pieces.append(self.x[max(start - pad, 0) : min(stop - pad, n)])
        if stop > pad + n:
            pieces.append(self.right[max(start - pad - n, 0) : stop - pad - n])
        return (pieces[0] if len(pieces) == 1 else np.concatenate(pieces)).astype(np.float64)

    def blocks(self, resume: tuple[int, np.ndarray] | None = None):
        """Yield ``(start, samples, resume)`` — the filtered signal's samples [start, start + len), float64 —
        from the last block to the first; ``blocks(resume)`` continues right after that block."""
        from scipy import signal

        first, state = resume if resume is not None else (len(self.starts) - 1, self.first_backward_state)
        for j in range(first, -1, -1):
            start = self.starts[j]
            forward = self.forward.pop(j, None)
            if forward is None:
                forward, _ = signal.lfilter(self.b, self.a, self._ext(start, start + self.block), zi=self.states[j])
            backward, state = signal.lfilter(self.b, self.a, forward[::-1], zi=state)
            backward = backward[::-1]
            lo, hi = max(start, self.pad), min(start + len(backward), self.pad + self.n)  # drop the extension
            yield lo - self.pad, backward[lo - start : hi - start], (j - 1, state)


def _highpass(y: np.ndarray, sample_rate: int) -> np.ndarray:
    """The whole high-passed signal (float64), as ``filtfilt`` returns it (for tests and notebooks)."""
    highpass = _HighPass(y, sample_rate, CHROMA_HOP_LENGTH * _BLOCK_FRAMES)
    out = np.empty(y.shape[-1])
    for start, samples, _ in highpass.blocks():
        out[start : start + len(samples)] = samples
    return out


class _Spectrogram:
    """Power-spectrogram blocks ``|STFT|**2`` of the high-passed signal — exactly the frames of
    ``librosa.stft(y, n_fft=2048, hop_length=256, win_length=2048, window="hann", center=True)`` — as
    ``(first frame, power (frames × 1025, float64))``, last frames first, one block per high-pass block.

    Frame ``t`` covers samples ``[256 t - 1024, 256 t + 1024)`` of the signal, zeros outside. The high-pass
    blocks arrive from the end; the samples that frames before the current block still need (< 2048)
    are carried over. ``blocks(resume)`` continues after any block, from the token it yielded."""

    def __init__(self, y: np.ndarray, sample_rate: int):
        import librosa

        self.highpass = _HighPass(y, sample_rate, CHROMA_HOP_LENGTH * _BLOCK_FRAMES)
        self.n_frames = 1 + y.shape[-1] // CHROMA_HOP_LENGTH
        window = librosa.filters.get_window("hann", CHROMA_WIN_LENGTH, fftbins=True)
        self.window = librosa.util.pad_center(window, size=CHROMA_N_FFT)

    def blocks(self, resume=None):
        import scipy.fft

        half, hop = CHROMA_N_FFT // 2, CHROMA_HOP_LENGTH
        if resume is None:  # the zero padding after the end; frames ≥ t_hi are done
            carry, t_hi, filter_resume = np.zeros(half), self.n_frames, None
        else:
            carry, t_hi, filter_resume = resume
        windowed = np.empty((_FFT_FRAMES, CHROMA_N_FFT))
        for start, samples, next_filter in self.highpass.blocks(filter_resume):
            lo = start + half  # index of samples[0] in the zero-padded signal
            if start == 0:
                samples, lo = np.concatenate([np.zeros(half), samples]), 0
            padded = np.concatenate([samples, carry])  # the padded signal from index lo; it ends where
            t_lo = min(-(-lo // hop), t_hi)  # frame t_hi - 1 ends
            carry = padded[: t_lo * hop + CHROMA_N_FFT - hop - lo].copy()  # what frames < t_lo still need
            if t_lo == t_hi:  # a sliver of a block: no whole frame starts in it
                continue
            frames = np.lib.stride_tricks.sliding_window_view(padded, CHROMA_N_FFT)[t_lo * hop - lo :: hop]
            power = np.empty((t_hi - t_lo, CHROMA_N_FFT // 2 + 1))
            for first in range(0, len(power), _FFT_FRAMES):  # cache-sized pieces: ~25 % faster
                rows = slice(first, min(first + _FFT_FRAMES, len(power)))
                piece = np.multiply(self.window, frames[rows], out=windowed[: rows.stop - rows.start])
                np.abs(scipy.fft.rfft(piece, axis=-1), out=power[rows])
                np.square(power[rows], out=power[rows])  # librosa's np.abs(stft) ** 2
            t_hi = t_lo
            yield t_lo, power, (carry, t_hi, next_filter)


class _TuningPeaks:
    """``librosa.estimate_tuning(S=power, sr, bins_per_octave=12)``, accumulated over power blocks.

    ``piptrack(S=power)``: a bin f in [150, 4000) Hz of a frame is a peak where ``S · (S > 0.1 · frame max)``
    has a local maximum (``S[f] > S[f-1]`` and ``S[f] >= S[f+1]``); its pitch is ``(f + shift) · sr / n_fft``
    and magnitude ``S[f] + 0.5 · gradient · shift``, ``shift`` from the parabola through f-1, f, f+1 (0 if
    the vertex is over a bin away). ``estimate_tuning`` keeps the peaks whose magnitude is ≥ the median of
    all peaks' and returns the most common ``pitch_tuning`` histogram bin of their residuals. So each peak
    keeps its magnitude and its histogram bin; the same floating-point operations as librosa's, elementwise,
    give the same numbers."""

    def __init__(self, sample_rate: int):
        import librosa

        freqs = librosa.fft_frequencies(sr=sample_rate, n_fft=CHROMA_N_FFT)
        fmax = min(_PIPTRACK_FMAX, float(sample_rate) / 2)
        candidates = np.flatnonzero((max(_PIPTRACK_FMIN, 0) <= freqs) & (freqs < fmax))
        self.lo, self.hi = int(candidates[0]), int(candidates[-1]) + 1  # contiguous, interior bins
        self.sample_rate = sample_rate
        self.edges = np.linspace(-0.5, 0.5, int(np.ceil(1.0 / _TUNING_RESOLUTION)) + 1)
        self.mags: list[np.ndarray] = []
        self.bins: list[np.ndarray] = []

    def add(self, power: np.ndarray) -> None:
        """Peaks of a power block (frames × frequency bins)."""
        import librosa

        lo, hi = self.lo, self.hi
        ref = _PIPTRACK_THRESHOLD * power.max(axis=1, keepdims=True)
        band = power[:, lo - 1 : hi + 1]
        kept = band * (band > ref)
        centre = kept[:, 1:-1]
        frame, offset = np.nonzero((centre > kept[:, :-2]) & (centre >= kept[:, 2:]))
        if not frame.size:
            return
        f = offset + lo
        here, above, below = power[frame, f], power[frame, f + 1], power[frame, f - 1]
        a = above + below - 2 * here
        b = (above - below) / 2
        with np.errstate(divide="ignore", invalid="ignore"):
            shift = np.where(np.abs(b) >= np.abs(a), 0.0, -b / a)
        gradient = (above - below) / 2.0  # np.gradient at an interior bin
        pitch = (f + shift) * float(self.sample_rate) / CHROMA_N_FFT
        mag = here + 0.5 * gradient * shift
        residual = np.mod(N_CHROMA * librosa.hz_to_octs(pitch), 1.0)
        residual[residual >= 0.5] -= 1.0
        bins = np.searchsorted(self.edges, residual, side="right") - 1  # np.histogram's bins
        self.mags.append(mag)
        self.bins.append(np.clip(bins, 0, len(self.edges) - 2).astype(np.int8))

    def tuning(self) -> float:
        if not self.mags:  # no peak anywhere (e.g. silence): librosa returns 0.0 with a warning
            return 0.0
        n = sum(len(m) for m in self.mags)
        mag, bins, filled = np.empty(n), np.empty(n, dtype=np.int8), 0
        while self.mags:  # gather without holding two copies (order is irrelevant to a median and a histogram)
            m, b = self.mags.pop(), self.bins.pop()
            mag[filled : filled + len(m)], bins[filled : filled + len(m)] = m, b
            filled += len(m)
        counts = np.bincount(bins[mag >= np.median(mag)], minlength=len(self.edges) - 1)
        return float(self.edges[np.argmax(counts)])


def _estimate_tuning(y: np.ndarray, sample_rate: int) -> float:
    """What ``chroma_stft(y=filtfilt-ed y)`` estimates (for tests and notebooks): the whole tuning pass."""
    peaks = _TuningPeaks(sample_rate)
    for _, power, _ in _Spectrogram(y, sample_rate).blocks():
        peaks.add(power)
    return peaks.tuning()


def melody_pitch_classes(audio: np.ndarray, sample_rate: int, mark_silence: bool = False) -> np.ndarray:
    """Per-frame dominant pitch class (int8: 0 = C … 11 = B).

    ``mark_silence=False`` (default) is the report's formula exactly: a digitally silent frame's all-zero chroma
    has argmax 0 ("C"). ``mark_silence=True`` gives such frames ``NO_PITCH`` (-1), which never matches
    (the separately named ``melody_voiced`` metric).

    ``audio``: floating-point, mono ``(T,)`` or channels-first ``(C, T)``; channels are averaged, then the
    signal is resampled to 44.1 kHz with soxr 'HQ' if ``sample_rate`` differs. One frame per 256 samples at
    44.1 kHz (``1 + T44 // 256`` frames; none for empty audio). See the module docstring for the formula and
    how it is computed (one streaming pass; memory bounded; same argmax as ``librosa.feature.chroma_stft``).
    """
    import librosa

    mono = _to_mono(audio)
    sample_rate = int(sample_rate)
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    if mono.size == 0:
        return np.zeros(0, dtype=np.int8)
    if sample_rate != MELODY_SAMPLE_RATE:
        import soxr

        mono = soxr.resample(mono, sample_rate, MELODY_SAMPLE_RATE, quality=RESAMPLER_QUALITY)
        if mono.size == 0:
            return np.zeros(0, dtype=np.int8)

    spectrogram = _Spectrogram(mono, MELODY_SAMPLE_RATE)
    peaks = _TuningPeaks(MELODY_SAMPLE_RATE)
    kept: list[tuple[int, np.ndarray]] = []  # power blocks for the chroma pass
    kept_bytes, resume = 0, None
    previous_token = None  # resume token of the stream before the current block
    for t_lo, power, token in spectrogram.blocks():
        peaks.add(power)
        if resume is None and kept_bytes + power.nbytes <= _SPECTRUM_CACHE_BYTES:
            kept.append((t_lo, power))
            kept_bytes += power.nbytes
        elif resume is None:  # from here on (earlier frames), transform again in the chroma pass
            resume = previous_token or "start"
        previous_token = token

    filterbank = librosa.filters.chroma(
        sr=MELODY_SAMPLE_RATE, n_fft=CHROMA_N_FFT, tuning=peaks.tuning(), n_chroma=N_CHROMA
    )
    # Parseval for a real FFT: sum_n |w x|^2 = (|X_0|^2 + |X_N/2|^2 + 2 sum_k |X_k|^2) / N
    silence_power = SILENCE_RMS**2 * float(np.sum(spectrogram.window**2)) * CHROMA_N_FFT
    out = np.empty(spectrogram.n_frames, dtype=np.int8)

    filterbank_t = filterbank.T.astype(np.float64)  # what chroma_stft's einsum multiplies the power with

    def classify(t_lo: int, power: np.ndarray) -> None:
        raw = power @ filterbank_t  # frames × pitch classes: chroma_stft's product, transposed
        chroma = librosa.util.normalize(raw, norm=np.inf, axis=1)
        classes = np.argmax(chroma, axis=1).astype(np.int8)
        if mark_silence:
            frame_power = power[:, 0] + power[:, -1] + 2.0 * power[:, 1:-1].sum(axis=1)
            classes[frame_power < silence_power] = NO_PITCH
        out[t_lo : t_lo + len(classes)] = classes

    for t_lo, power in kept:
        classify(t_lo, power)
    del kept
    if resume is not None:
        for t_lo, power, _ in spectrogram.blocks(None if resume == "start" else resume):
            classify(t_lo, power)
    return out
