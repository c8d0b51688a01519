"""`musicbench regress`: the latest run of each encoder against a baseline; non-zero exit naming a dropped metric."""

import time
import uuid

import pytest
from click.testing import CliRunner

from benchmark.cli import main
from benchmark.measures import logged_name

BASE = {
    "map": 0.80,
    "map_ci_low": 0.70,
    "map_ci_high": 0.90,
    "mrr": 0.85,
    "mrr_ci_low": 0.75,
    "mrr_ci_high": 0.95,
    "melody_acc_top1_mean": 0.50,
}


@pytest.fixture
def store():
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    name = f"regress-{uuid.uuid4().hex[:8]}"
    return client, name, client.create_experiment(name)


_clock = [int(time.time() * 1000)]


def make_run(client, experiment_id, encoder, metrics, params=None, tags=None, status="FINISHED"):
    """A run as the harness logs it (encoder tag, k, metrics), with strictly increasing start times."""
    from mlflow.entities import Metric, Param

    _clock[0] += 1000
    run = client.create_run(
        experiment_id, start_time=_clock[0], run_name=encoder, tags={"musicbench.encoder": encoder, **(tags or {})}
    )
    run_id = run.info.run_id
    client.log_batch(
        run_id,
        metrics=[Metric(k, float(v), _clock[0], 0) for k, v in metrics.items()],
        params=[Param(k, str(v)) for k, v in {"k": 5, **(params or {})}.items()],
    )
    client.set_terminated(run_id, status, end_time=_clock[0] + 500)
    return run_id


def copy_run(client, run_id, **metric_changes):
    """A new run holding a (modified) copy of ``run_id``'s params, encoder tag and metrics."""
    source = client.get_run(run_id)
    metrics = {**source.data.metrics, **{logged_name(k): v for k, v in metric_changes.items()}}
    params = {k: v for k, v in source.data.params.items() if k != "k"}
    return make_run(
        client,
        source.info.experiment_id,
        source.data.tags["musicbench.encoder"],
        metrics,
        params,
        {"dataset_fingerprint": source.data.tags.get("dataset_fingerprint", "")},
    )


def regress(*args):
    return CliRunner().invoke(main, ["regress", *args])


def test_identical_copy_passes_and_lowered_metric_fails(run_on_tiny, store):
    client, experiment, _ = store
    original = run_on_tiny(experiment)

    same = copy_run(client, original)
    result = regress("--baseline", original, "--experiment", experiment)
    assert result.exit_code == 0, result.output
    assert "no regression" in result.output and "map" in result.output
    tags = client.get_run(same).data.tags
    assert tags["regress.verdict"] == "pass" and tags["regress.baseline"] == original
    assert tags["regress.failed_metrics"] == "none"

    map_value = client.get_run(original).data.metrics["retrieval/map"]
    worse = copy_run(client, original, map=map_value - 0.1)
    result = regress("--baseline", original, "--tolerance", "0.02", "--mode", "absolute")
    assert result.exit_code == 3, result.output
    assert "mfcc dropped on map" in result.output
    line = next(x for x in result.output.splitlines() if x.strip().startswith("map "))
    assert "FAIL" in line and "-0.1000" in line
    tags = client.get_run(worse).data.tags
    assert tags["regress.verdict"] == "fail" and tags["regress.failed_metrics"] == "map"
    assert tags["regress.baseline"] == original and tags["regress.mode"] == "absolute"


@pytest.mark.parametrize(
    "mode, tolerance, candidate_map, passes",
    [
        ("absolute", "0.02", 0.785, True),  # drop 0.015 ≤ 0.02
        ("absolute", "0.02", 0.77, False),  # drop 0.03 > 0.02
        ("relative", "0.05", 0.765, True),  # drop 0.035 ≤ 0.05 × 0.8
        ("relative", "0.05", 0.75, False),  # drop 0.05 > 0.04
        ("ci", "0", 0.71, True),  # inside the baseline's CI [0.70, 0.90]
        ("ci", "0", 0.69, False),  # below the baseline's CI
    ],
)
def test_each_mode(store, mode, tolerance, candidate_map, passes):
    client, experiment, experiment_id = store
    baseline = make_run(client, experiment_id, "mfcc", BASE)
    candidate = make_run(client, experiment_id, "mfcc", {**BASE, "map": candidate_map})
    result = regress("--baseline", baseline, "--mode", mode, "--tolerance", tolerance)
    assert result.exit_code == (0 if passes else 3), result.output
    if not passes:
        assert "dropped on map" in result.output and "mrr" not in result.output.splitlines()[-1]
    assert client.get_run(candidate).data.tags["regress.verdict"] == ("pass" if passes else "fail")
    if mode == "ci":  # no CI logged for the melody metric: reported as skipped, never a failure
        line = next(x for x in result.output.splitlines() if "melody_acc_top1_mean" in x)
        assert "skipped (baseline has no CI)" in line


def test_tag_baseline_pinned_with_the_cli(store):
    client, experiment, experiment_id = store
    pinned = make_run(client, experiment_id, "mfcc", BASE)
    make_run(client, experiment_id, "mfcc", BASE)
    latest = make_run(client, experiment_id, "mfcc", {**BASE, "mrr": 0.5})
    make_run(client, experiment_id, "chroma", BASE)  # no baseline: reported, not checked
    result = regress("--baseline", "tag", "--experiment", experiment)
    assert result.exit_code == 2 and "no run tagged baseline=true" in result.output

    assert CliRunner().invoke(main, ["baseline", "pin", pinned]).exit_code == 0
    assert client.get_run(pinned).data.tags["baseline"] == "true"
    result = regress("--baseline", "tag", "--experiment", experiment)
    assert result.exit_code == 3, result.output
    assert "mfcc dropped on mrr" in result.output
    assert "chroma: not checked" in result.output
    tags = client.get_run(latest).data.tags
    assert tags["regress.baseline"] == pinned and tags["regress.failed_metrics"] == "mrr"

    assert CliRunner().invoke(main, ["baseline", "unpin", pinned]).exit_code == 0
    assert "baseline" not in client.get_run(pinned).data.tags


def test_previous_compares_each_encoder_with_its_run_before(store):
    client, experiment, experiment_id = store
    make_run(client, experiment_id, "mfcc", {**BASE, "map": 0.1})
    make_run(client, experiment_id, "mfcc", BASE)
    make_run(client, experiment_id, "mfcc", BASE, status="FAILED")  # not FINISHED: never a candidate
    make_run(client, experiment_id, "chroma", BASE)
    make_run(client, experiment_id, "chroma", BASE)
    result = regress("--baseline", "previous", "--experiment", experiment)
    assert result.exit_code == 0, result.output
    assert result.output.count("=> PASS") == 2

    previous = make_run(client, experiment_id, "chroma", BASE)
    make_run(client, experiment_id, "chroma", {**BASE, "map": 0.6, "mrr": 0.6})
    result = regress("--baseline", "previous", "--experiment", experiment)
    assert result.exit_code == 3
    assert "chroma dropped on map, mrr" in result.output
    assert f"vs baseline {previous}" in result.output


def test_only_metrics_in_both_runs_and_lower_is_better(store):
    client, experiment, experiment_id = store
    baseline = make_run(client, experiment_id, "mfcc", {**BASE, "ndcg_at_5": 0.9, "mean_first_relevant_rank": 1.2})
    make_run(client, experiment_id, "mfcc", {"map": 0.8, "mrr": 0.85, "mean_first_relevant_rank": 1.5})
    result = regress("--baseline", baseline)
    assert result.exit_code == 0, result.output
    assert "ndcg_at_5" not in result.output  # only in the baseline: not compared
    result = regress("--baseline", baseline, "--metrics", "mean_first_relevant_rank,ndcg_at_5")
    assert result.exit_code == 3  # a higher first-relevant rank is worse
    assert "dropped on mean_first_relevant_rank" in result.output
    assert "skipped (not in candidate)" in result.output


def test_nothing_to_check_exits_2(store):
    client, experiment, experiment_id = store
    only = make_run(client, experiment_id, "mfcc", BASE)
    for baseline in ("previous", only, "0" * 32):
        result = regress("--baseline", baseline, "--experiment", experiment)
        assert result.exit_code == 2, result.output
    assert "only one FINISHED run" in regress("--baseline", "previous", "--experiment", experiment).output


# --- ci mode: paired on the same dataset, unpaired (named) otherwise -----------------------------------------------


def _per_target_run(client, experiment_id, ap, fingerprint, encoder="mfcc"):
    """A finished run whose map (with its unpaired bootstrap CI) and per-target table come from ``ap``."""
    import numpy as np
    import pandas as pd

    from metrics.ir import bootstrap_ci

    low, high = bootstrap_ci(ap)
    run_id = make_run(
        client,
        experiment_id,
        encoder,
        {"map": float(np.mean(ap)), "map_ci_low": low, "map_ci_high": high},
        {"dataset_fingerprint": fingerprint},
    )
    table = pd.DataFrame({"target": [f"q{i:02d}" for i in range(len(ap))], "average_precision": ap})
    client.log_table(run_id, table, "tables/per_target.json")
    return run_id


def _ap(seed=0, n=20):
    import numpy as np

    return np.random.default_rng(seed).choice([1.0, 0.5, 1 / 3, 0.25, 0.0], size=n, p=[0.3, 0.2, 0.1, 0.1, 0.3])


def test_ci_mode_is_paired_on_the_same_dataset(store):
    """The issue's case: on identical data a 40% MAP drop passed the unpaired check; the paired one fails it, and an
    identical re-run passes."""
    from benchmark import regress as regress_module

    client, experiment, experiment_id = store
    ap = _ap()
    baseline = _per_target_run(client, experiment_id, ap, "fp-1")
    dropped = _per_target_run(client, experiment_id, ap * 0.6, "fp-1")  # every query 40% lower
    report = regress_module.regress(baseline, 0.02, "ci", experiment, ["map"])
    check = report.pairs[0].checks[0]
    assert report.pairs[0].candidate.info.run_id == dropped
    assert check.verdict == "FAIL" and "paired" in check.note and not report.pairs[0].warnings
    # the unpaired check alone would have let it through: the candidate is inside the baseline's CI
    run = client.get_run(baseline).data.metrics
    assert run["map_ci_low"] < run["map"] * 0.6
    assert regress_module.check_metric("map", run, {"map": run["map"] * 0.6}, "ci", 0.02).verdict == "pass"

    _per_target_run(client, experiment_id, ap, "fp-1")  # an identical re-run
    report = regress_module.regress(baseline, 0.02, "ci", experiment, ["map"])
    assert report.pairs[0].checks[0].verdict == "pass" and "[+0, +0]" in report.pairs[0].checks[0].note
    assert (
        regress("--baseline", baseline, "--mode", "ci", "--experiment", experiment, "--metrics", "map").exit_code == 0
    )


def test_ci_mode_on_another_dataset_falls_back_to_the_unpaired_check_and_says_so(store):
    from benchmark import regress as regress_module

    client, experiment, experiment_id = store
    ap = _ap(1)
    baseline = _per_target_run(client, experiment_id, ap, "fp-1")
    _per_target_run(client, experiment_id, ap * 0.6, "fp-2")
    report = regress_module.regress(baseline, 0.02, "ci", experiment, ["map"])
    pair = report.pairs[0]
    assert any("different datasets" in w and "unpaired" in w for w in pair.warnings)
    assert pair.checks[0].note.startswith("unpaired")
    text = regress_module.format_report(report)
    assert "different datasets" in text and "falling back to the unpaired check" in text
