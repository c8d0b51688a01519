"""`musicbench suite`: one parent run, one nested child per encoder, failures confined to their child."""

import uuid

import pytest
from cli_helpers import dataset_args
from click.testing import CliRunner

from benchmark.cli import main


@pytest.fixture
def experiment():
    return f"suite-{uuid.uuid4().hex[:8]}"


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default ./comparison/<id> output lands in the test's folder


def _suite(tiny_dataset, experiment, encoders, *extra):
    args = [
        "suite",
        "--encoders",
        encoders,
        *dataset_args(tiny_dataset, tiny_dataset["root"] / "cache"),
        "--experiment",
        experiment,
        *extra,
    ]
    return CliRunner().invoke(main, args)


def _runs(experiment):
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    parents = [r for r in runs if r.data.tags.get("musicbench.suite") == "true"]
    assert len(parents) == 1
    children = {r.data.tags["musicbench.encoder"]: r for r in runs if r is not parents[0]}
    return client, parents[0], children


@pytest.mark.slow
def test_suite_runs_each_encoder_as_a_child_and_compares(tiny_dataset, experiment, tmp_path):
    result = _suite(tiny_dataset, experiment, "mfcc,chroma")
    assert result.exit_code == 0, result.output
    client, parent, children = _runs(experiment)
    assert parent.info.status == "FINISHED"
    assert set(children) == {"mfcc", "chroma"}
    for name, child in children.items():
        assert child.info.status == "FINISHED"
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.info.run_name == name
        assert "retrieval/map" in child.data.metrics
        assert parent.data.tags[f"musicbench.suite.child.{name}"] == child.info.run_id
    tags = parent.data.tags
    assert tags["musicbench.suite.encoders"] == "mfcc,chroma"
    assert tags["musicbench.suite.finished"] == "mfcc,chroma" and tags["musicbench.suite.failed"] == "none"
    assert (
        parent.data.metrics["count/suite_children_finished"] == 2
        and parent.data.metrics["count/suite_children_failed"] == 0
    )
    assert parent.data.params["encoders"] == "mfcc,chroma"
    table = client.load_table(parent.info.experiment_id, "tables/suite_children.json", [parent.info.run_id])
    assert table.set_index("encoder")["status"].to_dict() == {"mfcc": "FINISHED", "chroma": "FINISHED"}
    # the comparison is logged to the parent and written to ./comparison/<parent id>
    logged = {a.path for a in client.list_artifacts(parent.info.run_id, "comparison/figures")}
    assert logged == {
        f"comparison/figures/{n}.png" for n in ("per_target_top1_similarity", "metrics_heatmap", "per_target_summary")
    }
    assert (tmp_path / "comparison" / parent.info.run_id / "comparison.csv").exists()
    assert "| encoder | map |" in result.output
    # the second encoder run reused nothing, but a re-run embeds nothing: the cache is shared
    again = _suite(tiny_dataset, experiment + "-again", "mfcc,chroma")
    assert again.exit_code == 0, again.output
    _, _, children2 = _runs(experiment + "-again")
    assert all(c.data.metrics["count/n_embedded"] == 0 for c in children2.values())


@pytest.mark.slow
def test_encoder_without_weights_fails_only_its_child(tiny_dataset, experiment):
    result = _suite(tiny_dataset, experiment, "mfcc,clap,chroma", "--weights", "clap=/nonexistent/clap.pt")
    assert result.exit_code == 1, result.output
    client, parent, children = _runs(experiment)
    assert children["clap"].info.status == "FAILED"
    assert "/nonexistent/clap.pt" in children["clap"].data.tags["failure_reason"]
    assert children["clap"].data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert children["mfcc"].info.status == children["chroma"].info.status == "FINISHED"
    assert parent.info.status == "FINISHED"  # at least one child finished
    assert parent.data.tags["musicbench.suite.failed"] == "clap"
    assert parent.data.tags["musicbench.suite.finished"] == "mfcc,chroma"
    table = client.load_table(parent.info.experiment_id, "tables/suite_children.json", [parent.info.run_id])
    row = table.set_index("encoder").loc["clap"]
    assert row["status"] == "FAILED" and "nonexistent" in row["failure_reason"]
    assert "clap" in result.output and "Failed" in result.output
    # the comparison covers the finished children only
    assert parent.data.tags["musicbench.comparison.encoders"] == "mfcc,chroma"


@pytest.mark.slow
def test_exception_while_running_fails_only_that_child(tiny_dataset, experiment, monkeypatch):
    from benchmark import pipeline

    real_run = pipeline.run

    def flaky(config, *args, **kwargs):
        if config.encoder == "mfcc":
            raise RuntimeError("boom in mfcc")
        return real_run(config, *args, **kwargs)

    monkeypatch.setattr(pipeline, "run", flaky)
    result = _suite(tiny_dataset, experiment, "mfcc,chroma")
    assert result.exit_code == 1
    _, parent, children = _runs(experiment)
    assert children["mfcc"].info.status == "FAILED"
    assert children["mfcc"].data.tags["failure_reason"] == "RuntimeError: boom in mfcc"
    assert children["chroma"].info.status == "FINISHED"
    assert parent.info.status == "FINISHED"


def test_parent_fails_when_every_encoder_fails(tiny_dataset, experiment):
    result = _suite(tiny_dataset, experiment, "no-such-encoder")
    assert result.exit_code == 1
    assert "every encoder failed" in result.output
    _, parent, children = _runs(experiment)
    assert children["no-such-encoder"].info.status == "FAILED"
    assert "unknown encoder" in children["no-such-encoder"].data.tags["failure_reason"]
    assert parent.info.status == "FAILED"
    assert "every encoder failed" in parent.data.tags["failure_reason"]


def test_help_states_the_exit_status():
    result = CliRunner().invoke(main, ["suite", "--help"])
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "Exit status" in text and "1 when any encoder failed" in text
