"""musicbench as an MLflow user meets it (issue 15): `mlflow run` runs that compare and regress find, one rule for the
experiment, failed runs that say why on every path, clean params, system metrics that never leave a run RUNNING."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import dataset_args
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent


def _client(uri: str | None = None):
    from mlflow.tracking import MlflowClient

    return MlflowClient(uri or os.environ["MLFLOW_TRACKING_URI"])


def _mlflow_run(args: list[str], env: dict, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    mlflow = shutil.which("mlflow") or str(Path(sys.executable).parent / "mlflow")
    return subprocess.run(
        [mlflow, "run", str(ROOT), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def _env(tmp_path: Path, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_EXPERIMENT") and k != "MLFLOW_RUN_ID"}
    env.update(
        MLFLOW_TRACKING_URI="sqlite:///" + str(tmp_path / "mlruns" / "mlflow.db"),
        MUSICBENCH_CACHE=str(tmp_path / "cache"),
        # the MLproject's command runs `python`: this interpreter's (the venv's), as `make mlflow-demo` arranges
        PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        **extra,
    )
    return env


# --- one rule for the experiment ----------------------------------------------------------------------------------


def test_experiment_rule(monkeypatch):
    from benchmark.store import resolve_experiment

    for name in ("MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID", "MLFLOW_RUN_ID"):
        monkeypatch.delenv(name, raising=False)
    assert resolve_experiment(None) == ("musicbench", "default")
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "from-env")
    assert resolve_experiment(None) == ("from-env", "MLFLOW_EXPERIMENT_NAME")
    assert resolve_experiment("given") == ("given", "--experiment")
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME")
    import mlflow

    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    experiment_id = mlflow.create_experiment("by-id-rule")
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", experiment_id)
    assert resolve_experiment(None) == ("by-id-rule", "MLFLOW_EXPERIMENT_ID")
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", "987654321")
    with pytest.raises(ValueError, match="987654321"):
        resolve_experiment(None)


@pytest.mark.slow
def test_run_honours_mlflow_experiment_name(tiny_dataset, monkeypatch):
    from benchmark.cli import main

    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "env-named-experiment")
    result = CliRunner().invoke(main, ["run", "--encoder", "mfcc", *dataset_args(tiny_dataset, tiny_dataset["root"])])
    assert result.exit_code == 0, result.output
    run_id = result.output.split("MLflow run ")[1].split()[0]
    client = _client()
    run = client.get_run(run_id)
    assert client.get_experiment(run.info.experiment_id).name == "env-named-experiment"
    assert run.info.run_name == "mfcc"
    # params: no literal '', no resolved.* duplicates, no machine-specific cache_dir (a path.* tag instead)
    params = run.data.params
    assert "''" not in params.values() and "" not in params.values()
    assert not [k for k in params if k.startswith("resolved.")] and "cache_dir" not in params
    assert run.data.tags["path.cache_dir"] == str(Path(tiny_dataset["root"]).resolve())
    assert params["weights"] == "default" and params["scenario"] == "none" and params["allow_download"] == "false"


# --- mlflow run, twice, then regress; a missing-weights encoder --------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_mlflow_run_twice_then_regress_previous(tiny_dataset, tmp_path, no_weights):
    data = tiny_dataset
    env = _env(tmp_path)
    params = [
        "-P",
        f"refs={data['refs']}",
        "-P",
        f"targets={data['targets']}",
        "-P",
        f"ground_truth={data['ground_truth']}",
    ]
    run_ids = []
    for _ in range(2):
        done = _mlflow_run(
            ["-P", "encoder=mfcc", "-P", "metrics=none", *params, "--env-manager", "local"], env, tmp_path
        )
        assert done.returncode == 0, done.stderr[-3000:]
        run_ids.append(done.stderr.split("in run with ID '")[1].split("'")[0])
    regress = subprocess.run(
        [sys.executable, "-m", "benchmark.cli", "regress", "--baseline", "previous"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert regress.returncode == 0, regress.stdout + regress.stderr
    assert run_ids[0] in regress.stdout and run_ids[1] in regress.stdout
    client = _client(env["MLFLOW_TRACKING_URI"])
    for run_id in run_ids:
        run = client.get_run(run_id)
        assert run.info.run_name == "mfcc" and run.data.tags["musicbench.encoder"] == "mfcc"
        assert "''" not in run.data.params.values()
        assert not [k for k in run.data.params if k.startswith("resolved.") or k == "cache_dir"]
    assert client.get_run(run_ids[1]).data.tags["regress.verdict"] == "pass"

    # an encoder without its weights: FAILED, with why, the encoder tag and the MLproject's allow_download parameter
    failed = _mlflow_run(["-P", "encoder=clap", "-P", "metrics=none", *params, "--env-manager", "local"], env, tmp_path)
    assert failed.returncode != 0
    run = client.get_run(failed.stderr.split("in run with ID '")[1].split("'")[0])
    assert run.info.status == "FAILED" and run.info.run_name == "clap"
    assert "not found" in run.data.tags["failure_reason"] and run.data.tags["musicbench.encoder"] == "clap"
    assert run.data.params["allow_download"] == "false"

    # refused before the run started (a bad option value): the reason is on MLflow's run too
    refused = _mlflow_run(["-P", "encoder=mfcc", "-P", "window=0", *params, "--env-manager", "local"], env, tmp_path)
    assert refused.returncode != 0
    run = client.get_run(refused.stderr.split("in run with ID '")[1].split("'")[0])
    assert run.info.status == "FAILED" and "--window 0" in run.data.tags["failure_reason"]
    assert run.data.tags["musicbench.encoder"] == "mfcc"


@pytest.mark.slow
@pytest.mark.timeout(1200)
@pytest.mark.skipif(shutil.which("pyenv") is None and not Path.home().joinpath(".pyenv").exists(), reason="no pyenv")
def test_bare_mlflow_run_builds_python_env(tmp_path, demo_set):
    """The card's command as written: MLflow builds python_env.yaml's virtualenv (pip from the package registry;
    ~2 min the first time, then reused) and runs the demo set. The demo set is rendered by the development
    environment (tinysoundfont, installed with --no-deps by make: pip cannot express that in python_env.yaml); the
    virtualenv finds it in $MUSICBENCH_HOME, as a user's finds the one `make demo` built."""
    home = tmp_path / "home"
    (home / "demo").mkdir(parents=True)
    (home / "demo" / "v1").symlink_to(Path(demo_set.root).resolve(), target_is_directory=True)
    env = _env(tmp_path, MUSICBENCH_HOME=str(home))
    env["PATH"] = f"{Path.home() / '.pyenv' / 'bin'}:{env.get('PATH', '')}"
    done = _mlflow_run(["-P", "encoder=mfcc", "-P", "metrics=none"], env, tmp_path, timeout=1100)
    assert done.returncode == 0, done.stderr[-3000:]
    run = _client(env["MLFLOW_TRACKING_URI"]).get_run(done.stderr.split("in run with ID '")[1].split("'")[0])
    assert run.info.status == "FINISHED" and "retrieval/map" in run.data.metrics
    assert run.data.tags.get("mlflow.project.env") == "virtualenv"


# --- system metrics ----------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_system_metrics_run_finishes_with_system_metrics(tiny_dataset, monkeypatch):
    from benchmark.cli import main

    # MLflow logs a sample only after a whole interval: a run shorter than one logs none (this one takes ≈ 0.2 s)
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.01")
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING", "1")
    monkeypatch.delenv("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", raising=False)
    args = ["run", "--encoder", "mfcc", *dataset_args(tiny_dataset, tiny_dataset["root"]), "--experiment", "sysmet"]
    result = CliRunner().invoke(main, [*args, "--system-metrics"])
    os.environ.pop("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", None)  # set by the switch for the process's runs
    assert result.exit_code == 0, result.output
    run = _client().get_run(result.output.split("MLflow run ")[1].split()[0])
    assert run.info.status == "FINISHED" and run.data.params["system_metrics"] == "true"
    assert any(name.startswith("system/") for name in run.data.metrics), sorted(run.data.metrics)


def test_failing_system_metrics_monitor_ends_the_run_failed(tmp_path, monkeypatch):
    from mlflow.system_metrics import system_metrics_monitor

    from benchmark import tracking

    def broken(self):
        raise RuntimeError("monitor broke")

    monkeypatch.setattr(system_metrics_monitor.SystemMetricsMonitor, "start", broken)
    monkeypatch.setenv("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "true")
    with pytest.raises(RuntimeError, match="monitor broke"):
        with tracking.started_run("sysmet-broken", "broken"):
            pass
    client = _client()
    experiment = client.get_experiment_by_name("sysmet-broken")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FAILED" and "monitor broke" in run.data.tags["failure_reason"]

    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "psutil" else real(name, *a))
    with pytest.raises(RuntimeError, match="psutil"):
        with tracking.started_run("sysmet-broken", "no-psutil"):
            pass
    runs = client.search_runs([experiment.experiment_id], "attributes.run_name = 'no-psutil'")
    assert [r.info.status for r in runs] == ["FAILED"]


# --- figures honest at any size -----------------------------------------------------------------------------------


def test_run_figures_of_3000_targets_are_bounded_and_fast(tmp_path):
    import time

    from PIL import Image

    from benchmark import figures

    rng = np.random.default_rng(0)
    targets = [f"collection/pieces/bach_bwv{i:04d}_version_{i % 7}.wav" for i in range(3000)]
    refs = [f"collection/refs/bach_bwv{i:04d}.wav" for i in range(400)]
    similarity = rng.uniform(-0.1, 1.0, (len(targets), len(refs))).astype(np.float32)
    top = similarity.argmax(axis=1)
    topk = {"target": targets, "rank": [1] * len(targets), "reference": [refs[j] for j in top]}
    per_target = {
        "target": targets,
        "sim_top1": similarity.max(axis=1).tolist(),
        "hit_rate_at_1": [float(i % 3 == 0) for i in range(len(targets))],
    }
    started = time.process_time()  # this process's CPU time: the work, not how busy the shared cores are
    drawn = figures.save_run_figures(str(tmp_path), similarity, targets, refs, topk, per_target, "mfcc")
    seconds = time.process_time() - started
    assert sorted(drawn) == sorted(figures.run_figure_names(similarity))
    assert seconds < 5, f"{seconds:.1f} s"
    bound = (figures.MAX_WIDTH * 100, figures.MAX_HEIGHT * 100)
    for name in drawn:
        with Image.open(tmp_path / name) as image:
            assert image.size[0] <= bound[0] and image.size[1] <= bound[1], (name, image.size)


def test_labels_keep_the_distinguishing_part():
    from benchmark.figures import short_labels

    names = [
        "library/bach/bwv66.6_chorale_version_piano.wav",
        "library/bach/bwv66.6_chorale_version_organ.wav",
        "library/mozart/k331_rondo_alla_turca_strings.wav",
    ]
    labels = short_labels(names, 24)
    assert len(set(labels)) == 3 and all(len(label) <= 24 for label in labels)
    assert labels[0].startswith("bach/bwv66.6") and labels[0].endswith("piano")  # the piece and the version
    assert not any(label.endswith(".wav") or label.startswith("library") for label in labels)


def test_heatmap_colours_by_rank_marks_ties_and_never_ranks_within_encoder_numbers():
    import pandas as pd

    from benchmark import figures_compare

    table = pd.DataFrame(
        {
            "map": [0.500, 0.444, 0.100],
            "map_vs_best": ["best", "tied", "below"],
            "sim_top1_mean": [0.9, 0.7, 0.99],
            "sim_top1_mean_vs_best": ["", "", ""],
        },
        index=["a", "b", "c"],
    )
    figure = figures_compare.metrics_heatmap(table, ["map", "sim_top1_mean"])
    ax = figure.axes[0]
    data = ax.images[0].get_array()
    assert list(data[:, 0]) == [1.0, 0.5, 0.0]  # by rank: 0.500 vs 0.444 is one step, not the whole range
    assert np.ma.getmaskarray(data)[:, 1].all()  # sim_top1_mean: not ranked (grey)
    texts = {t.get_text() for t in ax.texts}
    assert {"0.500 ★", "0.444 ≈", "0.100", "0.900"} <= texts


def test_sim_top1_mean_is_never_a_verdict():
    from benchmark.measures import headline_metrics, measure, ranked_across_encoders

    assert "sim_top1_mean" not in headline_metrics([5])
    assert not ranked_across_encoders("sim_top1_mean") and ranked_across_encoders("map")
    assert "within an encoder" in measure("sim_top1_mean").description


# --- progress that suits where it runs -----------------------------------------------------------------------------


def test_progress_outside_a_terminal_is_lines_per_tenth_with_counts_rate_and_duration(capsys, monkeypatch):
    from benchmark import progress

    monkeypatch.delenv("MUSICBENCH_PROGRESS", raising=False)
    bar = progress.bar(total=50, desc="embed references (mfcc)", unit="file", initial=5)
    assert isinstance(bar, progress.LineProgress)  # pytest's captured stderr is no terminal
    for _ in range(45):
        bar.update()
    bar.close()
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "embed references (mfcc): 50 files (5 already done)"
    steps = [line for line in lines if "%" in line]
    assert 3 <= len(steps) <= 10 and all("/50 files" in line and "file/s" in line for line in steps)
    assert lines[-1].startswith("embed references (mfcc): done, 50/50 files in ") and " s" in lines[-1]
    assert "\r" not in "".join(lines)
    progress.stage_done("retrieve", 0.25, detail="top-5 of 8 references")
    assert capsys.readouterr().err == "retrieve: done in 0.2 s (top-5 of 8 references)\n"
    silent = progress.bar(total=3, desc="x", disable=True)
    silent.update()
    silent.close()
    assert capsys.readouterr().err == ""


def test_mlproject_forces_no_silence_and_declares_typed_parameters():
    import yaml

    project = yaml.safe_load((ROOT / "MLproject").read_text())
    for name in ("main", "suite"):
        entry = project["entry_points"][name]
        assert "--no-progress" not in entry["command"]
        parameters = entry["parameters"]
        assert {"allow_download", "system_metrics", "weights"} <= set(parameters)
        assert parameters["query_seconds"]["type"] == "float"
        assert all(str(p.get("default")) != "" for p in parameters.values())  # '' would be logged as the literal ''
    assert project["entry_points"]["main"]["parameters"]["weights"]["type"] == "path"
    assert project["entry_points"]["regress"]["parameters"]["tolerance"]["type"] == "float"


# --- metric sections ------------------------------------------------------------------------------------------------


def test_one_mapping_of_names_to_sections_and_back():
    from benchmark.measures import SECTIONS, logged_name, plain_name

    expected = {
        "map": "retrieval/map",
        "map_ci_low": "retrieval/map_ci_low",
        "recall_at_10": "retrieval/recall_at_10",
        "melody_acc_top1_mean": "pair/melody_acc_top1_mean",
        "aes_pq_delta_top1_mean": "aesthetics/aes_pq_delta_top1_mean",
        "sim_top1_mean": "similarity/sim_top1_mean",
        "embed_seconds": "timing/embed_seconds",
        "n_failed": "count/n_failed",
        "n_pairs_scored.melody_acc_top1": "count/n_pairs_scored.melody_acc_top1",
        "map.pitch_up_1": "robustness/map.pitch_up_1",
        "index_recall_at_10": "index/index_recall_at_10",
        "suite_children_failed": "count/suite_children_failed",
    }
    for name, logged in expected.items():
        assert logged_name(name) == logged and plain_name(logged) == name and plain_name(name) == name
        assert logged.split("/")[0] in SECTIONS


def test_regress_reads_a_baseline_logged_under_the_old_names():
    import time
    import uuid

    from mlflow.entities import Metric, Param

    from benchmark import regress as regress_module

    client = _client()
    name = f"old-names-{uuid.uuid4().hex[:8]}"
    experiment_id = client.create_experiment(name)
    now = int(time.time() * 1000)
    for offset, metrics in ((0, {"map": 0.8, "mrr": 0.9}), (1000, {"retrieval/map": 0.6, "retrieval/mrr": 0.9})):
        run = client.create_run(experiment_id, start_time=now + offset, tags={"musicbench.encoder": "mfcc"})
        client.log_batch(
            run.info.run_id,
            metrics=[Metric(k, v, now, 0) for k, v in metrics.items()],
            params=[Param("k", "5")],
        )
        client.set_terminated(run.info.run_id, "FINISHED", end_time=now + offset + 500)
    report = regress_module.regress("previous", 0.02, "absolute", name)
    checks = {c.metric: c for c in report.pairs[0].checks}
    assert checks["map"].baseline == 0.8 and checks["map"].candidate == 0.6 and checks["map"].verdict == "FAIL"
    assert checks["mrr"].verdict == "pass"
    assert regress_module.regress("previous", 0.02, "absolute", name, ["retrieval/map"]).failed
