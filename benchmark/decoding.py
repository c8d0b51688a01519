"""The one audio decoding path: any audio file to mono float32 at an encoder's or a metric's sample rate.

Decoding: soundfile (libsndfile: wav, flac, ogg, mp3, aiff, …), read in blocks, falling back to librosa/audioread
for other containers; mono = mean of channels; resampling with soxr 'HQ' (the samples are bit-identical
to ``librosa.load(sr=...)``'s, but the length can be one sample shorter: librosa rounds the resampled length up,
soxr down, e.g. 60 s at 22.05 kHz gives 1,440,000 samples at 24 kHz here and 1,440,001 from librosa, 2,880,000 vs
2,880,001 at 48 kHz; 44.1 and 16 kHz agree — measured with librosa 0.11). A file whose header promises more
audio than it holds is refused as truncated.
torchaudio I/O is never used (its extension does not load on CPU-only machines).
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import numpy as np

from .data import AudioDecodeError, shown

BLOCK_FRAMES = 1 << 18  # frames read at a time: decoding never holds the file's raw multichannel samples at once
_LIBSNDFILE_EXTENSIONS = frozenset({".wav", ".flac", ".ogg", ".oga", ".aiff", ".aif", ".aifc", ".au", ".wv"})


def _to_mono(block: np.ndarray) -> np.ndarray:
    """Mean of channels, summed column by column (same values as ``block.mean(axis=1)`` for < 8 channels,
    and ~10× faster on long files: numpy reduces a short inner axis row by row)."""
    mono = block[:, 0].copy()
    for channel in range(1, block.shape[1]):
        mono += block[:, channel]
    if block.shape[1] > 1:
        mono /= np.float32(block.shape[1])
    return mono


def _int16_to_mono(block: np.ndarray) -> np.ndarray:
    """``_to_mono`` of the float32 samples libsndfile reads from 16-bit PCM (each ``sample / 32768``), bit for bit:
    the channels are summed exactly in int32 (as the float32 sums are: integers times 2**-15, under 2**24), scaled
    exactly by 2**-15, then divided by the channel count with the same single rounding."""
    total = block[:, 0].astype(np.int32)
    for channel in range(1, block.shape[1]):
        total += block[:, channel]
    mono = total.astype(np.float32)
    mono *= np.float32(1.0 / 32768.0)
    if block.shape[1] > 1:
        mono /= np.float32(block.shape[1])
    return mono


def _truncated(handle) -> str | None:
    """Why libsndfile's own log says the file is cut short (header promises more data than exists), or None."""
    for line in handle.extra_info.splitlines():
        match = re.match(r"\s*data\s*:\s*(\d+)\s*\(should be (\d+)\)", line)
        if match and 0 < int(match[2]) < int(match[1]) < 0xFFFFFFFF:  # 0 / 0xFFFFFFFF: streamed-WAV placeholders
            return f"header declares {int(match[1])} data bytes, file holds {int(match[2])}"
        if "> file length" in line:
            return line.strip("* ")
    return None


def _expected_samples(frames: int, rate: int, sample_rate: int) -> int:
    """Samples the decode of ``frames`` input frames will give at ``sample_rate`` (soxr gives round(frames × ratio));
    capped at 2**31, so a streamed-WAV placeholder length does not reserve absurd memory."""
    if frames <= 0:
        return BLOCK_FRAMES
    return min(-(-frames * sample_rate // rate) + 1, 1 << 31)


class _MonoBuffer:
    """One float32 buffer the decoded blocks are written into, sized from the header's length up front (its pages
    become resident only as they are written), grown by half when a header under-states the length (mp3)."""

    def __init__(self, capacity: int):
        self.data = np.empty(max(1, capacity), dtype=np.float32)
        self.size = 0

    def append(self, samples: np.ndarray) -> None:
        end = self.size + len(samples)
        if end > len(self.data):
            grown = np.empty(max(end, len(self.data) + len(self.data) // 2), dtype=np.float32)
            grown[: self.size] = self.data[: self.size]
            self.data = grown
        self.data[self.size : end] = samples
        self.size = end

    def result(self) -> np.ndarray:
        if len(self.data) - self.size > max(1 << 20, self.size // 4):  # over-stated length: do not keep the rest
            return self.data[: self.size].copy()
        return self.data[: self.size]


class _SoundfileBlocks:
    """A file opened with soundfile (``LibsndfileError`` here when libsndfile cannot open it): ``expected`` output
    samples (from the header), and iteration yields the mono, checked, resampled blocks (soxr's streaming resampler:
    their concatenation is exactly one-shot ``soxr.resample`` of the whole file), then checks the length read
    against the header. The file is closed when the iteration ends or is abandoned."""

    def __init__(self, path: Path, sample_rate: int):
        import soundfile as sf

        self.path, self.sample_rate = path, sample_rate
        self.handle = sf.SoundFile(os.fsencode(path))
        reason = _truncated(self.handle)
        if reason:
            self.handle.close()
            raise AudioDecodeError(f"{shown(path)}: truncated or corrupt ({reason})")
        self.rate = int(self.handle.samplerate)
        self.expected = _expected_samples(int(self.handle.frames), self.rate, sample_rate)

    def __iter__(self) -> Iterator[np.ndarray]:
        import soxr

        path, handle = self.path, self.handle
        stream = (
            soxr.ResampleStream(self.rate, self.sample_rate, 1, dtype="float32", quality="HQ")
            if self.rate != self.sample_rate
            else None
        )
        n_read = 0
        pcm16 = handle.subtype == "PCM_16"  # read as integers: ~4× cheaper, the same float32 samples (_int16_to_mono)
        with handle:
            while True:
                block = handle.read(BLOCK_FRAMES, dtype="int16" if pcm16 else "float32", always_2d=True)
                last = len(block) < BLOCK_FRAMES
                mono = _int16_to_mono(block) if pcm16 else _to_mono(block)
                del block
                if not np.all(np.isfinite(mono)):
                    raise AudioDecodeError(f"{shown(path)}: audio contains NaN or infinite samples")
                n_read += len(mono)
                yield stream.resample_chunk(mono, last=last) if stream is not None else mono
                if last:
                    break
            if handle.format != "MPEG" and 0 < n_read < handle.frames:  # mp3 lengths are estimates
                raise AudioDecodeError(
                    f"{shown(path)}: truncated or corrupt (header declares {handle.frames} frames, "
                    f"only {n_read} could be read)"
                )
        if n_read == 0:
            raise AudioDecodeError(f"{shown(path)}: no audio samples")


def _stream_mono(path: Path, sample_rate: int) -> np.ndarray:
    """Decode with soundfile block by block, each block written straight into one float32 buffer at the output
    rate: memory is the *output* plus a few blocks (never the input's channels, never a second copy of the whole
    signal)."""
    blocks = _SoundfileBlocks(path, sample_rate)
    out = _MonoBuffer(blocks.expected)
    for samples in blocks:
        out.append(samples)
    return out.result()


def _librosa_mono(path: Path, sample_rate: int, sf_error: Exception) -> np.ndarray:
    """Containers libsndfile cannot open (m4a, some mp3): librosa/audioread, whole file at once."""
    import warnings

    import librosa
    import soxr

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data, rate = librosa.load(path, sr=None, mono=False, dtype=np.float32)
    except Exception as error:  # audioread raises many unrelated types, some with empty messages
        raise AudioDecodeError(
            f"{shown(path)}: not decodable audio (soundfile: {_describe(sf_error)}; audioread: {_describe(error)})"
        ) from error
    data = np.atleast_2d(data)
    if data.shape[1] == 0:
        raise AudioDecodeError(f"{shown(path)}: no audio samples")
    mono = _to_mono(np.ascontiguousarray(data.T, dtype=np.float32))
    if not np.all(np.isfinite(mono)):
        raise AudioDecodeError(f"{shown(path)}: audio contains NaN or infinite samples")
    if rate != sample_rate:
        mono = soxr.resample(mono, rate, sample_rate, quality="HQ")
    return mono


def _describe(error: BaseException) -> str:
    text = getattr(error, "error_string", None) or str(error)  # LibsndfileError: without the "Error opening" prefix
    if type(error).__name__ == "NoBackendError":  # audioread's, with no message
        text = "no installed backend (ffmpeg, GStreamer, …) can decode it"
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _check_readable(path: Path) -> None:
    try:
        if path.stat().st_size == 0:
            raise AudioDecodeError(f"{shown(path)}: empty file (0 bytes)")
    except OSError as error:
        raise AudioDecodeError(f"{shown(path)}: cannot read ({error.strerror or error})") from error
    if not os.access(path, os.R_OK):
        raise AudioDecodeError(f"{shown(path)}: cannot read (permission denied)")


_Read = TypeVar("_Read")


def _with_fallback(path: Path, sample_rate: int, read: Callable[[], _Read]) -> _Read | np.ndarray:
    """``read()``: soundfile's decoding of ``path`` (or its opening), any error as an ``AudioDecodeError`` naming the
    file; a file libsndfile cannot open in a container that is not its own (m4a, some mp3) is decoded whole by
    librosa/audioread instead (``_librosa_mono``: its samples, an array)."""
    import soundfile as sf

    try:
        return read()
    except sf.LibsndfileError as sf_error:
        if path.suffix.lower() in _LIBSNDFILE_EXTENSIONS:
            raise AudioDecodeError(f"{shown(path)}: not decodable audio ({_describe(sf_error)})") from sf_error
        return _librosa_mono(path, sample_rate, sf_error)
    except AudioDecodeError:
        raise
    except Exception as error:  # noqa: BLE001 - a decoder bug on one odd file is that file's failure
        raise AudioDecodeError(f"{shown(path)}: not decodable audio ({_describe(error)})") from error


def decode(path: str | os.PathLike, sample_rate: int) -> np.ndarray:
    """Decode ``path`` to mono float32 at ``sample_rate``. Raises ``AudioDecodeError`` naming the file."""
    path = Path(path)
    _check_readable(path)
    mono = _with_fallback(path, sample_rate, lambda: _stream_mono(path, sample_rate))
    return np.ascontiguousarray(mono, dtype=np.float32)


def decoded_length(path: str | os.PathLike, sample_rate: int) -> int | None:
    """About how many samples ``decode(path, sample_rate)`` gives, from the file's header alone (exact for wav,
    flac, …; an estimate for mp3); None when libsndfile cannot read the header or it states no length. Never
    raises: a file that cannot be read says so when it is decoded."""
    import soundfile as sf

    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # opening a FIFO would block
            return None
        with sf.SoundFile(os.fsencode(path)) as handle:
            frames, rate = int(handle.frames), int(handle.samplerate)
    except Exception:  # noqa: BLE001 - see the docstring
        return None
    if frames <= 0 or rate <= 0 or frames >= 0x7FFFFFFFFFFFFFFF:
        return None
    return -(-frames * sample_rate // rate)


def decode_blocks(path: str | os.PathLike, sample_rate: int) -> Iterator[np.ndarray]:
    """``decode(path, sample_rate)`` as consecutive mono float32 blocks (about ``BLOCK_FRAMES`` input frames
    each; some may be empty), never the whole signal at once: for a stage that can consume audio as it comes
    (e.g. cutting windows of an hour-long file). Their concatenation equals ``decode``'s result exactly.

    ``AudioDecodeError`` can come from any ``next()`` — a truncated file is only known at its end — so a consumer
    must drop what it took from a file that fails. Containers libsndfile cannot open (m4a, …) come as one block.
    """
    path = Path(path)
    _check_readable(path)
    blocks = _with_fallback(path, sample_rate, lambda: _SoundfileBlocks(path, sample_rate))
    if isinstance(blocks, np.ndarray):  # decoded whole by librosa/audioread
        yield np.ascontiguousarray(blocks, dtype=np.float32)
        return
    try:
        for samples in blocks:
            yield np.ascontiguousarray(samples, dtype=np.float32)
    except AudioDecodeError:
        raise
    except Exception as error:  # noqa: BLE001 - mid-file: what was yielded cannot be taken back
        raise AudioDecodeError(f"{shown(path)}: not decodable audio ({_describe(error)})") from error
