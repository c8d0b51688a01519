"""Non-finite numbers never reach MLflow: a NaN/inf embedding is that file's failure, a NaN pair value is left out
of the means, and metrics that cannot be computed are absent (not 0, not NaN)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import soundfile as sf
from cli_helpers import dataset_args
from reliability_helpers import SR, artifact_csv, invoke, runs, tone

from encoders.mfcc import MFCCStats
from metrics.melody import MelodyAccuracy

IR_METRICS = (
    "retrieval/map",
    "retrieval/mrr",
    "retrieval/mean_first_relevant_rank",
    "retrieval/recall_at_5",
    "retrieval/hit_rate_at_5",
    "retrieval/ndcg_at_5",
    "retrieval/map_ci_low",
    "retrieval/map_ci_high",
    "count/n_queries_without_relevant",
)
NAN_SECONDS, INF_SECONDS = 0.7, 0.8  # the poisoned encoder recognises these two files by their length


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("numbers")
    refs, targets = root / "refs", root / "targets"
    refs.mkdir()
    targets.mkdir()
    for i, freq in enumerate((262.0, 330.0, 392.0, 440.0, 494.0)):
        sf.write(refs / f"ref_{i}.wav", tone(freq, 1.0, noise=0.02, seed=i), SR)
    sf.write(refs / "poison_nan.wav", tone(300.0, NAN_SECONDS), SR)
    sf.write(refs / "poison_inf.wav", tone(350.0, INF_SECONDS), SR)
    for i, freq in enumerate((262.0, 392.0, 494.0)):
        sf.write(targets / f"query_{i}.wav", tone(freq, 1.0, noise=0.05, seed=10 + i), SR)
    ground_truth = root / "gt.csv"
    ground_truth.write_text("target,reference\nquery_0,ref_0\nquery_1,ref_2\nquery_2,ref_4\n")
    return {"refs": refs, "targets": targets, "ground_truth": ground_truth}


@pytest.fixture
def logged_metrics(monkeypatch):
    """Every metric value handed to MLflow's client (fluent log_metric/log_metrics both end here)."""
    from mlflow.tracking import MlflowClient

    seen: list[tuple[str, float]] = []
    original_batch, original_one = MlflowClient.log_batch, MlflowClient.log_metric

    def log_batch(self, run_id, metrics=(), *args, **kwargs):
        seen.extend((m.key, m.value) for m in metrics)
        return original_batch(self, run_id, metrics, *args, **kwargs)

    def log_metric(self, run_id, key, value, *args, **kwargs):
        seen.append((key, value))
        return original_one(self, run_id, key, value, *args, **kwargs)

    monkeypatch.setattr(MlflowClient, "log_batch", log_batch)
    monkeypatch.setattr(MlflowClient, "log_metric", log_metric)
    return seen


@pytest.fixture
def poisoned_encoder(monkeypatch):
    """MFCC whose output is NaN for the 0.7 s file and +inf for the 0.8 s file (as a broken model would)."""
    original = MFCCStats.embed

    def embed(self, batch):
        out = original(self, batch)
        for i, audio in enumerate(batch):
            if len(audio) == round(NAN_SECONDS * SR):
                out[i, 3] = np.nan
            elif len(audio) == round(INF_SECONDS * SR):
                out[i] = np.inf
        return out

    monkeypatch.setattr(MFCCStats, "embed", embed)


def _run(data, tmp_path, experiment, *extra):
    result = invoke(
        "run",
        "--encoder",
        "mfcc",
        *dataset_args(data, tmp_path / "cache", metrics="auto", ground_truth=False),
        "--experiment",
        experiment,
        *extra,
    )
    assert result.exit_code == 0, result.output
    (run,) = runs(experiment)
    return run


def test_non_finite_embedding_is_a_per_file_failure(dataset, tmp_path, poisoned_encoder, logged_metrics):
    run = _run(dataset, tmp_path, "nan-embedding", "--ground-truth", str(dataset["ground_truth"]))
    assert run.info.status == "FINISHED"
    failures = artifact_csv(run.info.run_id, "failures.csv").set_index("file")
    assert sorted(failures.index) == ["poison_inf.wav", "poison_nan.wav"]
    for name in failures.index:
        assert failures.loc[name, "stage"] == "embed"
        assert failures.loc[name, "message"] == f"{dataset['refs'] / name}: embedding is not finite (NaN/inf)"
    assert run.data.metrics["count/n_failed"] == 2 and run.data.metrics["count/n_refs"] == 5
    topk = artifact_csv(run.info.run_id, "tables/topk.csv")
    assert not {"poison_nan.wav", "poison_inf.wav"} & set(topk["reference"])
    assert logged_metrics and all(math.isfinite(value) for _, value in logged_metrics)
    assert run.data.metrics["retrieval/map"] > 0  # the rest of the run is intact
    # nothing non-finite was cached either: a re-run recomputes (and fails) the two files again
    again = _run(dataset, tmp_path, "nan-embedding-again", "--ground-truth", str(dataset["ground_truth"]))
    assert again.data.metrics["count/n_cached"] == 8 and again.data.metrics["count/n_failed"] == 2


def test_nan_pair_value_is_left_out_of_the_means(dataset, tmp_path, monkeypatch, logged_metrics):
    original, calls = MelodyAccuracy.pair_scores, []

    def pair_scores(self, target, reference):
        calls.append(1)
        return {"melody_acc": math.nan} if len(calls) == 1 else original(self, target, reference)

    monkeypatch.setattr(MelodyAccuracy, "pair_scores", pair_scores)
    run = _run(dataset, tmp_path, "nan-pair", "--metrics", "melody")
    topk = artifact_csv(run.info.run_id, "tables/topk.csv")
    assert topk["melody_acc"].isna().sum() == 1 and topk.loc[0, "melody_acc"] != topk.loc[0, "melody_acc"]
    top1 = topk[topk["rank"] == 1]["melody_acc"]
    assert run.data.metrics["pair/melody_acc_top1_mean"] == pytest.approx(top1.dropna().mean())
    assert run.data.metrics["pair/melody_acc_topk_mean"] == pytest.approx(topk["melody_acc"].dropna().mean())
    assert all(math.isfinite(value) for _, value in logged_metrics)


def test_metric_with_no_finite_value_is_absent_not_zero(dataset, tmp_path, monkeypatch, logged_metrics):
    monkeypatch.setattr(MelodyAccuracy, "pair_scores", lambda self, t, r: {"melody_acc": math.nan})
    run = _run(dataset, tmp_path, "all-nan-pair", "--metrics", "melody")
    assert not [name for name in run.data.metrics if name.startswith("pair/melody_acc")]
    assert all(math.isfinite(value) for _, value in logged_metrics)


def test_ir_metrics_absent_without_ground_truth(dataset, tmp_path, logged_metrics):
    run = _run(dataset, tmp_path, "no-ground-truth", "--metrics", "none")
    assert not set(IR_METRICS) & set(run.data.metrics)
    assert {"similarity/sim_top1_mean", "count/n_failed", "count/n_refs"} <= set(run.data.metrics)
    assert run.data.params["ground_truth_given"] == "False"
    with_gt = _run(
        dataset, tmp_path, "with-ground-truth", "--metrics", "none", "--ground-truth", str(dataset["ground_truth"])
    )
    assert set(IR_METRICS) <= set(with_gt.data.metrics)
    assert all(math.isfinite(value) for _, value in logged_metrics)


def test_aggregate_drops_nan_and_keeps_absent_absent():
    import pandas as pd

    from benchmark import pair_scoring

    topk = pd.DataFrame(
        {
            "rank": [1, 2, 1, 2],
            "similarity": [0.9, np.nan, 0.5, 0.4],
            "m": [np.nan, np.nan, np.nan, np.nan],
            "n": [1.0, np.inf, np.nan, 0.0],
        }
    )
    out = pair_scoring.aggregate(topk, ["m", "n"])
    assert out["sim_top1_mean"] == pytest.approx(0.7) and out["sim_topk_mean"] == pytest.approx(0.6)
    assert "m_top1_mean" not in out and "m_topk_mean" not in out
    assert out["n_top1_mean"] == 1.0 and out["n_topk_mean"] == pytest.approx(0.5)


def test_tracking_never_passes_non_finite_to_log_metrics(monkeypatch, tmp_path):
    """Defence in depth: even a RunResult carrying NaN/inf (a future bug upstream) logs only finite values."""
    import mlflow

    from benchmark import tracking_result

    passed = []
    monkeypatch.setattr(mlflow, "log_metrics", lambda metrics, *a, **k: passed.append(dict(metrics)))
    tags = {}
    monkeypatch.setattr(mlflow, "set_tags", lambda values: tags.update(values))
    monkeypatch.setattr(mlflow, "set_tag", lambda key, value: tags.update({key: value}))

    class Stop(Exception):
        pass

    def stop(result):
        raise Stop  # everything after the metrics is irrelevant here

    monkeypatch.setattr(tracking_result, "_manifest", stop)
    monkeypatch.setattr(tracking_result, "log_params_once", lambda params: None)

    import pandas as pd

    from benchmark.config import RunConfig
    from benchmark.data import Dataset
    from benchmark.pipeline import RunResult

    result = RunResult(  # a real result (no fake that drifts from the real one), carrying non-finite metrics
        config=RunConfig(encoder="mfcc", refs=tmp_path, targets=tmp_path),
        encoder_params={},
        encoder_tags={},
        dataset=Dataset(refs=[], targets=[]),
        dataset_fingerprint="f",
        target_keys=[],
        ref_keys=[],
        topk=pd.DataFrame(),
        per_target=pd.DataFrame(),
        metrics={"ok": 1.0, "nan": math.nan, "inf": math.inf, "ninf": -math.inf},
        similarity=None,
    )
    # in a run of its own (MLflow's fluent calls would otherwise start one and leave it active for later tests)
    with mlflow.start_run(run_name="non-finite"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # what comes after the metrics may be skipped: not tested here
        tracking_result.log_result(result)
    assert mlflow.active_run() is None
    assert passed == [{"other/ok": 1.0}]  # an undeclared name: the section "other"
    assert tags["dropped_non_finite_metrics"] == "inf,nan,ninf"
