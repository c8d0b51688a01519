"""Exit statuses (issue 13, item 16), one test per status of the README's table:

0 done · 1 a run / an encoder failed · 2 refused before any work · 3 regression · 130 Ctrl-C · 143 SIGTERM.

The interrupted runs are real ``musicbench`` processes with the test-only ``slow-mfcc`` encoder (slow_cli.py), so
that the signal lands mid-embedding deterministically; the others run in-process.
"""

from __future__ import annotations

import signal
import subprocess
import time
import uuid

import pytest
import soundfile as sf
from reliability_helpers import (
    SR,
    cache_entries,
    cli_command,
    invoke,
    runs,
    subprocess_env,
    tone,
    tone_folder,
    wait_for,
)

from benchmark.interrupts import EXIT_INTERRUPTED, EXIT_TERMINATED

START_TIMEOUT = 90  # seconds for a child to import and embed its first files (loaded machines)


@pytest.fixture(scope="module")
def songs(tmp_path_factory):
    root = tmp_path_factory.mktemp("exit-codes")
    tone_folder(root / "refs", 3, 0.8)
    (root / "targets").mkdir()
    sf.write(root / "targets" / "q.wav", tone(190.0, 0.8, noise=0.05, seed=5), SR)
    return root


def _args(songs, experiment: str, *more: str) -> list[str]:
    return [
        "--refs",
        str(songs / "refs"),
        "--targets",
        str(songs / "targets"),
        "--cache-dir",
        str(songs / "cache"),
        "--experiment",
        experiment,
        "--metrics",
        "none",
        "--workers",
        "1",
        "--no-progress",
        *more,
    ]


def test_0_a_finished_run(songs):
    result = invoke("run", "--encoder", "mfcc", *_args(songs, "exit-0"))
    assert result.exit_code == 0, result.output
    assert [r.info.status for r in runs("exit-0")] == ["FINISHED"]


def test_1_a_run_that_ends_failed(songs):
    result = invoke("run", "--encoder", "no-such-encoder", *_args(songs, "exit-1-run"))
    assert result.exit_code == 1, result.output
    assert "unknown encoder 'no-such-encoder'" in result.output and "FAILED]" in result.output
    assert [r.info.status for r in runs("exit-1-run")] == ["FAILED"]


def test_1_a_suite_with_a_failed_encoder(songs):
    result = invoke("suite", "--encoders", "mfcc,no-such-encoder", *_args(songs, "exit-1-suite"))
    assert result.exit_code == 1, result.output
    statuses = sorted(r.info.status for r in runs("exit-1-suite"))
    assert statuses == ["FAILED", "FINISHED", "FINISHED"]  # the failed child, the finished child and the parent


@pytest.mark.parametrize(
    "args",
    [
        ["run", "--encoder", "mfcc", "--window", "nan"],  # an option value
        ["run", "--encoder", "mfcc", "--no-such-option"],  # click's own usage errors, as one line too
        ["run", "--encoder", "mfcc", "--weights", "/nonexistent"],  # weights for a weight-free encoder
        ["suite", "--encoders", "mfcc", "--device", "cuda"],  # no CUDA here (the check asks torch)
        ["run", "--encoder", "mfcc", "--refs", "/nonexistent/refs"],  # the dataset
        ["no-such-command"],
    ],
    ids=["option", "usage", "weights", "device", "dataset", "command"],
)
def test_2_refused_before_any_work(songs, args):
    import torch

    if "cuda" in args and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    experiment = f"exit-2-{uuid.uuid4().hex[:6]}"
    full = [*args, *_args(songs, experiment)] if args[0] in ("run", "suite") else args
    if "--refs" in args:  # the case's own --refs wins (given last)
        full = [*args[:3], *_args(songs, experiment), *args[3:]]
    result = invoke(*full)
    assert result.exit_code == 2, result.output
    assert len(result.output.strip().splitlines()) == 1 and result.output.startswith("Error: "), result.output
    assert runs(experiment) == []


def test_2_an_unusable_store(songs, monkeypatch):
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    monkeypatch.setenv("MUSICBENCH_STORE_TIMEOUT", "2")
    previous = mlflow.get_tracking_uri()
    try:
        for args in (
            ["run", "--encoder", "mfcc", *_args(songs, "exit-2-store")],
            ["regress", "--baseline", "previous"],
        ):
            result = invoke(*args)
            assert result.exit_code == 2, result.output
            assert "127.0.0.1:9" in result.output and len(result.output.strip().splitlines()) == 1
    finally:
        mlflow.set_tracking_uri(previous)  # the store the other tests use (MLflow keeps the URI it was given)


def _make_run(client, experiment_id: str, encoder: str, metrics: dict[str, float], start: int) -> str:
    from mlflow.entities import Metric, Param

    run = client.create_run(experiment_id, start_time=start, run_name=encoder, tags={"musicbench.encoder": encoder})
    client.log_batch(
        run.info.run_id, metrics=[Metric(k, v, start, 0) for k, v in metrics.items()], params=[Param("k", "5")]
    )
    client.set_terminated(run.info.run_id, "FINISHED", end_time=start + 500)
    return run.info.run_id


def test_3_a_regression_and_2_when_nothing_to_check():
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    name = f"exit-3-{uuid.uuid4().hex[:6]}"
    experiment_id = client.create_experiment(name)
    result = invoke("regress", "--baseline", "previous", "--experiment", name)
    assert result.exit_code == 2, result.output  # no runs: nothing could be checked
    now = int(time.time() * 1000)
    baseline = _make_run(client, experiment_id, "mfcc", {"map": 0.8, "mrr": 0.8}, now)
    _make_run(client, experiment_id, "mfcc", {"map": 0.8, "mrr": 0.8}, now + 1000)
    result = invoke("regress", "--baseline", baseline, "--experiment", name)
    assert result.exit_code == 0, result.output
    _make_run(client, experiment_id, "mfcc", {"map": 0.5, "mrr": 0.8}, now + 2000)
    result = invoke("regress", "--baseline", baseline, "--experiment", name)
    assert result.exit_code == 3, result.output  # was 1: the status of any failure (even a crash)
    assert "mfcc dropped on map" in result.output


# --- 130 / 143: interrupted --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def slow_songs(tmp_path_factory):
    root = tmp_path_factory.mktemp("interrupted")
    tone_folder(root / "refs", 30, 0.5)
    (root / "targets").mkdir()
    sf.write(root / "targets" / "q.wav", tone(200.0, 0.5, noise=0.05, seed=3), SR)
    return root


@pytest.mark.slow
@pytest.mark.parametrize("command", ["run", "suite"])
@pytest.mark.parametrize(
    ("signum", "status"),
    [(signal.SIGINT, EXIT_INTERRUPTED), (signal.SIGTERM, EXIT_TERMINATED)],
    ids=["SIGINT-130", "SIGTERM-143"],
)
def test_130_143_interrupted_run_or_suite(slow_songs, tmp_path, command, signum, status):
    """A suite interrupted used to exit 1, like "an encoder failed"; a run too (click's "Aborted!")."""
    experiment = f"exit-{status}-{command}"
    cache = tmp_path / "cache"
    encoder = ["--encoder", "slow-mfcc"] if command == "run" else ["--encoders", "slow-mfcc,mfcc"]
    args = [
        command,
        *encoder,
        "--refs",
        str(slow_songs / "refs"),
        "--targets",
        str(slow_songs / "targets"),
        "--cache-dir",
        str(cache),
        "--experiment",
        experiment,
        "--batch-size",
        "1",
        "--metrics",
        "none",
        "--no-progress",
    ]
    process = subprocess.Popen(
        cli_command(*args, slow=True),
        env=subprocess_env(MUSICBENCH_TEST_SLOW_SECONDS="0.1"),
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(lambda: len(cache_entries(cache)) >= 2, START_TIMEOUT, process=process)
        process.send_signal(signum)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == status, err
    assert "Traceback" not in out + err, err
    assert f"exit status {status}" in err
    statuses = {r.info.status for r in runs(experiment)}
    assert statuses == {"KILLED"}, statuses  # the run (or the suite's parent and its child), never FINISHED
