"""One file of the embed stage: decoded, cut into the encoder's windows and embedded (``embed_one``, as a worker
process or another engine does it), whole or, for a long file (``streamed``), block by block as it is decoded; and
the outcomes the embed stage pools and records (``Cut``, ``Embedded``, ``Undecodable``, ``Stream``)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from encoders.base import Encoder

from .data import AudioDecodeError, AudioFile, shown
from .decoding import decode, decode_blocks, decoded_length

#: A file longer than this (at the encoder's rate, from its header) is decoded block by block and its windows are
#: embedded as they come (``WindowPolicy.stream``), so the embed stage never holds it whole: an hour at 48 kHz is
#: 691 MB of float32. Only for windowed encoders (a whole-file policy embeds the file as one segment anyway).
STREAM_MIN_SECONDS = 300.0


@dataclass(frozen=True)
class Undecodable:
    message: str


@dataclass(frozen=True)
class Embedded:
    """One file decoded, cut and embedded in a worker process: its window embeddings, or why the encoder failed."""

    n_windows: int
    n_samples: int
    rows: np.ndarray | None = None
    error: str | None = None
    weights: np.ndarray | None = None  # the rows' pooling weights (``WindowPolicy.weights``); None: equal


@dataclass(frozen=True)
class Stream:
    """A long file to be decoded and cut as it is embedded (``streamed``): nothing of it is decoded yet."""

    path: Path


@dataclass(frozen=True)
class Cut:
    """One file decoded and cut here (threads): its windows and their pooling weights (``WindowPolicy.weights``)."""

    windows: list[np.ndarray]
    weights: np.ndarray


Outcome = Cut | Embedded | Undecodable | Stream  # windows | embedded (processes) | decode failure | long file


def streamed(encoder: Encoder, path: Path) -> bool:
    """Whether ``path`` is decoded and cut into ``encoder``'s windows as a stream: its policy is windowed and the
    file is longer than ``STREAM_MIN_SECONDS`` (the same windows either way, see ``WindowPolicy.stream``)."""
    if encoder.window.window_seconds is None:
        return False
    length = decoded_length(path, encoder.sample_rate)
    return length is not None and length > STREAM_MIN_SECONDS * encoder.sample_rate


def stream_windows(encoder: Encoder, path: Path, length: list[int] | None = None) -> Iterator[list[np.ndarray]]:
    """``encoder``'s windows of ``path``, list by list as it is decoded (``AudioDecodeError`` may come from any
    ``next()``, a truncated file being known only at its end). ``length``: a one-item list that counts the samples
    decoded (the file's length once the windows are exhausted, for ``WindowPolicy.weights``)."""
    blocks = decode_blocks(path, encoder.sample_rate)
    if length is not None:
        blocks = _counted(blocks, length)
    return encoder.window.stream(blocks, encoder.sample_rate)


def _counted(blocks: Iterable[np.ndarray], length: list[int]) -> Iterator[np.ndarray]:
    for block in blocks:
        length[0] += len(block)
        yield block


def window_weights(encoder: Encoder, n_samples: int) -> np.ndarray:
    """The pooling weights of the windows of a file of ``n_samples`` samples at the encoder's rate."""
    return encoder.window.weights(n_samples, encoder.sample_rate)


def decode_failure(path: Path, error: Exception) -> Undecodable:
    return Undecodable(
        str(error)
        if isinstance(error, AudioDecodeError)
        else f"{shown(path)}: cannot decode ({type(error).__name__}: {error})"
    )


def encoder_failure(path: Path, error: Exception) -> str:
    return f"{shown(path)}: encoder failed ({type(error).__name__}: {error})"


def cut(encoder: Encoder, path: Path) -> Cut:
    """``path`` decoded whole and cut into ``encoder``'s windows, with their pooling weights."""
    audio = decode(path, encoder.sample_rate)
    return Cut(encoder.window.segment(audio, encoder.sample_rate), window_weights(encoder, len(audio)))


def embed_windows(encoder: Encoder, windows: Sequence[np.ndarray], batch_size: int) -> np.ndarray:
    rows = [encoder.embed(windows[i : i + batch_size]) for i in range(0, len(windows), batch_size)]
    return np.concatenate(rows, axis=0)


def embed_one(item: AudioFile, encoder: Encoder, batch_size: int) -> Embedded | Undecodable:
    """One file decoded, cut and embedded, as a worker does it: its window embeddings (``Embedded``, pooled and
    checked by ``embed_files``), or why it failed. Never raises for a bad file. Engines that embed files elsewhere
    (``benchmark.ray_engine``) call this and hand the outcomes back to ``embed_files(source=...)``. A long file
    (``streamed``) is decoded and embedded block by block, with the same results."""
    if streamed(encoder, item.path):
        return _embed_stream(encoder, item, batch_size)
    try:
        whole = cut(encoder, item.path)
        windows, weights = whole.windows, whole.weights
    except Exception as error:  # noqa: BLE001 - as in the threaded path
        return decode_failure(item.path, error)
    n_windows, n_samples = len(windows), sum(len(w) for w in windows)
    try:
        rows = embed_windows(encoder, windows, batch_size)
    except Exception as error:  # noqa: BLE001 - as in the threaded path
        return Embedded(n_windows, n_samples, error=encoder_failure(item.path, error))
    return Embedded(n_windows, n_samples, rows=rows, weights=weights)


def _embed_stream(encoder: Encoder, item: AudioFile, batch_size: int) -> Embedded | Undecodable:
    """``embed_one`` of a long file, decoded and cut as it is embedded: the same batches (``batch_size`` windows
    from the file's start), so the same rows, holding only a batch of windows and a block of audio."""
    length = [0]
    chunks, queue, rows = stream_windows(encoder, item.path, length), [], []
    n_windows = n_samples = 0
    error = None
    while True:
        try:
            windows = next(chunks)
        except StopIteration:
            break
        except Exception as failure:  # noqa: BLE001 - as in _embed_file
            return decode_failure(item.path, failure)
        n_windows += len(windows)
        n_samples += sum(len(w) for w in windows)
        if error is not None:
            continue  # the encoder failed: read on, to report a decoding problem the way _embed_file would
        queue.extend(windows)
        try:
            while len(queue) >= batch_size:
                rows.append(encoder.embed(queue[:batch_size]))
                del queue[:batch_size]
        except Exception as failure:  # noqa: BLE001 - as in _embed_file
            error, queue, rows = encoder_failure(item.path, failure), [], []
    if error is None and queue:
        try:
            rows.append(encoder.embed(queue))
        except Exception as failure:  # noqa: BLE001 - as in _embed_file
            error, rows = encoder_failure(item.path, failure), []
    if error is not None:
        return Embedded(n_windows, n_samples, error=error)
    return Embedded(n_windows, n_samples, rows=np.concatenate(rows, axis=0), weights=window_weights(encoder, length[0]))
