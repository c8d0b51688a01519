"""Hashing ahead (``benchmark.prehash``): a digest is handed over only for a file unchanged since it was hashed in
the background, never for one the stat index knows, one changed meanwhile or one modified just before; what it hands
over is the file's sha256; and a run that hashed ahead records what a run without it records."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import json, os, sys, time
from pathlib import Path

from benchmark import parallel, prehash
from benchmark.data import content_hash
from benchmark.hash_index import HashIndex

folder, cache_dir = Path(sys.argv[1]), Path(sys.argv[2])
AUDIO = [path for path in folder.iterdir() if path.suffix != ".txt"]
old = time.time() - 3600
for path in folder.iterdir():
    if path.name != "fresh.wav":
        os.utime(path, (old, old))
index = HashIndex(cache_dir)  # the stat index already knows one file
known = folder / "known.wav"
index.remember(known, content_hash(known), os.stat(known))
index.save()

report = {"server": parallel.prestart_forkserver(["benchmark.prehash"])}
report["started"] = prehash.start([folder, folder / "missing-folder"], cache_dir)
deadline = time.time() + 60
while time.time() < deadline:
    state = prehash._STATE
    with state.lock:
        futures = list(state.futures.values())
    if len(futures) == len(AUDIO) and all(f.done() for f in futures):
        break
    time.sleep(0.05)
report["all_hashed_ahead"] = time.time() < deadline
with open(folder / "changed.wav", "ab") as handle:  # changed after it was hashed ahead
    handle.write(b"more bytes")
os.utime(folder / "changed.wav", (old, old))
taken = {}
for path in sorted(folder.iterdir()):
    digest = prehash.take(path, os.stat(path))
    if digest is not None:
        taken[path.name] = digest == content_hash(path)
report["taken"] = taken
report["stat_missing"] = prehash.take(folder / "a0.wav", None)
prehash.finish()
report["after_finish"] = prehash.take(folder / "a0.wav", os.stat(folder / "a0.wav"))
report["no_server_elsewhere"] = prehash.start([], cache_dir)
print(json.dumps(report))
"""


def test_only_files_unchanged_since_they_were_hashed_ahead_are_taken(tmp_path):
    folder = tmp_path / "audio"
    folder.mkdir()
    for name in ("a0.wav", "a1.wav", "a2.wav", "known.wav", "changed.wav", "fresh.wav", "b é.flac"):
        (folder / name).write_bytes(name.encode() * 1000)
    (folder / "notes.txt").write_text("not audio")
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(folder), str(tmp_path / "cache")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["server"] and report["started"] and report["all_hashed_ahead"]
    # known: the stat index has it; changed: its stat moved on; fresh: modified too recently to trust its stat
    assert report["taken"] == {"a0.wav": True, "a1.wav": True, "a2.wav": True, "b é.flac": True}
    assert report["stat_missing"] is None and report["after_finish"] is None
    assert report["no_server_elsewhere"] is False  # nothing to hash: nothing started


def test_without_a_fork_server_nothing_is_started(tmp_path, monkeypatch):
    from benchmark import parallel, prehash

    (tmp_path / "a.wav").write_bytes(b"x" * 100)
    monkeypatch.setattr(parallel, "forkserver_running", lambda: False)
    assert prehash.start([tmp_path], tmp_path / "cache") is False
    assert prehash.take(tmp_path / "a.wav", (tmp_path / "a.wav").stat()) is None


@pytest.mark.slow  # musicbench in a fresh interpreter: ~6 s
def test_a_run_takes_the_hashes_made_ahead_and_records_the_files_sha256(tmp_path, tiny_dataset):
    import os

    from mlflow.tracking import MlflowClient

    from benchmark.data import content_hash
    from benchmark.hash_index import HashIndex

    files = sorted(Path(tiny_dataset["refs"]).glob("*.wav")) + sorted(Path(tiny_dataset["targets"]).glob("*.wav"))
    for path in files:
        os.utime(path, (1_600_000_000, 1_600_000_000))  # out of the racily-clean window
    work = tmp_path / "work"
    work.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "benchmark.cli", "run", "--encoder", "mfcc", "--metrics", "none", "--no-progress"]
        + ["--refs", str(tiny_dataset["refs"]), "--targets", str(tiny_dataset["targets"])]
        + ["--cache-dir", str(tmp_path / "cache")],
        capture_output=True,
        text=True,
        cwd=work,
        env={**os.environ, "PYTHONPATH": str(ROOT), "MLFLOW_TRACKING_URI": ""},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    run_id = done.stdout.split("MLflow run ")[1].split()[0]
    client = MlflowClient(tracking_uri=f"sqlite:///{work / 'mlruns' / 'mlflow.db'}")
    metrics = client.get_run(run_id).data.metrics
    assert metrics["count/n_hashes_ahead"] >= 1  # the fork server was up long before MLflow was imported
    assert metrics["count/n_hashes_from_index"] == 0
    index = HashIndex(tmp_path / "cache")  # what the run recorded for each file: its sha256
    assert all(index.lookup(path) == content_hash(path) for path in files)
