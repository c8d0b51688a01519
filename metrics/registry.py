"""Pair-metric name → lazy factory, and ``--metrics`` selection. Importing this imports no model.

Adding a metric = one file in ``metrics/`` defining a ``PairMetric`` subclass + one entry below.
A metric's constructor must be cheap (no model loading): models load on first use.

Other packages add metrics through the ``musicbench.metrics`` entry-point group (``encoders.plugins``): a plug-in
name works wherever a built-in one does (``--metrics name``; ``auto`` when its class says ``in_auto``). Plug-ins are
discovered without being imported; one that fails to import is unavailable (``MetricUnavailable`` naming the error:
``auto`` tags it skipped), never a crash.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

from encoders.plugins import METRIC_GROUP, Plugin, PluginError, discover

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


def plugins(refresh: bool = False) -> dict[str, Plugin]:
    """Every ``musicbench.metrics`` entry point installed, by name; none is imported (``encoders.plugins``)."""
    return discover(METRIC_GROUP, tuple(PAIR_METRICS), refresh=refresh)


def plugin_names() -> list[str]:
    return [name for name, plugin in plugins().items() if not plugin.conflict]


def names() -> list[str]:
    """Every metric name ``--metrics`` accepts: the built-ins, then the installed plug-ins (none imported)."""
    return [*PAIR_METRICS, *plugin_names()]


def metric_class(name: str) -> type[PairMetric]:
    if name in PAIR_METRICS:
        module_name, class_name = PAIR_METRICS[name].split(":")
        return getattr(importlib.import_module(module_name), class_name)
    plugin = plugins().get(name)
    if plugin is None:
        raise MetricUnavailable(f"unknown metric '{name}'; known metrics: {', '.join(names())}")
    try:
        cls = plugin.load()
    except PluginError as error:
        raise MetricUnavailable(str(error)) from None
    if not isinstance(cls, type) or not issubclass(cls, PairMetric):
        raise MetricUnavailable(
            f"plug-in metric '{name}' ({plugin.source}, {plugin.target}) is not a metrics.base.PairMetric subclass"
        )
    return cls


def create(name: str, options: MetricOptions | None = None) -> PairMetric:
    return metric_class(name)(options or MetricOptions())


def measures() -> list[Measure]:
    """What every pair metric logs, with direction and headline flag (imports the metric modules, not models);
    a plug-in that cannot be imported declares nothing."""
    out = [measure for name in PAIR_METRICS for measure in metric_class(name).logged_measures()]
    for name in plugin_names():
        try:
            out += metric_class(name).logged_measures()
        except MetricUnavailable:
            continue
    return out


def select(spec: str, options: MetricOptions | None = None) -> tuple[list[PairMetric], dict[str, str]]:
    """Resolve ``auto`` | ``all`` | ``none`` | ``name,name`` into (metrics to run, {skipped name: reason}).

    ``auto`` runs every default metric that can run here and reports the others as skipped with the reason.
    ``all`` and explicit names fail with ``MetricUnavailable`` before any work if one of them cannot run.
    """
    spec = (spec or "auto").strip()
    if spec == "none":
        return [], {}
    selected, skipped = [], {}
    if spec in ("auto", "all"):
        wanted = [n for n in PAIR_METRICS if spec == "all" or create(n, options).in_auto]
        for name in plugin_names():  # a plug-in joins auto / all when its class says in_auto
            try:
                if metric_class(name).in_auto:
                    wanted.append(name)
            except MetricUnavailable as error:
                if spec != "auto":
                    raise MetricUnavailable(f"metric '{name}' cannot run: {error}") from None
                skipped[name] = str(error)
    else:
        wanted = [n.strip() for n in spec.split(",") if n.strip()]
    for name in wanted:
        try:
            metric = create(name, options)
            metric.check_available()
        except MetricUnavailable as error:
            if spec != "auto":
                raise MetricUnavailable(f"metric '{name}' cannot run: {error}") from None
            skipped[name] = str(error)
            continue
        selected.append(metric)
    return selected, skipped
