"""Pair-metric name → lazy factory, and ``--metrics`` selection. Importing this imports no model.

Adding a metric = one file in ``metrics/`` defining a ``PairMetric`` subclass + one entry below.
A metric's constructor must be cheap (no model loading): models load on first use.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

from .base import Measure, MetricUnavailable, PairMetric

PAIR_METRICS: dict[str, str] = {
    "melody": "metrics.melody:MelodyAccuracy",
    "melody_keyinv": "metrics.melody:MelodyAccuracyKeyInvariant",
    "melody_voiced": "metrics.melody:MelodyAccuracyVoiced",
    "clap_sim": "metrics.clap_similarity:ClapSimilarity",
    "aesthetics": "metrics.aesthetics:Aesthetics",
}


@dataclass(frozen=True)
class MetricOptions:
    weights: dict[str, str] = field(default_factory=dict)  # metric name → explicit weights path
    allow_download: bool = False
    device: str = "auto"
    batch_size: int = 8


def names() -> list[str]:
    return list(PAIR_METRICS)


def metric_class(name: str) -> type[PairMetric]:
    try:
        module_name, class_name = PAIR_METRICS[name].split(":")
    except KeyError:
        raise MetricUnavailable(f"unknown metric '{name}'; known metrics: {', '.join(PAIR_METRICS)}") from None
    return getattr(importlib.import_module(module_name), class_name)


def create(name: str, options: MetricOptions | None = None) -> PairMetric:
    return metric_class(name)(options or MetricOptions())


def measures() -> list[Measure]:
    """What every pair metric logs, with direction and headline flag (imports the metric modules, not models)."""
    return [measure for name in PAIR_METRICS for measure in metric_class(name).logged_measures()]


def select(spec: str, options: MetricOptions | None = None) -> tuple[list[PairMetric], dict[str, str]]:
    """Resolve ``auto`` | ``all`` | ``none`` | ``name,name`` into (metrics to run, {skipped name: reason}).

    ``auto`` runs every default metric that can run here and reports the others as skipped with the reason.
    ``all`` and explicit names fail with ``MetricUnavailable`` before any work if one of them cannot run.
    """
    spec = (spec or "auto").strip()
    if spec == "none":
        return [], {}
    if spec in ("auto", "all"):
        wanted = [n for n in PAIR_METRICS if spec == "all" or create(n, options).in_auto]
    else:
        wanted = [n.strip() for n in spec.split(",") if n.strip()]
    selected, skipped = [], {}
    for name in wanted:
        metric = create(name, options)
        try:
            metric.check_available()
        except MetricUnavailable as error:
            if spec != "auto":
                raise MetricUnavailable(f"metric '{name}' cannot run: {error}") from None
            skipped[name] = str(error)
            continue
        selected.append(metric)
    return selected, skipped
