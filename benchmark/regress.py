"""Regression check: has an encoder's latest run got worse than its baseline?

For each encoder the *candidate* is its latest FINISHED run (never the baseline itself) in ``--experiment``, or, without
it, anywhere in the tracking store (runs are found by their ``musicbench.encoder`` tag, so a bare ``mlflow run``'s run
in MLflow's "Default" experiment counts); the *baseline* is, by ``--baseline``:

- a run id: that run (only its encoder is checked; the candidate is searched in its experiment unless
  ``--experiment`` names another);
- ``tag``: the encoder's latest FINISHED run tagged ``baseline=true`` (``musicbench baseline pin RUN_ID``);
- ``previous``: the encoder's FINISHED run just before the candidate.

Encoders without a baseline are reported and skipped. Only metrics present in both runs are checked. The
default list is the headline metrics; each metric's direction comes from its declaration (``measures.py``):
lower-is-better ones (``mean_first_relevant_rank``, ``n_failed``, ``*_seconds``) are checked mirrored, and one
with no direction is reported, never failed. A metric *drops* when:

- ``absolute``: ``baseline − candidate > tolerance``;
- ``relative``: ``baseline − candidate > tolerance × |baseline|``;
- ``ci``, the two runs on **the same dataset** (equal ``dataset_fingerprint``): the paired test. Each run's
  per-target values (its ``tables/per_target.json``) are joined on the target and the mean per-target difference
  candidate − baseline gets a paired bootstrap 95% CI (``stats.paired_bootstrap``, 10,000 resamples, seed 0); the
  metric drops when the CI's upper bound (in the better direction) is below ``-tolerance``: the data support a drop
  larger than the tolerance. Every musicbench encoder is deterministic (fixed windows, no sampling), so an
  identical re-run differs by exactly 0 and passes, and the noise that matters is which queries moved, not how
  the query set was sampled.
- ``ci`` on **different datasets** (or without per-target values): paired differences do not exist; the report
  says so and falls back, per metric, to the *unpaired* check ``candidate < baseline's <metric>_ci_low`` (outside
  the baseline's bootstrap CI over queries; the tolerance is not used; a metric without a logged CI is skipped).

The verdict is set as tags on the candidate run: ``regress.verdict=pass|fail``, ``regress.baseline=<run id>``,
``regress.failed_metrics=<m,m>|none``, ``regress.mode``, ``regress.tolerance``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from .measures import has_direction, headline_metrics, lower_is_better, plain_metrics, plain_name
from .runs import RunNotFound, SelectionError, encoder_of, encoder_runs, experiment_ids, get_run, where

MODES = ("absolute", "relative", "ci")
BASELINE_TAG = "baseline"


class RegressError(ValueError):
    """Nothing could be compared (no such run, no baseline); the message says why."""


@dataclass
class MetricCheck:
    metric: str
    baseline: float | None
    candidate: float | None
    verdict: str  # pass | FAIL | skipped
    note: str = ""

    @property
    def delta(self) -> float | None:
        if self.baseline is None or self.candidate is None:
            return None
        return self.candidate - self.baseline


@dataclass
class Pair:
    encoder: str
    baseline: object  # mlflow Run
    candidate: object
    checks: list[MetricCheck] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def failed_metrics(self) -> list[str]:
        return [c.metric for c in self.checks if c.verdict == "FAIL"]

    @property
    def verdict(self) -> str:
        return "fail" if self.failed_metrics else "pass"


@dataclass
class Report:
    pairs: list[Pair]
    skipped: dict[str, str]  # encoder → why not checked
    mode: str
    tolerance: float

    @property
    def failed(self) -> list[Pair]:
        return [p for p in self.pairs if p.verdict == "fail"]


def paired_check(metric: str, b: float, c: float, base_values, cand_values, tolerance: float) -> MetricCheck:
    """The paired ``ci`` check of one metric from the two runs' per-target values (pandas Series by target)."""
    from .stats import paired_bootstrap

    shared = base_values.index.intersection(cand_values.index)
    try:
        diff = paired_bootstrap(cand_values[shared].to_numpy(), base_values[shared].to_numpy())
    except ValueError:
        return MetricCheck(metric, b, c, "skipped", "no target scored by both runs")
    sign = -1.0 if lower_is_better(metric) else 1.0
    low, high = sorted((sign * diff.low, sign * diff.high))  # candidate − baseline, > 0 better
    failed = high < -tolerance
    interval = f"paired Δ {diff.mean:+.4g} [{diff.low:+.4g}, {diff.high:+.4g}] over {diff.n} targets"
    note = f"{interval}: upper bound < -{tolerance:g}" if failed else interval
    return MetricCheck(metric, b, c, "FAIL" if failed else "pass", note)


def check_metric(
    metric: str, baseline: dict[str, float], candidate: dict[str, float], mode: str, tolerance: float
) -> MetricCheck:
    if metric not in baseline or metric not in candidate:
        where = "baseline" if metric not in baseline else "candidate"
        return MetricCheck(metric, baseline.get(metric), candidate.get(metric), "skipped", f"not in {where}")
    b, c = float(baseline[metric]), float(candidate[metric])
    if not has_direction(metric):
        return MetricCheck(metric, b, c, "skipped", "no better direction")
    sign = -1.0 if lower_is_better(metric) else 1.0
    drop = sign * (b - c)  # > 0: worse
    if mode == "absolute":
        failed, note = drop > tolerance, f"drop {drop:.4g} > {tolerance:g}" if drop > tolerance else ""
    elif mode == "relative":
        limit = tolerance * abs(b)
        failed, note = drop > limit, f"drop {drop:.4g} > {tolerance:g}×{abs(b):.4g}" if drop > limit else ""
    elif mode == "ci":
        bound_name = f"{metric}_ci_high" if sign < 0 else f"{metric}_ci_low"
        if bound_name not in baseline:
            return MetricCheck(metric, b, c, "skipped", "baseline has no CI")
        bound = float(baseline[bound_name])
        failed = sign * c < sign * bound
        note = f"unpaired: outside baseline CI ({'>' if sign < 0 else '<'} {bound:.4g})" if failed else "unpaired"
    else:
        raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    return MetricCheck(metric, b, c, "FAIL" if failed else "pass", note)


def default_metrics(run) -> list[str]:
    k = run.data.params.get("k", "5")
    return headline_metrics([int(k)] if str(k).isdigit() else [5])


def per_target_values(client, baseline, candidate) -> tuple[object, str]:
    """``(table, why)``: the two runs' per-target tables stacked (``encoder`` = baseline | candidate) when a paired
    check is possible — same dataset fingerprint, both tables readable — else ``(None, why not)``."""
    from .compare import CompareError, load_per_target

    b_print = baseline.data.params.get("dataset_fingerprint")
    c_print = candidate.data.params.get("dataset_fingerprint")
    if not b_print or b_print != c_print:
        return None, f"different datasets (dataset_fingerprint {b_print} vs {c_print})"
    try:
        return load_per_target(client, [baseline, candidate], ["baseline", "candidate"]), ""
    except CompareError as error:
        return None, f"no per-target values ({error})"


def check_pair(
    encoder: str,
    baseline,
    candidate,
    metrics: list[str] | None,
    mode: str,
    tolerance: float,
    per_target=None,
    unpaired_reason: str = "",
) -> Pair:
    """Check every metric of ``candidate`` against ``baseline``. In ``ci`` mode ``per_target`` (from
    ``per_target_values``) makes the check paired; without it the fallback is named in the pair's warnings."""
    from .compare_stats import per_target_column

    pair = Pair(encoder, baseline, candidate)
    # plain names (retrieval/map → map): a baseline logged before the sections (map) is read the same way
    wanted = [plain_name(m) for m in metrics] if metrics else default_metrics(baseline)
    if mode == "ci" and per_target is None:
        pair.warnings.append(
            f"paired check impossible: {unpaired_reason or 'no per-target values'}; "
            "falling back to the unpaired check (candidate outside the baseline's bootstrap CI)"
        )
    base_metrics, cand_metrics = plain_metrics(baseline.data.metrics), plain_metrics(candidate.data.metrics)
    for metric in wanted:
        check = check_metric(metric, base_metrics, cand_metrics, mode, tolerance)
        column = per_target_column(metric)
        if (
            mode == "ci"
            and per_target is not None
            and check.baseline is not None
            and check.candidate is not None
            and has_direction(metric)
            and column in per_target
        ):
            values = {
                role: pd_numeric(rows.set_index("target")[column])
                for role, rows in per_target.groupby("encoder", sort=False)
            }
            check = paired_check(
                metric, check.baseline, check.candidate, values["baseline"], values["candidate"], tolerance
            )
        if metrics is None and check.verdict == "skipped" and check.note.startswith("not in"):
            continue  # default list: only metrics present in both
        pair.checks.append(check)
    for key in ("dataset_fingerprint", "k"):
        b, c = baseline.data.params.get(key), candidate.data.params.get(key)
        if b != c:
            pair.warnings.append(f"{key} differs: baseline {b}, candidate {c}")
    return pair


def find_pairs(
    client, baseline: str, experiment: str | None
) -> tuple[list[tuple[str, object, object]], dict[str, str]]:
    """(encoder, baseline run, candidate run) per encoder, and {encoder: why skipped}."""
    skipped: dict[str, str] = {}
    if baseline not in ("tag", "previous"):
        try:
            base_run = get_run(client, baseline, "baseline run")
        except RunNotFound as error:
            raise RegressError(str(error)) from None
        encoder = encoder_of(base_run)
        try:  # a run id: its own experiment, unless --experiment says otherwise
            ids = experiment_ids(client, experiment) if experiment else [base_run.info.experiment_id]
        except SelectionError as error:
            raise RegressError(str(error)) from None
        candidates = [
            r for r in encoder_runs(client, ids) if encoder_of(r) == encoder and r.info.run_id != base_run.info.run_id
        ]
        if not candidates:
            raise RegressError(f"no other FINISHED {encoder} run than the baseline {baseline} to check")
        return [(encoder, base_run, candidates[0])], skipped

    try:
        ids = experiment_ids(client, experiment)
    except SelectionError as error:
        raise RegressError(str(error)) from None
    by_encoder: dict[str, list] = {}
    for run in encoder_runs(client, ids):  # newest first
        by_encoder.setdefault(encoder_of(run), []).append(run)
    if not by_encoder:
        raise RegressError(f"{where(experiment)} has no FINISHED encoder runs")
    pairs = []
    for encoder, runs in by_encoder.items():
        if baseline == "previous":
            if len(runs) < 2:
                skipped[encoder] = "only one FINISHED run, no previous one"
                continue
            pairs.append((encoder, runs[1], runs[0]))
            continue
        pinned = [r for r in runs if r.data.tags.get(BASELINE_TAG, "").lower() == "true"]
        if not pinned:
            skipped[encoder] = f"no run tagged {BASELINE_TAG}=true (musicbench baseline pin RUN_ID)"
            continue
        base_run = pinned[0]
        others = [r for r in runs if r.info.run_id != base_run.info.run_id]
        if not others:
            skipped[encoder] = "no FINISHED run other than the baseline"
            continue
        pairs.append((encoder, base_run, others[0]))
    if not pairs:
        raise RegressError("nothing to check: " + "; ".join(f"{e}: {why}" for e, why in skipped.items()))
    return pairs, skipped


def verdict_tags(pair: Pair, mode: str, tolerance: float) -> dict[str, str]:
    return {
        "regress.verdict": pair.verdict,
        "regress.baseline": pair.baseline.info.run_id,
        "regress.failed_metrics": ",".join(pair.failed_metrics) or "none",
        "regress.mode": mode,
        "regress.tolerance": f"{tolerance:g}",
    }


def regress(
    baseline: str,
    tolerance: float = 0.02,
    mode: str = "absolute",
    experiment: str | None = None,
    metrics: list[str] | None = None,
    record_tags: bool = True,
) -> Report:
    if mode not in MODES:
        raise RegressError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    if tolerance < 0:
        raise RegressError("tolerance must be ≥ 0")
    from . import tracking
    from .runs import client as runs_client

    client = runs_client()
    found, skipped = find_pairs(client, baseline, experiment)
    report = Report([], skipped, mode, tolerance)
    for encoder, base_run, candidate in found:
        per_target, why = per_target_values(client, base_run, candidate) if mode == "ci" else (None, "")
        pair = check_pair(encoder, base_run, candidate, metrics, mode, tolerance, per_target, why)
        report.pairs.append(pair)
        if record_tags:
            tracking.set_tags(client, candidate.info.run_id, verdict_tags(pair, mode, tolerance))
    mlflow_run = os.environ.get("MLFLOW_RUN_ID")  # under `mlflow run -e regress`: its own run gets the summary
    if record_tags and mlflow_run:
        tracking.set_tags(
            client,
            mlflow_run,
            {
                "regress.verdict": "fail" if report.failed else "pass",
                "regress.failed_metrics": "; ".join(f"{p.encoder}: {','.join(p.failed_metrics)}" for p in report.failed)
                or "none",
                "regress.candidates": ",".join(p.candidate.info.run_id for p in report.pairs),
                tracking.MLFLOW_RUN_NAME: f"regress {baseline}",  # MLflow named it at random
            },
        )
    return report


def pd_numeric(series):
    import pandas as pd

    return pd.to_numeric(series, errors="coerce")


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.4f}"


def format_report(report: Report) -> str:
    lines = []
    threshold = f"tolerance {report.tolerance:g}"
    for pair in report.pairs:
        lines.append(
            f"{pair.encoder}: candidate {pair.candidate.info.run_id} vs baseline "
            f"{pair.baseline.info.run_id} [{report.mode}, {threshold}]"
        )
        lines.append(f"  {'metric':<24} {'baseline':>10} {'candidate':>10} {'delta':>10}  verdict")
        for check in pair.checks:
            delta = "–" if check.delta is None else f"{check.delta:+.4f}"
            verdict = check.verdict + (f" ({check.note})" if check.note else "")
            lines.append(
                f"  {check.metric:<24} {_fmt(check.baseline):>10} {_fmt(check.candidate):>10} {delta:>10}  {verdict}"
            )
        for warning in pair.warnings:
            lines.append(f"  warning: {warning}")
        lines.append(
            f"  => {pair.verdict.upper()}"
            + (f": {', '.join(pair.failed_metrics)} dropped" if pair.failed_metrics else "")
        )
    for encoder, why in report.skipped.items():
        lines.append(f"{encoder}: not checked ({why})")
    return "\n".join(lines)


__all__ = ["MODES", "RegressError", "Report", "check_metric", "format_report", "regress"]
