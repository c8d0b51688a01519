"""The protocol of a pair metric: scores a (target, retrieved reference) pair.

A pair metric works in two steps so each file is processed once, however many pairs it is in:
``file_features(audio)`` (audio mono float32 at ``sample_rate``) → features, then
``pair_scores(target_features, reference_features)`` → ``{column: value}``.
``file_values(features)`` may expose per-file numbers (e.g. an aesthetics score of one song).

Names (one scheme, documented in README; MLflow logs each under its section, ``pair/<name>`` unless the metric's
``section`` says otherwise: ``benchmark/measures.py``):
* every pair column ``c`` → ``c_top1_mean`` (rank-1 pairs) and ``c_topk_mean`` (all top-k pairs);
* every file value ``v`` → ``v_targets_file_mean`` (over the target files) and ``v_top1_refs_file_mean`` (over the
  rank-1 reference files) — named apart from the pair columns' ``<column>_top1_mean``, another computation.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np


class MetricUnavailable(RuntimeError):
    """A metric cannot run here; the message says why (and how to fix it)."""


@dataclass(frozen=True)
class Measure:
    """What one logged number means: read by ``compare`` and ``regress`` instead of hard-coded names.

    ``name`` is the logged metric name; ``{k}`` stands for the run's k (``recall_at_{k}``).
    ``higher_is_better``: True / False, or None for a descriptive number with no better direction
    (e.g. an aesthetics delta). ``headline``: retrieval quality, part of the default comparison and regression
    gate (★, the heatmap's colours, ``comparison.best.*`` tags). ``across_encoders``: False for a number that is
    comparable within one encoder only (``sim_top1_mean``: a cosine in that encoder's own embedding space), which
    no comparison of encoders ranks (never headline).
    """

    name: str
    higher_is_better: bool | None = True
    headline: bool = False
    description: str = ""
    across_encoders: bool = True
    #: the MLflow section its logged name goes under (``retrieval`` → ``retrieval/map``); empty: its family's
    #: (``benchmark/measures.py``, the one mapping from a name to its logged name)
    section: str = ""

    def __post_init__(self) -> None:
        if self.headline and not self.across_encoders:
            raise ValueError(f"{self.name}: a number comparable within one encoder only cannot be a headline")

    def named(self, name: str) -> Measure:
        return dataclasses.replace(self, name=name)

    def not_headline(self) -> Measure:
        return dataclasses.replace(self, headline=False)


class PairMetric(ABC):
    #: family name, as typed in ``--metrics`` and used in ``skipped.<name>`` tags
    name: str
    #: sample rate of the audio ``file_features`` expects
    sample_rate: int
    #: per-pair columns ``pair_scores`` returns (also the top-k table's columns)
    columns: tuple[str, ...]
    #: per-file values ``file_values`` returns (may be empty)
    file_value_names: tuple[str, ...] = ()
    #: whether ``auto`` selects this metric when it can run
    in_auto: bool = True
    #: what each pair column and file value means (direction, headline); unlisted ones are higher-is-better
    measures: tuple[Measure, ...] = ()
    #: the MLflow section of every number this metric logs (``pair/melody_acc_top1_mean``)
    section: str = "pair"
    #: ``file_features`` is thread-safe and spends its time in code that releases the GIL (numpy/scipy), so the
    #: harness may run it on several files at once in threads (a model-backed metric keeps False: one at a time)
    parallel_files: bool = False
    #: what a valid ``file_features`` array looks like (the harness checks cached entries against it): its shape
    #: (None = any length), dtypes and, when known, the inclusive range of its values
    feature_shape: tuple[int | None, ...] = (None,)
    feature_dtypes: tuple[str, ...] = ("float32", "float64")
    feature_range: tuple[float, float] | None = None

    def __init__(self, options=None):
        """``options`` is a ``metrics.registry.MetricOptions`` (weights paths, device, …). Loads no model."""
        self.options = options

    def check_available(self) -> str:
        """Return a short description of what it will use; raise ``MetricUnavailable`` if it cannot run."""
        return "available"

    def identity(self) -> dict[str, Any]:
        """Everything that changes the per-file features: part of the cache key."""
        return {"metric": self.name, "sample_rate": self.sample_rate, "version": 1}

    def cache_identity(self) -> dict[str, Any]:
        """The cache namespace of the per-file features. A metric whose features *are* an encoder's
        embeddings (CLAP similarity) returns that encoder's embedding identity, so files are embedded once."""
        return {"kind": "metric-features", **self.identity()}

    @abstractmethod
    def file_features(self, audio: np.ndarray) -> np.ndarray:
        """Per-file features from mono float32 audio at ``sample_rate``; returned as a numpy array."""

    @abstractmethod
    def pair_scores(self, target: np.ndarray, reference: np.ndarray) -> dict[str, float]:
        """Scores of one (target, retrieved reference) pair from their features."""

    def file_values(self, features: np.ndarray) -> dict[str, float]:
        return {}

    def close(self) -> None:  # noqa: B027  (an optional hook)
        """Release model memory."""

    @classmethod
    def logged_measures(cls) -> list[Measure]:
        """Every aggregate this metric logs (see the naming scheme above), with its declared meaning."""
        declared = {m.name: m if m.section else dataclasses.replace(m, section=cls.section) for m in cls.measures}
        declared.update(
            {c: Measure(c, section=cls.section) for c in (*cls.columns, *cls.file_value_names) if c not in declared}
        )
        out = []
        for column in cls.columns:
            base = declared[column]
            out += [base.named(f"{column}_top1_mean"), base.named(f"{column}_topk_mean").not_headline()]
        for value in cls.file_value_names:
            base = declared[value]
            out += [
                base.named(f"{value}_targets_file_mean").not_headline(),
                base.named(f"{value}_top1_refs_file_mean").not_headline(),
            ]
        return out
