"""Scenarios: a dataset source that turns a folder of references into (queries, ground truth) before the pipeline.

``robustness`` (``--scenario robustness --refs DIR``): every reference yields a seeded excerpt under each
deformation (``deformations.py``: pitch, tempo, noise, gain, low-pass, MP3, another excerpt, identity), cached as
.wav files (``queries.py``); each query's one relevant reference is its source. The pipeline runs it like any folder
pair; the only difference is that IR metrics are also grouped by each query's deformation (``report.py``:
``map.<d>``, ``mrr.<d>``, ``hit_rate_at_1.<d>``, ``recall_at_<k>.<d>`` with bootstrap CIs, the
``tables/per_deformation`` table and ``figures/per_deformation.png``).

This module is imported by the command line and ``RunConfig.as_params``: it imports nothing heavy.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from metrics.base import Measure

if TYPE_CHECKING:
    from ..config import RunConfig
    from .queries import ScenarioDataset

SCENARIOS = ("robustness",)
DEFAULT_QUERY_SECONDS = 20.0
MIN_QUERY_SECONDS = 1.0
MAX_QUERY_SECONDS = 600.0

#: the numbers a scenario run adds ({deformation}: any deformation name); read by compare and regress
MEASURES = (
    Measure("map.{deformation}", True, description="MAP over the queries of one deformation"),
    Measure("mrr.{deformation}", True, description="MRR over the queries of one deformation"),
    Measure("hit_rate_at_1.{deformation}", True, description="fraction of one deformation's queries found at rank 1"),
    Measure("recall_at_{k}.{deformation}", True, description="recall at k over the queries of one deformation"),
    Measure("n_queries.{deformation}", None, description="queries of one deformation evaluated"),
    Measure("n_deformed", None, description="queries deformed by this run (0 when every one was cached)"),
    Measure("n_deformations_cached", None, description="queries found in the deformed-audio cache"),
    Measure("n_queries", None, description="queries made from the references"),
    Measure("n_refs_shorter_than_query", None, description="references used whole (shorter than a query)"),
    Measure("n_excerpt_skipped", None, description="references too short for a second, non-overlapping excerpt"),
    Measure("n_queries_rescaled", None, description="deformed queries scaled down to fit full scale"),
    Measure("n_refs_without_queries", None, description="references no query could be made from"),
)


class ScenarioOptionError(ValueError):
    """A scenario option that cannot make a run (one line, exit status 2)."""


def check(scenario: str | None, deformations: str | None, query_seconds: float | None, targets, ground_truth) -> None:
    """The scenario options, before any work: a known scenario, known deformations, a sane query length, and no
    ``--targets`` / ``--ground-truth`` (the scenario makes both). Raises ``ScenarioOptionError``."""
    from .deformations import DeformationError, parse_list

    if not scenario:
        if deformations or query_seconds is not None:
            given = "--deformations" if deformations else "--query-seconds"
            raise ScenarioOptionError(f"{given} needs --scenario robustness")
        return
    if scenario not in SCENARIOS:
        raise ScenarioOptionError(f"--scenario {scenario}: unknown scenario; known: {', '.join(SCENARIOS)}")
    if targets is not None:
        raise ScenarioOptionError(
            f"--scenario {scenario} derives its queries from --refs: leave --targets out (it was {targets})"
        )
    if ground_truth is not None:
        raise ScenarioOptionError(
            f"--scenario {scenario} makes its own ground truth (each query's source): leave --ground-truth out"
        )
    if query_seconds is not None and (
        not math.isfinite(query_seconds) or not MIN_QUERY_SECONDS <= query_seconds <= MAX_QUERY_SECONDS
    ):
        raise ScenarioOptionError(
            f"--query-seconds {query_seconds:g}: expected seconds between {MIN_QUERY_SECONDS:g} and "
            f"{MAX_QUERY_SECONDS:g}"
        )
    try:
        parse_list(deformations)
    except DeformationError as error:
        raise ScenarioOptionError(f"--deformations: {error}") from None


def _scenario(config: RunConfig):
    from .deformations import parse_list
    from .queries import Scenario

    return Scenario(parse_list(",".join(config.deformations)), config.query_seconds, config.scenario_seed)


def params(config: RunConfig) -> dict[str, Any]:
    """A scenario run's params: everything that decides its queries (and the version of what deforms them)."""
    from importlib.metadata import PackageNotFoundError, version

    from .deformations import LOWPASS_ORDER, NOISE_COLOR

    scenario = _scenario(config)
    out: dict[str, Any] = {
        "scenario": config.scenario,
        "deformations": ",".join(d.name for d in scenario.deformations),
        "query_seconds": scenario.query_seconds,
        "scenario_seed": scenario.seed,
        "scenario_sample_rate": scenario.sample_rate,
        "query_offset": "seeded uniform (numpy default_rng([seed, source sha256]))",
        "short_reference_policy": "shortened (whole reference, no padding)",
        "noise_color": NOISE_COLOR,
        "lowpass": f"butterworth order {LOWPASS_ORDER}, sosfiltfilt",
        "mp3_codec": "LAME CBR via pedalboard.io, codec delay removed",
    }
    try:
        out["pedalboard_version"] = version("pedalboard")
    except PackageNotFoundError:
        out["pedalboard_version"] = "not installed"
    return out


def load(config: RunConfig) -> ScenarioDataset:
    """The references of ``config.refs`` as a scenario dataset; its queries are made when the run starts."""
    from pathlib import Path

    from ..data import discover
    from .queries import ScenarioDataset

    refs = discover(config.refs, "reference")
    return ScenarioDataset(
        refs=refs,
        targets=[],
        relevance={},
        refs_root=Path(config.refs).expanduser(),
        targets_root=Path(config.targets).expanduser(),
        scenario=_scenario(config),
        cache_root=Path(config.cache_dir).expanduser(),
    )


def pedalboard_available() -> str | None:
    """Why the scenario cannot deform audio here (pedalboard missing), or None."""
    import importlib.util

    if importlib.util.find_spec("pedalboard") is None:
        return "the robustness scenario needs pedalboard (pip install 'pedalboard>=0.9.26')"
    return None
