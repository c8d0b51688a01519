"""Two ``musicbench run`` processes started at once on the same data, cache and (fresh) MLflow store both finish,
agree exactly, and leave a consistent cache."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf
from reliability_helpers import SR, cli_command, run_args, subprocess_env, tone, tone_folder

from benchmark.cache import ArrayCache
from benchmark.data import content_hash
from encoders.mfcc import MFCCStats

NOT_COMPARABLE = {
    "count/n_hashes_from_index",
    "count/n_hashes_ahead",
    "timing/hash_seconds",
    "timing/embed_seconds",
    "timing/retrieve_seconds",
    "timing/evaluate_seconds",
    "timing/total_seconds",
    "timing/embed_audio_seconds_per_second",
    "count/n_cached",
    "count/n_embedded",
}


@pytest.mark.slow
def test_two_simultaneous_runs_agree_and_share_a_consistent_cache(tmp_path):
    import pandas as pd
    from mlflow.tracking import MlflowClient

    refs = tone_folder(tmp_path / "refs", 16, 1.0)
    shutil.copy(refs[3], tmp_path / "refs" / "same_as_f0003.wav")  # 17 files, 16 distinct contents
    (tmp_path / "targets").mkdir()
    for i in range(3):
        sf.write(tmp_path / "targets" / f"q{i}.wav", tone(180.0 * 2 ** (4 * i / 12), 1.0, noise=0.05, seed=50 + i), SR)
    store = tmp_path / "store"
    uri = f"sqlite:///{store / 'mlflow.db'}"  # fresh: both processes create the tables at the same moment
    cache = tmp_path / "cache"
    command = cli_command(
        *run_args("mfcc", str(tmp_path / "refs"), str(tmp_path / "targets"), str(cache), "concurrent"),
        "--no-progress",
    )
    env = subprocess_env(MLFLOW_TRACKING_URI=uri)
    processes = [
        subprocess.Popen(command, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)
    ]
    outputs = [p.communicate(timeout=150) for p in processes]
    for process, (_out, err) in zip(processes, outputs):
        assert process.returncode == 0, err
        assert "database is locked" not in err and "OperationalError" not in err, err

    client = MlflowClient(tracking_uri=uri)
    found = client.search_runs([client.get_experiment_by_name("concurrent").experiment_id])
    assert len(found) == 2 and {r.info.status for r in found} == {"FINISHED"}
    tables = []
    for run in found:
        topk = pd.read_csv(client.download_artifacts(run.info.run_id, "tables/topk.csv"))
        per_target = pd.read_csv(client.download_artifacts(run.info.run_id, "tables/per_target.csv"))
        metrics = {k: v for k, v in run.data.metrics.items() if k not in NOT_COMPARABLE}
        tables.append((topk, per_target, metrics))
        assert run.data.metrics["count/n_cached"] + run.data.metrics["count/n_embedded"] == 20
    pd.testing.assert_frame_equal(tables[0][0], tables[1][0])
    pd.testing.assert_frame_equal(tables[0][1], tables[1][1])
    assert tables[0][2] == tables[1][2]

    for entry in cache.rglob("*.npy"):
        assert np.all(np.isfinite(np.load(entry, allow_pickle=False))), entry
    assert not [p for p in cache.rglob("*") if p.name.endswith(".partial")]  # both finished: no temp left
    embeddings = ArrayCache(cache, MFCCStats().cache_identity()).folder
    distinct = {content_hash(p) for p in [*(tmp_path / "refs").iterdir(), *(tmp_path / "targets").iterdir()]}
    assert len(distinct) == 19
    assert {p.stem for p in embeddings.rglob("*.npy")} == distinct
