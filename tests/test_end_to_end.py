"""The demo with a baseline encoder, end to end into a temporary MLflow store, read back with the client."""

import json

import numpy as np
import pytest
from click.testing import CliRunner
from reference_ranking import full_ranking, reference_retrieval_metrics

from benchmark.cli import main
from benchmark.data import load_dataset
from metrics.ir import ir_metrics

pytestmark = pytest.mark.slow  # builds the demo set, then a whole CLI run on it

EXPECTED_ARTIFACTS = {
    "tables/topk.csv",
    "tables/topk.json",
    "tables/per_target.csv",
    "tables/per_target.json",
    "failures.csv",
    "config.json",
    "dataset/manifest.csv",
    "figures/similarity_heatmap.png",
    "figures/top1_similarity.png",
}


def _artifacts(client, run_id, path=None):
    out = set()
    for item in client.list_artifacts(run_id, path):
        out |= _artifacts(client, run_id, item.path) if item.is_dir else {item.path}
    return out


@pytest.fixture(scope="module")
def demo_run(demo_set, tmp_path_factory):
    import huggingface_hub.constants
    from mlflow.tracking import MlflowClient

    cache = tmp_path_factory.mktemp("e2e-cache")
    with pytest.MonkeyPatch.context() as patch:  # no weights anywhere: the neural metrics must be skipped, and say why
        patch.delenv("MUSICBENCH_WEIGHTS", raising=False)
        patch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path_factory.mktemp("empty-hf")))
        result = CliRunner().invoke(
            main,
            [
                "run",
                "--encoder",
                "mfcc",
                "--refs",
                str(demo_set.refs),
                "--targets",
                str(demo_set.targets),
                "--ground-truth",
                str(demo_set.ground_truth),
                "--cache-dir",
                str(cache),
                "--experiment",
                "e2e",
                "--no-progress",
            ],
        )
    assert result.exit_code == 0, result.output
    client = MlflowClient()
    runs = client.search_runs([client.get_experiment_by_name("e2e").experiment_id])
    assert len(runs) == 1
    return client, runs[0], cache


def test_run_records_params_tags_metrics_and_artifacts(demo_run):
    client, run, _ = demo_run
    assert run.info.status == "FINISHED"
    params, tags, metrics = run.data.params, run.data.tags, run.data.metrics
    for key in ("encoder", "k", "dataset_fingerprint", "code_version", "encoder_sample_rate", "window_seconds"):
        assert key in params, key
    assert params["encoder"] == "mfcc" and params["k"] == "5"
    assert tags["version.mlflow"] and tags["version.librosa"]
    for key in (
        "retrieval/map",
        "retrieval/mrr",
        "retrieval/mean_first_relevant_rank",
        "retrieval/recall_at_5",
        "retrieval/hit_rate_at_5",
        "retrieval/ndcg_at_5",
        "similarity/sim_top1_mean",
        "similarity/sim_top1_median",
        "similarity/sim_topk_mean",
        "pair/melody_acc_top1_mean",
        "pair/melody_acc_topk_mean",
        "retrieval/map_ci_low",
        "retrieval/map_ci_high",
        "count/n_failed",
    ):
        assert key in metrics, key
    assert 0 < metrics["retrieval/map"] < 1 and 0 < metrics["retrieval/mrr"] <= 1
    assert metrics["retrieval/map_ci_low"] <= metrics["retrieval/map"] <= metrics["retrieval/map_ci_high"]
    assert (
        -1 <= metrics["similarity/sim_top1_mean"] <= 1
        and metrics["similarity/sim_topk_mean"] <= metrics["similarity/sim_top1_mean"]
    )
    assert 0 <= metrics["pair/melody_acc_top1_mean"] <= 1
    assert metrics["count/n_failed"] == 0
    assert EXPECTED_ARTIFACTS <= _artifacts(client, run.info.run_id)
    assert run.inputs.dataset_inputs, "dataset not recorded with log_input"
    assert "checkpoint.pt" in tags["skipped.aesthetics"] and "630k-audioset-best.pt" in tags["skipped.clap_sim"]
    assert not [m for m in metrics if m.startswith(("aesthetics/", "pair/clap_sim"))]  # skipped: no number, not zero


def test_topk_table_holds_k_rows_per_target(demo_run, demo_set):
    client, run, _ = demo_run
    path = client.download_artifacts(run.info.run_id, "tables/topk.json")
    table = json.load(open(path))
    columns = table["columns"]
    assert {"target", "rank", "reference", "similarity", "relevant", "melody_acc"} <= set(columns)
    n_targets = len(load_dataset(demo_set.refs, demo_set.targets).targets)
    assert len(table["data"]) == 5 * n_targets


def test_baseline_beats_shuffled_embeddings(demo_run, demo_set):
    """MAP of the baseline vs. the same embeddings with references shuffled (a chance-level control)."""
    _, run, cache = demo_run
    from benchmark import pipeline
    from benchmark.config import RunConfig

    config = RunConfig(
        encoder="mfcc",
        refs=demo_set.refs,
        targets=demo_set.targets,
        ground_truth=demo_set.ground_truth,
        cache_dir=cache,
        metrics="none",
    )
    result = pipeline.run(config, progress=False)
    assert result.metrics["n_embedded"] == 0  # all from the cache of the CLI run
    from benchmark.cache import ArrayCache
    from encoders.mfcc import MFCCStats

    store = ArrayCache(cache, MFCCStats().cache_identity())
    hashes = {f.key: result.dataset.content_hashes[f.path] for f in result.dataset.refs}
    refs = np.stack([store.get(hashes[k]) for k in result.ref_keys])
    targets = np.stack([store.get(result.dataset.content_hashes[f.path]) for f in result.dataset.targets])
    rng = np.random.default_rng(0)
    shuffled_maps = []
    for _ in range(20):
        ranking = full_ranking(targets, refs[rng.permutation(len(refs))])
        rankings = {f.key: [result.ref_keys[i] for i in row] for f, row in zip(result.dataset.targets, ranking)}
        shuffled_maps.append(ir_metrics(rankings, result.dataset.relevance)["map"])
    assert run.data.metrics["retrieval/map"] == pytest.approx(result.metrics["map"])
    assert result.metrics["map"] > np.mean(shuffled_maps) + 0.1

    # the evaluate stage's rank counting gives the previous implementation's numbers (full rankings), exactly
    ref_position = {key: i for i, key in enumerate(result.ref_keys)}
    exclude = [
        {ref_position[result.dataset.refs[i].key] for i in matches if result.dataset.refs[i].key in ref_position}
        for matches in result.dataset.self_matches()
    ]
    expected, expected_rows = reference_retrieval_metrics(
        targets, refs, result.ref_keys, exclude, [f.key for f in result.dataset.targets], result.dataset.relevance, 5
    )
    assert {name: result.metrics[name] for name in expected} == expected
    per_target = result.per_target.set_index("target")
    for row in expected_rows.to_dict("records"):
        for column in ("average_precision", "reciprocal_rank", "ndcg_at_5", "recall_at_10"):
            assert per_target.loc[row["query"], column] == row[column]
