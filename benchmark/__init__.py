"""The musicbench harness: data, cache, retrieval, evaluation, tracking, CLI."""

from .numba_cache import guard_imports

guard_imports()  # before anything here can import librosa: see numba_cache
