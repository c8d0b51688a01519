"""A shared tracking server (MLflow + PostgreSQL), and what every command does when the tracking store is unusable.

With a server (session fixture: a throw-away PostgreSQL cluster and ``mlflow server`` on it with proxied
artifacts, see tracking_server.py; skipped only when PostgreSQL's binaries are not installed):

- ``suite``, ``run``, ``compare``, ``regress`` and ``baseline`` work through ``MLFLOW_TRACKING_URI=http://…``, and
  the artifacts land in the server's ``--artifacts-destination`` (the client never touches that folder);
- two suites started at once into one fresh experiment lose no run, param, metric or artifact.

Without one: the bounded pre-flight (``store.check``) turns a dead server, a server that accepts and never answers,
a corrupt or read-only sqlite store and an empty experiment name into one line and exit status 2, before any
work: no run is started, nothing is embedded, no Python traceback.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_helpers import dataset_args
from click.testing import CliRunner
from tracking_server import HangingServer, MlflowServer, Postgres, free_port, postgres_bin

from benchmark.cli import main

REPO = Path(__file__).resolve().parent.parent
#: metrics whose values differ between two identical runs (timings, cache use)
NOT_COMPARABLE = (
    "_seconds",
    "n_cached",
    "n_embedded",
    "n_hashes_from_index",
    "n_hashes_ahead",
    "embed_audio_seconds_per_second",
)


# --- fixtures --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tracking_server(tmp_path_factory):
    """A PostgreSQL-backed ``mlflow server`` with proxied artifacts; yields it (``.uri``, ``.artifacts``)."""
    if postgres_bin() is None:
        pytest.skip("PostgreSQL is not installed (Debian: apt-get install -y postgresql; .ci/run installs it)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.fail('psycopg is not installed: pip install -e ".[server]" (the Makefile installs it)')
    root = tmp_path_factory.mktemp("tracking-server")
    database = Postgres().start()
    server = MlflowServer(database.uri, root / "artifacts", root / "mlflow-server.log")
    try:
        server.start()
        yield server
    finally:
        server.stop()
        database.stop()


@pytest.fixture
def on_store(monkeypatch, tmp_path):
    """``on_store(uri)``: this test's commands go to ``uri`` and run in ``tmp_path`` (a suite's comparison files go
    to ./comparison/); MLflow's global tracking URI is restored after."""
    import mlflow

    previous = mlflow.get_tracking_uri()
    monkeypatch.chdir(tmp_path)

    def use(uri: str) -> str:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        mlflow.set_tracking_uri(uri)
        return uri

    yield use
    mlflow.set_tracking_uri(previous)


def _invoke(*args: str):
    return CliRunner().invoke(main, list(args))


def _artifact_files(client, run_id: str, path: str | None = None) -> set[str]:
    out = set()
    for entry in client.list_artifacts(run_id, path):
        out |= _artifact_files(client, run_id, entry.path) if entry.is_dir else {entry.path}
    return out


def _comparable(metrics: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if not any(part in k for part in NOT_COMPARABLE)}


def _subprocess_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "benchmark.cli", *args]


def _assert_one_line_refusal(output: str, *expected: str) -> None:
    lines = [line for line in output.splitlines() if line.strip()]
    assert "Traceback" not in output, output
    assert len(lines) == 1 and lines[0].startswith("Error: "), output
    for text in expected:
        assert text in lines[0], output


# --- with a server ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_suite_run_compare_regress_and_baseline_through_the_server(tracking_server, on_store, tiny_dataset, tmp_path):
    from mlflow.tracking import MlflowClient

    on_store(tracking_server.uri)
    args = dataset_args(tiny_dataset, tmp_path / "cache")
    result = _invoke("suite", "--encoders", "mfcc,chroma", "--experiment", "shared", *args)
    assert result.exit_code == 0, result.output
    assert f"in {tracking_server.uri}" in result.output

    client = MlflowClient(tracking_server.uri)
    experiment = client.get_experiment_by_name("shared")
    assert experiment.artifact_location.startswith("mlflow-artifacts:")  # proxied: the client needs no file access
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    assert set(runs) == {"mfcc vs chroma", "mfcc", "chroma"}  # the parent is named after what it compares
    assert {r.info.status for r in runs.values()} == {"FINISHED"}
    for name in ("mfcc", "chroma"):
        run = runs[name]
        assert run.data.tags["musicbench.suite.parent"] == runs["mfcc vs chroma"].info.run_id
        assert run.data.params["encoder"] == name and 0 <= run.data.metrics["retrieval/map"] <= 1
        files = _artifact_files(client, run.info.run_id)
        assert {"tables/topk.csv", "tables/per_target.json", "figures/top1_similarity.png", "config.json"} <= files
        stored = tracking_server.artifacts / experiment.experiment_id / run.info.run_id / "artifacts"
        assert {str(p.relative_to(stored)) for p in stored.rglob("*") if p.is_file()} == files
    assert "comparison/comparison.csv" in _artifact_files(client, runs["mfcc vs chroma"].info.run_id)

    compared = _invoke("compare", "--parent", runs["mfcc vs chroma"].info.run_id, "--out", str(tmp_path / "cmp"))
    assert compared.exit_code == 0, compared.output
    assert "mfcc" in compared.output and "chroma" in compared.output
    assert (tmp_path / "cmp" / "comparison.csv").exists()

    again = _invoke("run", "--encoder", "mfcc", "--experiment", "shared", *args)
    assert again.exit_code == 0, again.output
    regressed = _invoke("regress", "--baseline", "previous", "--experiment", "shared")
    assert regressed.exit_code == 0, regressed.output  # the same data and code: no drop
    assert "no regression" in regressed.output
    latest = MlflowClient(tracking_server.uri).get_run(again.output.split("MLflow run ")[1].split()[0])
    assert latest.data.tags["regress.verdict"] == "pass"
    assert latest.data.tags["regress.baseline"] == runs["mfcc"].info.run_id

    pinned = _invoke("baseline", "pin", runs["chroma"].info.run_id)
    assert pinned.exit_code == 0, pinned.output
    assert client.get_run(runs["chroma"].info.run_id).data.tags["baseline"] == "true"


@pytest.mark.slow
def test_two_concurrent_suites_lose_no_run_param_metric_or_artifact(tracking_server, tiny_dataset, tmp_path):
    from mlflow.tracking import MlflowClient

    env = _subprocess_env(MLFLOW_TRACKING_URI=tracking_server.uri)
    processes = []
    for name in ("suite-a", "suite-b"):  # one fresh experiment: both create it at the same moment
        command = _cli(
            "suite",
            "--encoders",
            "mfcc,chroma",
            "--experiment",
            "concurrent",
            "--run-name",
            name,
            "--out",
            str(tmp_path / name),
            *dataset_args(tiny_dataset, tmp_path / f"cache-{name}"),
        )
        processes.append(
            subprocess.Popen(command, env=env, cwd=tmp_path, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        )
    for process in processes:
        out, err = process.communicate(timeout=400)
        assert process.returncode == 0, out + err

    client = MlflowClient(tracking_server.uri)
    experiment = client.get_experiment_by_name("concurrent")
    found = client.search_runs([experiment.experiment_id])
    assert len(found) == 6 and {r.info.status for r in found} == {"FINISHED"}
    parents = {r.info.run_name: r for r in found if r.info.run_name.startswith("suite-")}
    assert set(parents) == {"suite-a", "suite-b"}
    children = {
        (p, encoder): next(
            r
            for r in found
            if r.data.tags.get("musicbench.suite.parent") == parents[p].info.run_id and r.info.run_name == encoder
        )
        for p in parents
        for encoder in ("mfcc", "chroma")
    }
    for encoder in ("mfcc", "chroma"):
        a, b = children["suite-a", encoder], children["suite-b", encoder]
        for run in (a, b):  # every metric logged once, every artifact where the server keeps it
            assert {"retrieval/map", "retrieval/mrr", "similarity/sim_top1_mean", "count/n_refs"} <= set(
                run.data.metrics
            )
            for key in run.data.metrics:
                assert len(client.get_metric_history(run.info.run_id, key)) == 1, key
        ignored = {"cache_dir"}  # each suite has its own cache folder
        assert {k: v for k, v in a.data.params.items() if k not in ignored} == {
            k: v for k, v in b.data.params.items() if k not in ignored
        }
        assert set(a.data.metrics) == set(b.data.metrics)
        assert _comparable(a.data.metrics) == _comparable(b.data.metrics)
        files_a, files_b = _artifact_files(client, a.info.run_id), _artifact_files(client, b.info.run_id)
        assert files_a == files_b and "tables/topk.csv" in files_a
        for run, files in ((a, files_a), (b, files_b)):
            stored = tracking_server.artifacts / experiment.experiment_id / run.info.run_id / "artifacts"
            assert {str(p.relative_to(stored)) for p in stored.rglob("*") if p.is_file()} == files
    for parent in parents.values():
        assert parent.data.tags["musicbench.suite.finished"] == "mfcc,chroma"
        assert parent.data.metrics["count/suite_children_finished"] == 2
        assert "comparison/comparison.csv" in _artifact_files(client, parent.info.run_id)


# --- without one: the pre-flight ------------------------------------------------------------------------------


@pytest.mark.slow
def test_dead_server_is_one_line_exit_2_quickly_with_nothing_logged(tiny_dataset, tmp_path):
    """A real process (so a traceback on stderr would show): nothing listens on the port."""
    uri = f"http://127.0.0.1:{free_port()}"
    cache = tmp_path / "cache"
    for command in ("run", "suite"):
        extra = ["--encoder", "mfcc"] if command == "run" else ["--encoders", "mfcc,chroma"]
        started = time.monotonic()
        done = subprocess.run(
            _cli(command, *extra, *dataset_args(tiny_dataset, cache)),
            env=_subprocess_env(MLFLOW_TRACKING_URI=uri),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        elapsed = time.monotonic() - started
        assert done.returncode == 2, done.stdout + done.stderr
        _assert_one_line_refusal(done.stderr, f"tracking store {uri}", "connection refused")
        assert done.stdout == ""
        assert elapsed < 20, f"{command} took {elapsed:.1f} s to refuse"
    assert not cache.exists()  # nothing was embedded
    assert not (tmp_path / "mlruns").exists()  # and nothing went to a local store instead


@pytest.mark.slow
def test_hanging_server_gets_the_same_bounded_timeout(tiny_dataset, tmp_path, on_store):
    """A server that accepts the connection and never answers: the default 10 s, then one line (in-process, so the
    figure is the timeout, not Python's start-up); then a real process with a shorter ``MUSICBENCH_STORE_TIMEOUT``."""
    from benchmark.store import DEFAULT_CHECK_TIMEOUT

    with HangingServer() as hanging:
        on_store(hanging.uri)
        started = time.monotonic()
        result = _invoke("run", "--encoder", "mfcc", *dataset_args(tiny_dataset, tmp_path / "cache"))
        elapsed = time.monotonic() - started
        assert result.exit_code == 2, result.output
        _assert_one_line_refusal(
            result.output, f"tracking store {hanging.uri}", f"no answer within {DEFAULT_CHECK_TIMEOUT} s"
        )
        assert DEFAULT_CHECK_TIMEOUT - 1 < elapsed < DEFAULT_CHECK_TIMEOUT + 8, elapsed
        assert hanging.accepted  # it did connect: this is the read timeout, not a refused connection

        started = time.monotonic()
        done = subprocess.run(
            _cli("suite", "--encoders", "mfcc,chroma", *dataset_args(tiny_dataset, tmp_path / "cache")),
            env=_subprocess_env(MLFLOW_TRACKING_URI=hanging.uri, MUSICBENCH_STORE_TIMEOUT="3"),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        elapsed = time.monotonic() - started
    assert done.returncode == 2, done.stdout + done.stderr
    _assert_one_line_refusal(done.stderr, "no answer within 3 s")
    assert elapsed < 25, elapsed
    assert not (tmp_path / "cache").exists()


def test_unreachable_store_refuses_compare_regress_and_baseline(on_store):
    uri = on_store(f"http://127.0.0.1:{free_port()}")
    for args in (
        ("compare",),
        ("compare", "--parent", "0123abcd"),
        ("regress", "--baseline", "previous"),
        ("baseline", "pin", "0123abcd"),
    ):
        result = _invoke(*args)
        assert result.exit_code == 2, (args, result.output)
        _assert_one_line_refusal(result.output, f"tracking store {uri}", "connection refused")


def test_corrupt_sqlite_store_is_one_line(tiny_dataset, tmp_path, on_store):
    database = tmp_path / "store" / "mlflow.db"
    database.parent.mkdir()
    database.write_bytes(b"this is not a database\n" * 100)
    uri = on_store(f"sqlite:///{database}")
    for args in (("run", "--encoder", "mfcc", *dataset_args(tiny_dataset, tmp_path / "cache")), ("compare",)):
        result = _invoke(*args)
        assert result.exit_code == 2, result.output
        _assert_one_line_refusal(result.output, f"tracking store {uri}", "file is not a database")
    assert not (tmp_path / "cache").exists()


def _make_read_only(path: Path) -> None:
    """Read-only for this process: ``chattr +i`` as root (permissions do not stop root), else ``chmod``."""
    if os.geteuid() != 0:
        path.chmod(0o555 if path.is_dir() else 0o444)
        return
    chattr = shutil.which("chattr")
    if chattr is None or subprocess.run([chattr, "+i", str(path)], capture_output=True).returncode != 0:
        pytest.skip("running as root and chattr +i is not available here: no way to make a read-only file")


def _make_writable(path: Path) -> None:
    if os.geteuid() == 0:
        subprocess.run([shutil.which("chattr") or "chattr", "-i", str(path)], capture_output=True)
    else:
        path.chmod(0o755 if path.is_dir() else 0o644)


@pytest.mark.slow
def test_read_only_store_is_one_line(tiny_dataset, tmp_path, on_store, run_on_tiny):
    from mlflow.tracking import MlflowClient

    uri = on_store("sqlite:///" + str(tmp_path / "store" / "mlflow.db"))
    run_on_tiny("readonly")  # a store with one run in it
    database = tmp_path / "store" / "mlflow.db"
    _make_read_only(database)
    try:
        for args in (
            ("run", "--encoder", "mfcc", "--experiment", "readonly", *dataset_args(tiny_dataset, tmp_path / "c2")),
            ("regress", "--baseline", "previous", "--experiment", "readonly"),
        ):
            result = _invoke(*args)
            assert result.exit_code == 2, result.output
            _assert_one_line_refusal(result.output, f"tracking store {uri}", "read-only", str(database))
    finally:
        _make_writable(database)
    assert len(MlflowClient(uri).search_runs([MlflowClient(uri).get_experiment_by_name("readonly").experiment_id])) == 1


def test_empty_experiment_name_is_a_usage_error(tiny_dataset, tmp_path):
    for args in (
        ("run", "--encoder", "mfcc", *dataset_args(tiny_dataset, tmp_path / "cache"), "--experiment", ""),
        ("suite", "--encoders", "mfcc", *dataset_args(tiny_dataset, tmp_path / "cache"), "--experiment", " "),
        ("regress", "--baseline", "previous", "--experiment", ""),
    ):
        result = _invoke(*args)
        assert result.exit_code == 2, result.output
        assert "Invalid value for '--experiment': the experiment name is empty" in result.output
        assert "Traceback" not in result.output
    assert not (tmp_path / "cache").exists()


def test_store_check_messages(monkeypatch):
    from benchmark import store

    assert store.shown_uri("postgresql+psycopg://mlflow:s3cret@db:5432/mlflow") == (
        "postgresql+psycopg://mlflow:***@db:5432/mlflow"
    )
    assert store.shown_uri("http://mlflow.example.org:5000") == "http://mlflow.example.org:5000"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://user:pw@127.0.0.1:1")
    http_settings = {k: os.environ.get(k) for k in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT")}
    with pytest.raises(store.StoreError) as refused:
        store.check()
    assert str(refused.value).startswith("tracking store http://user:***@127.0.0.1:1: connection refused")
    assert "pw" not in str(refused.value)
    monkeypatch.setenv("MUSICBENCH_STORE_TIMEOUT", "soon")
    with pytest.raises(store.StoreError, match="MUSICBENCH_STORE_TIMEOUT='soon'"):
        store.check()
    monkeypatch.setenv("MUSICBENCH_STORE_TIMEOUT", "2.5")
    assert store.check_timeout() == 3
    # the pre-flight's bounded HTTP settings do not outlive it
    assert {k: os.environ.get(k) for k in http_settings} == http_settings
