"""The stat index: an unchanged file is not read again; a touched or replaced one is re-hashed and re-embedded."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
import soundfile as sf

from benchmark import hash_index
from benchmark.data import load_dataset

SR = 22050


def _aged(*paths, seconds: float = 3600) -> None:
    """Move mtimes into the past, out of the racily-clean window."""
    past = time.time() - seconds
    for path in paths:
        os.utime(path, (past, past))


@pytest.fixture
def folders(tmp_path):
    refs, targets = tmp_path / "refs", tmp_path / "targets"
    refs.mkdir()
    targets.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        sf.write(refs / f"r{i}.wav", (0.1 * rng.standard_normal(SR)).astype(np.float32), SR)
    sf.write(targets / "t0.wav", (0.1 * rng.standard_normal(SR)).astype(np.float32), SR)
    _aged(*refs.iterdir(), *targets.iterdir())
    return refs, targets


def _hash(refs, targets, cache):
    from benchmark import pipeline

    failures = []
    hashes, hits, _ = pipeline._hash_files(load_dataset(refs, targets), failures, cache)
    assert failures == []
    return hashes, hits


def test_unchanged_files_are_not_read_again(folders, tmp_path, monkeypatch):
    from benchmark import pipeline

    refs, targets = folders
    first, hits = _hash(refs, targets, tmp_path / "cache")
    assert hits == 0 and len(first) == 4

    def must_not_read(path, *args, **kwargs):
        raise AssertionError(f"{path} was read although unchanged")

    monkeypatch.setattr(pipeline, "content_hash", must_not_read)
    second, hits = _hash(refs, targets, tmp_path / "cache")
    assert second == first and hits == 4


def test_touched_and_replaced_files_are_hashed_again(folders, tmp_path):
    refs, targets = folders
    first, _ = _hash(refs, targets, tmp_path / "cache")
    _aged(refs / "r0.wav", seconds=100)  # touched: same bytes, another mtime
    replacement = tmp_path / "other.wav"  # replaced: other bytes, same size, old mtime restored
    sf.write(replacement, np.zeros(SR, dtype=np.float32), SR)
    old = os.stat(refs / "r1.wav")
    os.replace(replacement, refs / "r1.wav")
    os.utime(refs / "r1.wav", ns=(old.st_atime_ns, old.st_mtime_ns))
    second, hits = _hash(refs, targets, tmp_path / "cache")
    assert hits == 2
    assert second[refs / "r0.wav"] == first[refs / "r0.wav"]
    assert second[refs / "r1.wav"] != first[refs / "r1.wav"]


def test_racily_clean_files_are_not_remembered(folders, tmp_path):
    refs, targets = folders
    sf.write(refs / "fresh.wav", np.zeros(SR, dtype=np.float32), SR)  # modified just now
    _hash(refs, targets, tmp_path / "cache")
    _, hits = _hash(refs, targets, tmp_path / "cache")
    assert hits == 4  # every file but the fresh one


def test_no_cache_means_no_index(folders):
    refs, targets = folders
    _hash(refs, targets, None)
    assert _hash(refs, targets, None)[1] == 0


def test_a_corrupt_index_is_a_warning_and_files_are_hashed(folders, tmp_path):
    refs, targets = folders
    cache = tmp_path / "cache"
    cache.mkdir()
    hash_index.index_path(cache).write_bytes(b"not a database" * 100)
    with pytest.warns(UserWarning, match="hash index"):
        hashes, hits = _hash(refs, targets, cache)
    assert hits == 0 and len(hashes) == 4


def test_warm_rerun_after_touching_one_file_reembeds_only_that_file(folders, tmp_path, run_cli):
    refs, targets = folders
    first = run_cli(refs, targets, tmp_path / "cache")
    assert first["count/n_embedded"] == 4
    data, sr = sf.read(refs / "r2.wav")
    sf.write(refs / "r2.wav", data[::-1].copy(), sr)  # new content
    _aged(refs / "r2.wav")
    again = run_cli(refs, targets, tmp_path / "cache")
    assert again["count/n_embedded"] == 1 and again["count/n_cached"] == 3 and again["count/n_hashes_from_index"] == 3


@pytest.fixture
def run_cli(tmp_path):
    from click.testing import CliRunner
    from mlflow.tracking import MlflowClient

    from benchmark.cli import main

    def run(refs, targets, cache):
        result = CliRunner().invoke(
            main,
            [
                "run",
                "--encoder",
                "mfcc",
                "--refs",
                str(refs),
                "--targets",
                str(targets),
                "--metrics",
                "none",
                "--cache-dir",
                str(cache),
                "--experiment",
                "hash-index",
                "--no-progress",
            ],
        )
        assert result.exit_code == 0, result.output
        run_id = result.output.split("MLflow run ")[1].split()[0]
        return MlflowClient().get_run(run_id).data.metrics

    return run
