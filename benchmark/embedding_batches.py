"""Windows embedded in encoder batches across files (``Batcher``), each file's rows pooled and reported in order;
a long file's windows added as it is decoded (``add_stream``), with the same batches."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence

import numpy as np

from encoders.base import Encoder, pool

from .data import AudioFile, shown
from .embedding_file import (
    Cut,
    Embedded,
    Undecodable,
    decode_failure,
    embed_windows,
    encoder_failure,
    stream_windows,
    window_weights,
)


class _File:
    """One file in the batcher: its window embeddings so far, how many of its windows wait in the queue, and
    whether all of its windows have been added (``complete``) or it failed (``error``)."""

    __slots__ = ("item", "rows", "pending", "complete", "error", "weights")

    def __init__(self, item: AudioFile):
        self.item, self.rows, self.pending, self.complete, self.error = item, [], 0, False, None
        self.weights: np.ndarray | None = None  # its windows' pooling weights, known when it is closed


class Batcher:
    """Embeds files' windows in encoder batches across files, pools each file's rows and reports files in order.

    Windows join one queue in file order; a full batch (``batch_size`` windows) is embedded as soon as the queue
    holds one, and when a file's last window has been added while the windows added since the last partial batch
    number ``batch_size`` or more, the rest of the queue is embedded too. The batches are therefore exactly those
    of cutting the concatenated windows of whole files (``add``) into ``batch_size`` pieces, and a long file can
    be added window list by window list as it is decoded (``open`` / ``push`` / ``close``), never held whole, with
    the same batches and so the same numbers as when it is added at once.

    A batch the encoder fails on is retried file by file to find the file(s) responsible. Files embedded in worker
    processes (``Embedded``) bring their rows with them and are reported in the same order.
    """

    def __init__(
        self,
        encoder: Encoder,
        batch_size: int,
        on_done: Callable[[AudioFile, np.ndarray], None],
        on_fail: Callable[[AudioFile, str], None],
    ):
        self.encoder, self.batch_size = encoder, batch_size
        self.on_done, self.on_fail = on_done, on_fail
        self.queue: list[tuple[_File, np.ndarray]] = []  # windows not embedded yet, in order
        self.group = 0  # windows added since the queue was last emptied by a partial batch
        self.files: deque[_File] = deque()  # files not reported yet, in order

    def add(self, item: AudioFile, windows: Cut | Embedded) -> None:
        """A whole file: its windows, or its rows embedded by a worker process."""
        file = self.open(item)
        if isinstance(windows, Embedded):
            file.rows, file.error = [windows.rows] if windows.error is None else [], windows.error
        else:
            self.push(file, windows.windows)
        self.close(file, windows.weights)

    def open(self, item: AudioFile) -> _File:
        file = _File(item)
        self.files.append(file)
        return file

    def push(self, file: _File, windows: Sequence[np.ndarray]) -> None:
        """More windows of ``file``, in order."""
        if file.error is not None:
            return
        self.queue.extend((file, window) for window in windows)
        file.pending += len(windows)
        self.group += len(windows)
        while len(self.queue) >= self.batch_size:
            self._embed(self.batch_size)

    def close(self, file: _File, weights: np.ndarray | None = None) -> None:
        """``file`` has no more windows; ``weights``: their pooling weights (None: equal)."""
        file.complete, file.weights = True, weights
        if self.group >= self.batch_size:
            self.flush()
        self._report()

    def abandon(self, file: _File) -> None:
        """Forget ``file`` (its decoding failed part way): its rows and queued windows are dropped, nothing is
        reported for it here."""
        self.queue = [(owner, window) for owner, window in self.queue if owner is not file]
        self.group -= file.pending
        file.pending, file.rows, file.complete = 0, [], True
        self.files.remove(file)
        self._report()

    def flush(self) -> None:
        """Embed every queued window (the last batch may be partial) and report the files that are complete."""
        while self.queue:
            self._embed(min(self.batch_size, len(self.queue)))
        self.group = 0
        self._report()

    def _embed(self, n: int) -> None:
        batch, self.queue = self.queue[:n], self.queue[n:]
        parts: list[tuple[_File, list[np.ndarray]]] = []  # the batch's windows, file by file
        for owner, window in batch:
            owner.pending -= 1
            if owner.error is None:
                if parts and parts[-1][0] is owner:
                    parts[-1][1].append(window)
                else:
                    parts.append((owner, [window]))
        if not parts:
            return
        try:
            rows = embed_windows(self.encoder, [w for _, windows in parts for w in windows], self.batch_size)
        except Exception:  # noqa: BLE001 - find the file(s) responsible: retry one file at a time
            for owner, windows in parts:
                try:
                    owner.rows.append(embed_windows(self.encoder, windows, self.batch_size))
                except Exception as error:  # noqa: BLE001 - any model error is this file's failure
                    owner.error, owner.rows = encoder_failure(owner.item.path, error), []
            return
        start = 0
        for owner, windows in parts:
            owner.rows.append(rows[start : start + len(windows)])
            start += len(windows)

    def _report(self) -> None:
        while self.files and self.files[0].complete and (self.files[0].pending == 0 or self.files[0].error):
            file = self.files.popleft()
            if file.error is not None:
                self.on_fail(file.item, file.error)
                continue
            pooled = pool(np.concatenate(file.rows, axis=0), file.weights)
            file.rows = []
            if not np.all(np.isfinite(pooled)):
                self.on_fail(file.item, f"{shown(file.item.path)}: embedding is not finite (NaN/inf)")
                continue
            self.on_done(file.item, pooled)


def add_stream(batcher: Batcher, item: AudioFile, encoder: Encoder) -> tuple[int, int] | Undecodable:
    """Decode a long file block by block here, handing its windows to ``batcher`` as they come (the batches, and so
    the numbers, are those of adding its windows at once); its window and sample counts, or why it could not be
    decoded (then nothing of it is kept)."""
    file = batcher.open(item)
    length = [0]
    chunks = stream_windows(encoder, item.path, length)
    n_windows = n_samples = 0
    try:
        while True:
            try:
                windows = next(chunks)
            except StopIteration:
                break
            except Exception as error:  # noqa: BLE001 - as in the threaded path: this file's failure
                batcher.abandon(file)
                return decode_failure(item.path, error)
            n_windows += len(windows)
            n_samples += sum(len(w) for w in windows)
            batcher.push(file, windows)
    finally:
        chunks.close()
    batcher.close(file, window_weights(encoder, length[0]))
    return n_windows, n_samples
