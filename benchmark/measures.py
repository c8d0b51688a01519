"""What each logged number means, gathered from where it is declared.

Declarations live with the code that computes the number: IR measures in ``metrics/ir.py`` (``MEASURES``), pair
metrics on their ``PairMetric`` class (``measures``), the harness's own numbers in ``evaluation.py``
(``HARNESS_MEASURES``). ``compare`` and ``regress`` ask here for a metric's direction and for the headline list,
and hard-code no metric name.

A declared name may hold ``{k}`` (any cut-off, e.g. ``recall_at_{k}``) or ``{stage}`` (any word, e.g.
``{stage}_seconds``). ``<name>_ci_low`` / ``<name>_ci_high`` mean what ``<name>`` means.
"""

from __future__ import annotations

import functools
import re

from metrics.base import Measure

CI_SUFFIXES = ("_ci_low", "_ci_high")
_PLACEHOLDERS = {"{k}": r"\d+", "{stage}": r"[a-z0-9_]+", "{deformation}": r"[A-Za-z0-9_.\-]+"}


@functools.lru_cache(maxsize=1)
def declared() -> tuple[Measure, ...]:
    """Every declaration, in headline order: IR measures, then the harness's, then the pair metrics'."""
    from metrics import registry
    from metrics.ir import MEASURES as IR_MEASURES

    from .evaluation import HARNESS_MEASURES
    from .scenarios import MEASURES as SCENARIO_MEASURES

    return (*IR_MEASURES, *HARNESS_MEASURES, *registry.measures(), *SCENARIO_MEASURES)


def _pattern(name: str) -> re.Pattern:
    text = re.escape(name)
    for placeholder, regex in _PLACEHOLDERS.items():
        text = text.replace(re.escape(placeholder), regex)
    return re.compile(text + r"\Z")


def measure(metric: str) -> Measure | None:
    """The declaration a logged name falls under (exact names first, then patterns), or None."""
    for suffix in CI_SUFFIXES:
        if metric.endswith(suffix):
            metric = metric[: -len(suffix)]
    measures = declared()
    for candidate in measures:
        if candidate.name == metric:
            return candidate.named(metric)
    for candidate in measures:
        if "{" in candidate.name and _pattern(candidate.name).match(metric):
            return candidate.named(metric)
    return None


def lower_is_better(metric: str) -> bool:
    found = measure(metric)
    return found is not None and found.higher_is_better is False


def has_direction(metric: str) -> bool:
    found = measure(metric)
    return found is None or found.higher_is_better is not None


def ranked_across_encoders(metric: str) -> bool:
    """Whether a comparison of encoders may rank ``metric`` (★, best tags, heatmap colour): it has a direction and
    means the same in every encoder's runs (not ``sim_top1_mean``, a cosine in the encoder's own space)."""
    found = measure(metric)
    return has_direction(metric) and (found is None or found.across_encoders)


def headline_metrics(ks: list[int]) -> list[str]:
    """The headline metric names for runs made with these k, in declaration order."""
    out: list[str] = []
    for candidate in declared():
        if not candidate.headline:
            continue
        names = [candidate.name.format(k=k) for k in sorted(set(ks))] if "{k}" in candidate.name else [candidate.name]
        out += [name for name in names if name not in out]
    return out
