"""The encoder contract, as checks a program can run: every registered encoder must pass them all.

A library module (numpy only; no pytest, click or MLflow): ``run_checks(encoder)`` feeds a built encoder
seeded synthetic audio, already mono and at ``encoder.sample_rate`` (decoding, stereo downmix and resampling
are the harness's job), and returns one ``CheckResult`` per invariant:

* ``output_shape_dtype`` — ``embed`` of n segments returns float32 ``(n, dim)``;
* ``finite`` — no NaN or infinity;
* ``deterministic`` — the same batch twice gives bit-identical embeddings;
* ``input_untouched`` — ``embed`` does not modify the arrays it is given;
* ``batch_equals_single`` — embedding a batch equals embedding each segment alone;
* ``sliced_batches`` — embedding a batch in two slices equals embedding it whole;
* ``shorter_than_window`` — a file shorter than the window, and one shorter than any model's minimum input
  (10 ms), each still yield one finite ``(dim,)`` embedding through ``embed_audio``;
* ``source_sample_rates`` — audio made at 8, 22.05, 44.1 and 48 kHz, of different lengths, resampled to the
  encoder's rate, embeds to finite ``(dim,)`` vectors;
* ``silence`` — digital silence embeds to a finite ``(dim,)`` vector (no division by a zero norm);
* ``speed`` — not an invariant: audio seconds embedded per wall-clock second over all the calls above (first
  calls included, so JIT and warm-up count); ``value`` holds the number. ``measure_speed`` times one clip alone.

Tolerance of the two batching checks: ``|batched − alone| ≤ ATOL + RTOL·|alone|`` elementwise with
``RTOL = ATOL = 1e-5``. Batching may regroup floating-point sums inside the model (a batched matrix product
is not bit-identical to single rows), which moves values by ~1e-7 relative; 1e-5 allows that and nothing a
user could see in a cosine similarity, while any real dependence of one item on another (padding, shared
normalisation, state) moves values by far more.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

RTOL = 1e-5
ATOL = 1e-5
SOURCE_RATES = (8000, 22050, 44100, 48000)
TINY_SECONDS = 0.01  # shorter than any encoder's minimum input: the window policy must pad it


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool
    detail: str
    value: float | None = None  # a measurement, when the check has one (``speed``)


def music(sample_rate: int, seconds: float, seed: int, pitch: float = 220.0) -> np.ndarray:
    """Seeded synthetic music: a decaying harmonic tone plus a little noise, float32 in [-1, 1]."""
    t = np.arange(max(1, int(round(seconds * sample_rate)))) / sample_rate
    tone = sum(np.sin(2 * np.pi * pitch * k * t) / k for k in (1, 2, 3)) * np.exp(-t)
    noise = np.random.default_rng(seed).standard_normal(t.size) * 0.01
    return (0.3 * tone + noise).astype(np.float32)


class _Timed:
    """The encoder's ``embed``/``embed_audio``, counting audio seconds and wall time for the speed figure."""

    def __init__(self, encoder):
        self.encoder, self.audio_seconds, self.wall_seconds = encoder, 0.0, 0.0

    def _timed(self, call: Callable, samples: int):
        start = time.perf_counter()
        try:
            return call()
        finally:
            self.wall_seconds += time.perf_counter() - start
            self.audio_seconds += samples / self.encoder.sample_rate

    def embed(self, batch: Sequence[np.ndarray]) -> np.ndarray:
        return self._timed(lambda: self.encoder.embed(batch), sum(len(item) for item in batch))

    def embed_audio(self, audio: np.ndarray) -> np.ndarray:
        return self._timed(lambda: self.encoder.embed_audio(audio), len(audio))


def _within_tolerance(got: np.ndarray, expected: np.ndarray) -> tuple[bool, str]:
    if got.shape != expected.shape:
        return False, f"shapes differ: {got.shape} vs {expected.shape}"
    diff = np.abs(got.astype(np.float64) - expected)
    ok = bool(np.all(diff <= ATOL + RTOL * np.abs(expected)))
    return ok, f"max |difference| {diff.max():.3g} (tolerance {ATOL:g} + {RTOL:g}·|value|)"


def _vector_ok(vector: np.ndarray, dim: int) -> tuple[bool, str]:
    if vector.shape != (dim,) or vector.dtype != np.float32:
        return False, f"got {vector.dtype} {vector.shape}, expected float32 ({dim},)"
    if not np.isfinite(vector).all():
        return False, "non-finite values"
    return True, f"finite float32 ({dim},)"


def _all_vectors_ok(vectors: dict[str, np.ndarray], dim: int) -> tuple[bool, str]:
    problems = [
        f"{label}: {why}" for label, vector in vectors.items() for ok, why in [_vector_ok(vector, dim)] if not ok
    ]
    return (not problems), "; ".join(problems) or f"{len(vectors)} inputs ({', '.join(vectors)}) → finite ({dim},)"


def _warned(caught: list) -> str:
    """The warnings a check raised, as a suffix of its detail (each text once)."""
    texts = list(dict.fromkeys(f"{w.category.__name__}: " + str(w.message).partition("\n")[0] for w in caught))
    return f"; warned {len(caught)}×: " + " | ".join(texts[:2]) if texts else ""


def attempt(name: str, check: Callable[[], tuple[bool, str]]) -> CheckResult:
    """Run one check: a crash is a failed check (reported with the others), and the warnings it raised go in its
    row, not on stderr."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            passed, detail = check()
        except Exception as error:  # noqa: BLE001 - a crash is a failed check, reported with the others
            passed, detail = False, f"raised {type(error).__name__}: {error}"
    return CheckResult(name, bool(passed), detail + _warned(caught))


def run_checks(encoder, rng_seed: int = 0, seconds: float = 1.0) -> list[CheckResult]:
    """Run every contract check on a built encoder; never raises for a failing check (it is reported).

    ``seconds`` scales the test audio (clips of 0.45–1.3 × ``seconds``, plus a 10 ms clip and, for a windowed
    encoder, one shorter than its window); keep it small for slow models.
    """
    timed, sr, dim = _Timed(encoder), encoder.sample_rate, encoder.dim
    seeds = np.random.default_rng(rng_seed).integers(0, 2**31, size=8)
    # two equal lengths (they may share a forward pass) with another length between them
    lengths = (1.0 * seconds, 0.6 * seconds, 1.0 * seconds)
    batch = [music(sr, length, int(seed), pitch) for length, seed, pitch in zip(lengths, seeds, (220, 330, 262))]
    copies = [item.copy() for item in batch]
    state: dict[str, np.ndarray] = {}

    def whole() -> np.ndarray:
        if "whole" not in state:
            state["whole"] = timed.embed(batch)
        return state["whole"]

    def output_shape_dtype():
        out = whole()
        ok = out.shape == (len(batch), dim) and out.dtype == np.float32
        return ok, f"{len(batch)} segments → {out.dtype} {out.shape} (expected float32 ({len(batch)}, {dim}))"

    def finite():
        bad = np.flatnonzero(~np.isfinite(whole()).all(axis=1))
        return not bad.size, f"non-finite rows {bad.tolist()}" if bad.size else "all values finite"

    def deterministic():
        again = timed.embed(batch)
        same = np.array_equal(whole(), again)
        return (
            same,
            "bit-identical on a second call"
            if same
            else f"second call differs by up to {np.abs(whole() - again).max():.3g}",
        )

    def input_untouched():
        changed = [i for i, (item, copy) in enumerate(zip(batch, copies)) if not np.array_equal(item, copy)]
        return not changed, f"segments {changed} were modified" if changed else "inputs unchanged"

    def batch_equals_single():
        return _within_tolerance(np.concatenate([timed.embed([item]) for item in batch]), whole())

    def sliced_batches():
        half = len(batch) // 2
        return _within_tolerance(np.concatenate([timed.embed(batch[:half]), timed.embed(batch[half:])]), whole())

    def shorter_than_window():
        window = encoder.window.window_seconds
        inputs = {f"{TINY_SECONDS:g} s": music(sr, TINY_SECONDS, int(seeds[4]))}
        if window is not None:
            short = min(window / 2, 2 * seconds)
            inputs[f"{short:g} s"] = music(sr, short, int(seeds[5]))
        return _all_vectors_ok({label: timed.embed_audio(audio) for label, audio in inputs.items()}, dim)

    def source_sample_rates():
        from scipy.signal import resample_poly

        vectors = {}
        for rate, length in zip(SOURCE_RATES, (0.7 * seconds, 1.3 * seconds, 0.45 * seconds, 1.1 * seconds)):
            made = music(rate, length, int(seeds[6]) + rate, pitch=247.0)
            step = np.gcd(rate, sr)
            audio = resample_poly(made, sr // step, rate // step).astype(np.float32)
            vectors[f"{rate} Hz {length:.2f} s"] = timed.embed_audio(audio)
        return _all_vectors_ok(vectors, dim)

    def silence():
        quiet = np.zeros(int(round(seconds * sr)), dtype=np.float32)
        return _all_vectors_ok({f"{seconds:g} s of zeros": timed.embed_audio(quiet)}, dim)

    results = []
    for check in (
        output_shape_dtype,
        finite,
        deterministic,
        input_untouched,
        batch_equals_single,
        sliced_batches,
        shorter_than_window,
        source_sample_rates,
        silence,
    ):
        results.append(attempt(check.__name__, check))
    speed = timed.audio_seconds / timed.wall_seconds if timed.wall_seconds > 0 else float("inf")
    results.append(
        CheckResult(
            "speed",
            True,
            f"{speed:.1f} audio seconds per second over {timed.audio_seconds:.1f} s of audio (first calls included)",
            value=speed,
        )
    )
    return results


def measure_speed(encoder, seconds: float = 10.0, rng_seed: int = 0, repeats: int = 1) -> float:
    """Audio seconds per wall-clock second of ``embed_audio`` on one ``seconds``-long clip, after a warm-up call."""
    audio = music(encoder.sample_rate, seconds, rng_seed)
    encoder.embed_audio(audio[: encoder.sample_rate])  # warm-up: lazy imports, JIT, first-call allocations
    start = time.perf_counter()
    for _ in range(repeats):
        encoder.embed_audio(audio)
    return repeats * seconds / max(time.perf_counter() - start, 1e-9)


def failures(results: Sequence[CheckResult]) -> list[CheckResult]:
    """The checks that did not pass."""
    return [result for result in results if not result.passed]
