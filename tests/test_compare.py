"""`musicbench compare`: runs read back from MLflow → table (= logged metrics), side-by-side top-1, figures."""

import uuid

import numpy as np
import pytest
from click.testing import CliRunner

from benchmark.cli import main
from benchmark.measures import logged_name

FIGURES = ("per_target_top1_similarity", "metrics_heatmap", "per_target_summary")


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def two_runs(run_on_tiny):
    """An mfcc and a chroma run (with the melody metric) in a fresh experiment."""
    from mlflow.tracking import MlflowClient

    experiment = f"compare-{uuid.uuid4().hex[:8]}"
    ids = {encoder: run_on_tiny(experiment, encoder, metrics="melody") for encoder in ("mfcc", "chroma")}
    client = MlflowClient()
    return client, experiment, {name: client.get_run(run_id) for name, run_id in ids.items()}


@pytest.mark.slow
def test_compare_two_runs_table_equals_logged_metrics(two_runs, tmp_path):
    import pandas as pd
    from PIL import Image

    client, experiment, runs = two_runs
    out = tmp_path / "cmp"
    result = CliRunner().invoke(
        main, ["compare", "--runs", f"{runs['mfcc'].info.run_id},{runs['chroma'].info.run_id}", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "| encoder | map | mrr | recall_at_5 | ndcg_at_5 | hit_rate_at_1 | melody_acc_top1_mean |" in result.output

    for name in FIGURES:
        with Image.open(out / "figures" / f"{name}.png") as image:
            assert image.format == "PNG" and image.size[0] > 300
    table = pd.read_csv(out / "comparison.csv", index_col="encoder")
    assert list(table.index) == ["mfcc", "chroma"]
    for encoder, run in runs.items():
        assert table.at[encoder, "run_id"] == run.info.run_id
        for metric in (
            "map",
            "mrr",
            "recall_at_5",
            "ndcg_at_5",
            "hit_rate_at_1",
            "melody_acc_top1_mean",
            "map_ci_low",
            "map_ci_high",
        ):
            assert table.at[encoder, metric] == pytest.approx(run.data.metrics[logged_name(metric)], abs=1e-12), metric
        assert np.isnan(table.at[encoder, "melody_acc_top1_mean_ci_low"])  # no CI logged: none invented
    assert "sim_top1_mean" not in table  # a cosine in each encoder's own space: not a verdict (issue 15)
    assert set(table["map_vs_best"]) <= {"best", "tied", "below"}
    assert (table[[c for c in table if c.endswith("_vs_best")]] == "best").any().all()

    # per-target summary: the mean over targets of each per-target column is the run's aggregate
    summary = pd.read_csv(out / "per_target_summary.csv").set_index(["encoder", "metric"])
    for encoder, run in runs.items():
        for metric in ("map", "mrr", "melody_acc_top1_mean"):
            assert summary.at[(encoder, metric), "mean"] == pytest.approx(run.data.metrics[logged_name(metric)]), metric
            assert summary.at[(encoder, metric), "n"] == 2
        assert summary.at[(encoder, "map"), "min"] <= summary.at[(encoder, "map"), "max"]

    # side by side: each encoder's top-1 reference and similarity, as in its own per_target table
    top1 = pd.read_csv(out / "per_target_top1.csv").set_index("target")
    for encoder, run in runs.items():
        own = client.load_table(run.info.experiment_id, "tables/per_target.json", [run.info.run_id]).set_index("target")
        assert top1[f"{encoder}.top1_reference"].to_dict() == own["top1_reference"].to_dict()
        assert np.allclose(top1.loc[own.index, f"{encoder}.sim_top1"], own["sim_top1"])

    # logged to a new comparison run (no parent given)
    comparison_runs = client.search_runs([runs["mfcc"].info.experiment_id], "tags.`musicbench.comparison` = 'true'")
    assert len(comparison_runs) == 1
    logged = comparison_runs[0]
    assert logged.data.tags["musicbench.comparison.runs"] == f"{runs['mfcc'].info.run_id},{runs['chroma'].info.run_id}"
    artifacts = {a.path for a in client.list_artifacts(logged.info.run_id, "comparison")}
    assert {
        "comparison/comparison.json",
        "comparison/comparison.csv",
        "comparison/comparison.md",
        "comparison/per_target_top1.json",
        "comparison/per_target_summary.json",
        "comparison/figures",
    } <= artifacts
    logged_table = client.load_table(logged.info.experiment_id, "comparison/comparison.json", [logged.info.run_id])
    assert logged_table.set_index("encoder")["map"].to_dict() == pytest.approx(
        {e: r.data.metrics["retrieval/map"] for e, r in runs.items()}
    )

    # the same bare compare again replaces that run: one comparison run per experiment, not one more each time
    ids = f"{runs['mfcc'].info.run_id},{runs['chroma'].info.run_id}"
    again = CliRunner().invoke(main, ["compare", "--runs", ids, "--out", str(tmp_path / "again")])
    assert again.exit_code == 0, again.output
    now = client.search_runs([runs["mfcc"].info.experiment_id], "tags.`musicbench.comparison` = 'true'")
    assert len(now) == 1 and now[0].info.run_id != logged.info.run_id
    assert client.get_run(logged.info.run_id).info.lifecycle_stage == "deleted"


@pytest.mark.slow
def test_compare_experiment_takes_the_latest_run_per_encoder_and_parent_its_children(two_runs, run_on_tiny, tmp_path):
    import pandas as pd

    client, experiment, runs = two_runs
    newest_mfcc = run_on_tiny(experiment)
    result = CliRunner().invoke(main, ["compare", "--experiment", experiment, "--out", str(tmp_path / "e")])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "e" / "comparison.csv", index_col="encoder")
    assert sorted(table.index) == ["chroma", "mfcc"]
    assert table.at["mfcc", "run_id"] == newest_mfcc

    # a parent with two finished children and a failed one (parent links set with the client)
    experiment_id = runs["mfcc"].info.experiment_id
    parent = client.create_run(experiment_id, run_name="suite", tags={"musicbench.suite": "true"})
    for run in runs.values():
        client.set_tag(run.info.run_id, "mlflow.parentRunId", parent.info.run_id)
    failed = client.create_run(
        experiment_id,
        run_name="clap",
        tags={"mlflow.parentRunId": parent.info.run_id, "musicbench.encoder": "clap", "failure_reason": "no weights"},
    )
    client.set_terminated(failed.info.run_id, "FAILED")
    client.set_terminated(parent.info.run_id, "FINISHED")
    result = CliRunner().invoke(main, ["compare", "--parent", parent.info.run_id])
    assert result.exit_code == 0, result.output
    assert "Skipped clap" in result.output and "no weights" in result.output
    assert (tmp_path / "comparison" / parent.info.run_id / "figures" / "metrics_heatmap.png").exists()
    logged = client.get_run(parent.info.run_id)
    assert logged.data.tags["musicbench.comparison.encoders"] == "mfcc,chroma"
    figures = {a.path for a in client.list_artifacts(parent.info.run_id, "comparison/figures")}
    assert figures == {f"comparison/figures/{n}.png" for n in FIGURES}


def test_compare_needs_exactly_one_source():
    result = CliRunner().invoke(main, ["compare", "--parent", "abc", "--runs", "def"])
    assert result.exit_code == 1 and "exactly one of" in result.output
    result = CliRunner().invoke(main, ["compare", "--experiment", "no-such-experiment-xyz"])
    assert result.exit_code == 1 and "not found" in result.output


def _table(rows):
    import pandas as pd

    frame = pd.DataFrame(rows).set_index("encoder")
    return frame


def test_ci_overlap_marks_encoders_indistinguishable_from_the_best():
    from benchmark import compare_stats, compare_table

    table = _table(
        [
            {"encoder": "a", "map": 0.80, "map_ci_low": 0.70, "map_ci_high": 0.90},
            {"encoder": "b", "map": 0.75, "map_ci_low": 0.65, "map_ci_high": 0.85},  # overlaps a's CI
            {"encoder": "c", "map": 0.40, "map_ci_low": 0.30, "map_ci_high": 0.50},  # disjoint
            {"encoder": "d", "map": 0.70, "map_ci_low": np.nan, "map_ci_high": np.nan},
        ]
    )
    assert compare_stats.unpaired_vs_best(table, "map").to_dict() == {
        "a": "best",
        "b": "tied",
        "c": "below",
        "d": "no CI",
    }
    lower = _table(
        [
            {
                "encoder": "a",
                "mean_first_relevant_rank": 1.2,
                "mean_first_relevant_rank_ci_low": 1.0,
                "mean_first_relevant_rank_ci_high": 1.5,
            },
            {
                "encoder": "b",
                "mean_first_relevant_rank": 3.0,
                "mean_first_relevant_rank_ci_low": 2.0,
                "mean_first_relevant_rank_ci_high": 4.0,
            },
        ]
    )
    assert compare_stats.unpaired_vs_best(lower, "mean_first_relevant_rank").to_dict() == {"a": "best", "b": "below"}
    table["map_vs_best"] = compare_stats.unpaired_vs_best(table, "map")
    text = compare_table.markdown_table(table, ["map"])
    assert "| a | 0.800 [0.700, 0.900] ★ |" in text
    assert "| b | 0.750 [0.650, 0.850] ≈ |" in text
    assert "| c | 0.400 [0.300, 0.500] |" in text


def test_heatmap_colours_each_metric_by_rank_and_annotates_raw_values():
    from benchmark import figures_compare

    table = _table([{"encoder": "a", "map": 0.2, "mrr": 0.5}, {"encoder": "b", "map": 0.6, "mrr": 0.5}])
    figure = figures_compare.metrics_heatmap(table, ["map", "mrr"])
    ax = figure.axes[0]
    data = ax.images[0].get_array()
    assert data[0, 0] == 0.0 and data[1, 0] == 1.0  # worst and best of the column
    assert data[0, 1] == data[1, 1] == 1.0  # a constant column: all equal best
    assert {t.get_text() for t in ax.texts} == {"0.200", "0.600", "0.500"}
    figure.clf()
    ranks = _table(
        [
            {"encoder": "a", "mean_first_relevant_rank": 1.0, "n_failed": 0},
            {"encoder": "b", "mean_first_relevant_rank": 3.0, "n_failed": 0},
        ]
    )
    data = (
        figures_compare.metrics_heatmap(ranks, ["mean_first_relevant_rank", "n_failed"]).axes[0].images[0].get_array()
    )
    assert data[0, 0] == 1.0 and data[1, 0] == 0.0  # lower is better: the lowest rank is the best colour
    assert data[0, 1] == data[1, 1] == 1.0
