"""Killed runs lose no work and never log a lie.

The runs are real ``musicbench run`` processes with the test-only ``slow-mfcc`` encoder (slow_cli.py: MFCC that
sleeps per window), so a kill lands mid-embedding deterministically; the tests poll the cache folder (20 ms
steps, bounded waits) instead of sleeping.
"""

from __future__ import annotations

import signal
import subprocess

import numpy as np
import pytest
import soundfile as sf
from reliability_helpers import (
    SR,
    cache_entries,
    cli_command,
    invoke,
    run_args,
    runs,
    subprocess_env,
    tone,
    tone_folder,
    wait_for,
)

from benchmark.cache import TEMP_PREFIX
from encoders import registry
from encoders.mfcc import MFCCStats

N_REFS, N_TARGETS = 30, 2
SLOW_SECONDS = "0.1"  # per file at --batch-size 1: ≥ 3 s of embedding, a wide window to kill in
START_TIMEOUT = 90  # seconds for the child to import and embed its first files (generous: loaded CI machines)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("killed")
    tone_folder(root / "refs", N_REFS, 0.5)
    (root / "targets").mkdir()
    for i in range(N_TARGETS):
        sf.write(root / "targets" / f"q{i}.wav", tone(200.0 + 50 * i, 0.5, noise=0.05, seed=99 + i), SR)
    return root


def _start(dataset, cache, experiment, slow=SLOW_SECONDS):
    command = cli_command(
        *run_args("slow-mfcc", str(dataset / "refs"), str(dataset / "targets"), str(cache), experiment),
        "--batch-size",
        "1",
        "--metrics",
        "none",
        "--no-progress",
        slow=True,
    )
    return subprocess.Popen(
        command,
        env=subprocess_env(MUSICBENCH_TEST_SLOW_SECONDS=slow),
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _assert_consistent(cache) -> list:
    """Every entry loads as a finite embedding of mfcc's size; anything else is a hidden temp file, never ``*.npy``."""
    entries = cache_entries(cache)
    for entry in entries:
        value = np.load(entry, allow_pickle=False)
        assert value.shape == (MFCCStats.card.dim,) and np.all(np.isfinite(value)), entry
    others = [p for p in cache.rglob("*") if p.is_file() and p.suffix != ".npy" and p.name != "identity.json"]
    assert all(p.name.startswith(TEMP_PREFIX) and p.suffix == ".partial" for p in others), others
    return entries


@pytest.mark.slow
def test_sigkill_mid_embedding_leaves_a_consistent_cache_and_the_rerun_resumes(dataset, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    process = _start(dataset, cache, "sigkill")
    try:
        wait_for(lambda: len(cache_entries(cache)) >= 3, START_TIMEOUT, process=process)
    finally:
        process.kill()
        process.communicate(timeout=30)
    entries = _assert_consistent(cache)
    assert 3 <= len(entries) < N_REFS + N_TARGETS, "killed mid-embedding"
    before = {entry: entry.stat().st_mtime_ns for entry in entries}
    (killed,) = runs("sigkill")
    assert killed.info.status != "FINISHED"  # SIGKILL cannot be caught: the run stays RUNNING, never FINISHED

    # the re-run in-process (same CLI, same encoder, no delay): saves a second interpreter start-up
    monkeypatch.setitem(registry.ENCODERS, "slow-mfcc", "slow_cli:SlowMFCC")
    monkeypatch.setenv("MUSICBENCH_TEST_SLOW_SECONDS", "0")
    result = invoke(
        *run_args("slow-mfcc", str(dataset / "refs"), str(dataset / "targets"), str(cache), "sigkill-resume"),
        "--batch-size",
        "1",
        "--metrics",
        "none",
        "--no-progress",
    )
    assert result.exit_code == 0, result.output
    (resumed,) = runs("sigkill-resume")
    assert resumed.info.status == "FINISHED"
    assert resumed.data.metrics["count/n_cached"] >= len(entries)
    assert resumed.data.metrics["count/n_cached"] + resumed.data.metrics["count/n_embedded"] == N_REFS + N_TARGETS
    assert {entry: entry.stat().st_mtime_ns for entry in entries} == before, "finished files were recomputed"
    assert len(_assert_consistent(cache)) == N_REFS + N_TARGETS


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_sigterm_or_ctrl_c_mid_run_ends_the_run_killed(dataset, tmp_path, signum):
    cache = tmp_path / "cache"
    experiment = f"signal-{signum.name}"
    process = _start(dataset, cache, experiment)
    try:
        wait_for(lambda: len(cache_entries(cache)) >= 2, START_TIMEOUT, process=process)
        process.send_signal(signum)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode != 0, out
    (run,) = runs(experiment)
    assert run.info.status == "KILLED", err
    expected = "interrupted: received signal 15" if signum == signal.SIGTERM else "interrupted"
    assert run.data.tags["failure_reason"] == expected
    assert "Traceback" not in err, err  # click reports "Aborted!", no stack trace
    assert len(_assert_consistent(cache)) < N_REFS + N_TARGETS


def test_a_temp_file_left_by_a_kill_mid_write_is_never_an_entry(tmp_path):
    """What SIGKILL during ``put`` leaves behind (a hidden ``.tmp-*.partial``) is neither read nor counted."""
    from benchmark.cache import ArrayCache

    cache = ArrayCache(tmp_path, {"x": 1})
    digest = "ab" * 32
    cache.put(digest, np.ones(4, dtype=np.float32))
    torn = cache._path(digest).parent / f"{TEMP_PREFIX}k1ll3d.partial"
    torn.write_bytes(b"\x93NUMPY half a hea")  # a write cut short
    assert cache.get(digest).tolist() == [1.0] * 4 and cache.get("cd" * 32) is None
    assert cache_entries(tmp_path) == [cache._path(digest)]
