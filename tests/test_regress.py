"""`musicbench regress`: the latest run of each encoder against a baseline; non-zero exit naming a dropped metric."""

import time
import uuid

import pytest
from click.testing import CliRunner

from benchmark.cli import main

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
    metrics = {**source.data.metrics, **metric_changes}
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

    map_value = client.get_run(original).data.metrics["map"]
    worse = copy_run(client, original, map=map_value - 0.1)
    result = regress("--baseline", original, "--tolerance", "0.02", "--mode", "absolute")
    assert result.exit_code == 1, result.output
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
    assert result.exit_code == (0 if passes else 1), result.output
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
    assert result.exit_code == 1, result.output
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
    assert result.exit_code == 1
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
    assert result.exit_code == 1  # a higher first-relevant rank is worse
    assert "dropped on mean_first_relevant_rank" in result.output
    assert "skipped (not in candidate)" in result.output


def test_nothing_to_check_exits_2(store):
    client, experiment, experiment_id = store
    only = make_run(client, experiment_id, "mfcc", BASE)
    for baseline in ("previous", only, "0" * 32):
        result = regress("--baseline", baseline, "--experiment", experiment)
        assert result.exit_code == 2, result.output
    assert "only one FINISHED run" in regress("--baseline", "previous", "--experiment", experiment).output
