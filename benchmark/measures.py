"""What each logged number means, gathered from where it is declared.

Declarations live with the code that computes the number: IR measures in ``metrics/ir.py`` (``MEASURES``), pair
metrics on their ``PairMetric`` class (``measures``), the harness's own numbers in ``evaluation.py``
(``HARNESS_MEASURES``). ``compare`` and ``regress`` ask here for a metric's direction and for the headline list,
and hard-code no metric name.

A declared name may hold ``{k}`` (any cut-off, e.g. ``recall_at_{k}``) or ``{stage}`` (any word, e.g.
``{stage}_seconds``). ``<name>_ci_low`` / ``<name>_ci_high`` mean what ``<name>`` means.
"""

from __future__ import annotations

import dataclasses
import functools
import re

from metrics.base import Measure

CI_SUFFIXES = ("_ci_low", "_ci_high")
_PLACEHOLDERS = {"{k}": r"\d+", "{stage}": r"[a-z0-9_]+", "{deformation}": r"[A-Za-z0-9_.\-]+"}


#: The MLflow sections (``<section>/<name>``: the UI's charts and compare views group metrics by them), in the order a
#: reader wants them. Each number's section is declared with it (``Measure.section``), else its family's (below);
#: ``logged_name`` is the one mapping from a name to its logged name, ``plain_name`` the way back.
SECTIONS = {
    "retrieval": "IR metrics against ground truth (MAP, MRR, recall/hit rate/precision/nDCG at k), with their CIs",
    "pair": "pair metrics of the retrieved pairs (melody accuracy, CLAP similarity)",
    "aesthetics": "Audiobox Aesthetics of targets, retrieved references and their difference",
    "robustness": "the robustness scenario's IR metrics per deformation (map.pitch_up_1, …)",
    "similarity": "cosine of each target and its retrieved references, in the encoder's own space (within-encoder)",
    "index": "the ANN index's recall against exact search",
    "timing": "stage wall times and throughput",
    "count": "denominators and bookkeeping: files, queries, pairs scored, failures, suite children",
}
#: the suite parent's own numbers
SUITE_MEASURES = (
    Measure("suite_children_finished", None, section="count"),
    Measure("suite_children_failed", None, section="count"),
)


def _family(measures, section: str) -> tuple[Measure, ...]:
    """A family's measures with its section where they declare none; counts (``n_*``) and times (``*_seconds``,
    throughput) go to their own sections whatever the family."""

    def of(m: Measure) -> str:
        if m.section:
            return m.section
        if m.name.startswith("n_"):
            return "count"
        if m.name.endswith(("_seconds", "_per_second")):
            return "timing"
        return section

    return tuple(dataclasses.replace(m, section=of(m)) for m in measures)


@functools.lru_cache(maxsize=1)
def declared() -> tuple[Measure, ...]:
    """Every declaration, in headline order: IR measures, then the harness's, then the pair metrics'."""
    from metrics import registry
    from metrics.ir import MEASURES as IR_MEASURES

    from .evaluation import HARNESS_MEASURES
    from .scenarios import MEASURES as SCENARIO_MEASURES

    return (
        *_family(IR_MEASURES, "retrieval"),
        *_family(HARNESS_MEASURES, "similarity"),
        *_family(registry.measures(), "pair"),
        *_family(SCENARIO_MEASURES, "robustness"),
        *_family(SUITE_MEASURES, "count"),
    )


def logged_name(metric: str) -> str:
    """The name ``metric`` is logged under in MLflow: ``<section>/<metric>`` (``map`` → ``retrieval/map``,
    ``map_ci_low`` → ``retrieval/map_ci_low``, ``n_failed`` → ``count/n_failed``); an undeclared name goes to
    ``other/``. A name that already has a section is returned as it is."""
    if "/" in metric:
        return metric
    found = measure(metric)
    return f"{found.section if found is not None and found.section else 'other'}/{metric}"


def plain_name(metric: str) -> str:
    """The name without its section (``retrieval/map`` → ``map``); a run logged before sections (``map``) reads
    the same, so ``compare`` and ``regress`` read old and new runs alike."""
    section, sep, rest = metric.partition("/")
    return rest if sep and (section in SECTIONS or section == "other") else metric


def plain_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """A run's logged metrics by plain name (MLflow's ``system/*`` metrics left out)."""
    return {plain_name(name): value for name, value in metrics.items() if not name.startswith("system/")}


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
