"""Bounded look-ahead over a thread pool: decode the next files while the model works on this one."""
from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def prefetch_map(fn: Callable[[T], R], items: Iterable[T], workers: int, depth: int | None = None
                 ) -> Iterator[tuple[T, Future]]:
    """Yield ``(item, future of fn(item))`` in order, keeping at most ``depth`` calls in flight.

    Unlike ``Executor.map`` this never submits the whole input at once, so memory stays bounded by
    ``depth`` decoded files however large the folder is. Exceptions stay inside the futures, so the caller
    decides per item what a failure means.
    """
    depth = depth or 2 * max(1, workers)
    pending: deque[tuple[T, Future]] = deque()
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for item in items:
            pending.append((item, pool.submit(fn, item)))
            if len(pending) >= depth:
                yield pending.popleft()
        while pending:
            yield pending.popleft()
