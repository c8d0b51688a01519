"""The suite's runs, a metric and a logged figure, seen in the real MLflow UI through headless Chromium.

A small suite (mfcc, chroma and a clap child that fails for missing weights) is logged to a fresh sqlite store;
``mlflow server`` serves it on a free port (subprocess, own process group, killed in a finalizer); Chromium's
own ``--headless --dump-dom --screenshot`` renders three pages of the React app:

- the experiment's runs as a new user opens them (no saved view, no view key: ``#/experiments/<id>/runs``, where the
  UI's "Model training" mode leads): every run name, the suite parent named after what it compares;
- the runs' charts, grouped in the metric sections (the parent's ``count/…``; a child's ``retrieval/…``, ``pair/…``,
  ``timing/…`` when it is expanded);
- a child run's page: its name and ``retrieval/map`` with the exact logged value;
- the suite parent's page: its description (``mlflow.note.content``) is the comparison table;
- the parent run's artifact view of ``comparison/figures/metrics_heatmap.png``: the image element the UI renders.

The same server's REST API confirms the runs' statuses and that the figure is served as a PNG. Screenshots go
to the test's temp folder, or to ``docs/`` with ``MUSICBENCH_UPDATE_DOCS=1`` (how ``docs/mlflow_ui_*.png`` were
made). Skipped when Chromium is not installed (``apt-get install -y chromium``).
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from cli_helpers import dataset_args
from click.testing import CliRunner

from benchmark.cli import main

pytestmark = pytest.mark.slow  # a suite, an MLflow server and three Chromium renders
DOCS = Path(__file__).resolve().parent.parent / "docs"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--virtual-time-budget=15000",
)
MAX_SCREENSHOT_BYTES = 500_000
PARENT = "mfcc vs chroma vs clap"  # the suite parent is named after what it compares
SERVER_READY_SECONDS = 60


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("Chromium not installed (Debian: apt-get install -y chromium); the MLflow UI check needs it")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def suite_store(tiny_dataset, tmp_path, monkeypatch):
    """A fresh sqlite store (artifacts under tmp_path/mlruns) holding one suite run."""
    import mlflow
    from mlflow.tracking import MlflowClient

    previous_uri = mlflow.get_tracking_uri()
    monkeypatch.chdir(tmp_path)
    uri = "sqlite:///" + str(tmp_path / "ui-store" / "mlflow.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    result = CliRunner().invoke(
        main,
        [
            "suite",
            "--encoders",
            "mfcc,chroma,clap",
            "--weights",
            "clap=/nonexistent/clap.pt",
            *dataset_args(tiny_dataset, tmp_path / "cache"),
            "--experiment",
            "ui-suite",
        ],
    )
    assert result.exit_code == 1, result.output  # clap fails for its missing weights, the others finish
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("ui-suite")
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    yield uri, client, experiment, runs
    mlflow.set_tracking_uri(previous_uri)


@pytest.fixture
def mlflow_server(suite_store, tmp_path):
    uri = suite_store[0]
    port = _free_port()
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    command = [
        str(mlflow_cli) if mlflow_cli.exists() else "mlflow",
        "server",
        "--backend-store-uri",
        uri,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    log_path = tmp_path / "mlflow-server.log"
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no background job workers needed
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)

    def stop():
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)  # the server and its uvicorn worker: our own process group
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)

    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_READY_SECONDS
        while True:
            if process.poll() is not None:
                pytest.fail(f"mlflow server exited ({process.returncode}):\n{log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(base + "/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"mlflow server not ready after {SERVER_READY_SECONDS} s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        yield base
    finally:
        stop()


def _browse(chromium: str, url: str, screenshot: Path, profile: Path, size: str = "1600,900") -> str:
    """Render ``url`` headless; returns the DOM after the virtual-time budget and writes a PNG screenshot."""
    command = [
        chromium,
        *CHROMIUM_FLAGS,
        f"--user-data-dir={profile}",
        f"--window-size={size}",
        "--dump-dom",
        f"--screenshot={screenshot}",
        url,
    ]
    done = subprocess.run(command, capture_output=True, timeout=120, cwd=screenshot.parent)
    dom = done.stdout.decode("utf-8", "replace")
    assert done.returncode == 0 and dom, f"chromium failed ({done.returncode}): {done.stderr.decode()[-2000:]}"
    assert screenshot.exists() and 0 < screenshot.stat().st_size < MAX_SCREENSHOT_BYTES, screenshot
    return dom


def _api(base: str, path: str, body: dict | None = None) -> bytes:
    request = urllib.request.Request(
        base + path,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.read()


def test_suite_runs_metric_and_figure_show_in_the_mlflow_ui(suite_store, mlflow_server, tmp_path):
    chromium = _chromium()
    _, client, experiment, runs = suite_store
    assert {PARENT, "mfcc", "chroma", "clap"} == set(runs)
    parent, child = runs[PARENT], runs["mfcc"]
    shots = DOCS if os.environ.get("MUSICBENCH_UPDATE_DOCS") == "1" else tmp_path
    shots.mkdir(exist_ok=True)
    profile = tmp_path / "chromium-profile"
    experiment_url = f"{mlflow_server}/#/experiments/{experiment.experiment_id}"
    # as a new user opens it: no saved view; the experiment type musicbench set when it created the experiment
    assert experiment.tags.get("mlflow.experimentKind") == "custom_model_development"

    # 1. the experiment's runs as a new user opens them (the README's link; the UI's own "Model training" → Runs):
    # the suite parent, named after what it compares (its children are nested under it, collapsed)
    dom = _browse(chromium, f"{experiment_url}/runs", shots / "mlflow_ui_runs.png", profile)
    assert f">{PARENT}<" in dom, f"run {PARENT} not in the runs table"

    # 2. the charts of the runs shown (the parent; its children when expanded): grouped in their metric sections
    dom = _browse(
        chromium, f"{experiment_url}/runs?compareRunsMode=CHART", shots / "mlflow_ui_charts.png", profile, "1600,1200"
    )
    assert ">count<" in dom and "count/suite_children_finished" in dom, "the count section is not shown"

    # 3. a child run's page: its name and a sectioned metric with the exact logged value
    dom = _browse(
        chromium, f"{experiment_url}/runs/{child.info.run_id}", shots / "mlflow_ui_run.png", profile, size="1600,1700"
    )
    value = child.data.metrics["retrieval/map"]
    assert ">mfcc<" in dom and "retrieval/map" in dom
    assert repr(value) in dom or f"{value:.6g}" in dom, f"retrieval/map={value} not shown"

    # 4. the suite parent's page: its description is the comparison table
    dom = _browse(
        chromium,
        f"{experiment_url}/runs/{parent.info.run_id}",
        shots / "mlflow_ui_parent.png",
        profile,
        size="1600,1700",
    )
    assert "vs_best" not in dom and "★" in dom and "hit_rate_at_1" in dom, "the comparison table is not shown"

    # 5. the parent's artifact view renders the logged comparison heatmap as an image
    figure = "comparison/figures/metrics_heatmap.png"
    dom = _browse(
        chromium,
        f"{experiment_url}/runs/{parent.info.run_id}/artifacts/{figure}",
        shots / "mlflow_ui_figure.png",
        profile,
    )
    assert f'alt="{figure}"' in dom and 'src="blob:' in dom, "the figure is not rendered as an image"

    # the same server's REST API: the runs and their statuses, and the figure served as a PNG
    found = json.loads(
        _api(mlflow_server, "/api/2.0/mlflow/runs/search", {"experiment_ids": [experiment.experiment_id]})
    )["runs"]
    statuses = {r["info"]["run_name"]: r["info"]["status"] for r in found}
    assert statuses == {PARENT: "FINISHED", "mfcc": "FINISHED", "chroma": "FINISHED", "clap": "FAILED"}
    query = urllib.parse.urlencode({"path": figure, "run_uuid": parent.info.run_id})
    png = _api(mlflow_server, f"/get-artifact?{query}")
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
