"""Paired statistics over the queries two runs share: the bootstrap CI of the mean per-query difference, and
McNemar's exact test for a binary per-query outcome (hit@k). Used by ``compare`` (each encoder against the best)
and ``regress --mode ci`` (candidate against baseline on the same dataset).

Why paired: every encoder answers the same queries, so query difficulty — the main source of spread — cancels in
the per-query difference. Two overlapping unpaired intervals can hide a difference the paired test sees at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

N_RESAMPLES = 10_000
CONFIDENCE = 0.95
SEED = 0


@dataclass(frozen=True)
class PairedDifference:
    """Mean of ``a − b`` over the ``n`` paired queries, with its percentile-bootstrap interval."""

    mean: float
    low: float
    high: float
    n: int

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


def paired_bootstrap(
    a, b, n_resamples: int = N_RESAMPLES, confidence: float = CONFIDENCE, seed: int = SEED
) -> PairedDifference:
    """The mean of the per-query differences ``a[i] − b[i]`` and its percentile-bootstrap ``confidence`` interval:
    queries are resampled with replacement (the pairs stay together), ``n_resamples`` times, by
    ``numpy.random.default_rng(seed)`` — deterministic for a seed. Pairs with a non-finite side are left out
    (``n`` says how many are used); constant differences give a zero-width interval. ``ValueError`` without a pair.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired values differ in shape: {a.shape} vs {b.shape}")
    keep = np.isfinite(a) & np.isfinite(b)
    diff = a[keep] - b[keep]
    if not diff.size:
        raise ValueError("no pair with both values")
    mean = float(diff.mean())
    if np.all(diff == diff[0]):
        return PairedDifference(mean, mean, mean, int(diff.size))
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples)
    block = max(1, (1 << 22) // diff.size)
    for start in range(0, n_resamples, block):
        stop = min(start + block, n_resamples)
        means[start:stop] = diff[rng.integers(0, diff.size, size=(stop - start, diff.size))].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return PairedDifference(mean, float(low), float(high), int(diff.size))


@dataclass(frozen=True)
class McNemar:
    """Discordant pairs: ``only_a`` queries where a hit and b missed, ``only_b`` the reverse; exact two-sided p."""

    only_a: int
    only_b: int
    p_value: float


def mcnemar_exact(a, b) -> McNemar:
    """McNemar's exact test of paired binary outcomes (1 = hit): under equal hit rates each discordant pair is a fair
    coin, so the p-value is the two-sided binomial test of ``only_a`` in ``only_a + only_b`` trials at 1/2
    (``scipy.stats.binomtest``); 1.0 without a discordant pair. Pairs with a non-finite side are left out."""
    from scipy.stats import binomtest

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep] > 0, b[keep] > 0
    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(~a & b))
    if only_a + only_b == 0:
        return McNemar(0, 0, 1.0)
    return McNemar(only_a, only_b, float(binomtest(only_a, only_a + only_b, 0.5).pvalue))
