"""The fast paths of a run's fixed cost give exactly what the simple paths give:

* small retrieval blocks ranked by numpy (no torch import) = torch's ranking;
* warm worker processes (forked from a fork server that imported librosa while the run was set up; one pool for
  both roles) = the threaded path, bit for bit, and the parent never imports librosa;
* a run's figures drawn in a process of their own (forked from the fork server, or the warm spare process that
  ``prestart_helper`` spawns, from plain columns) = drawn in the run's process (same PNG bytes).

The warm-worker checks run in a fresh interpreter: a fork server is process-wide state.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from audio_factory import SR, tone

from benchmark import ranking

ROOT = Path(__file__).resolve().parents[1]


def _with_ties(seed: int, shape=(60, 40)) -> np.ndarray:
    """Similarities with many exact ties, excluded (-inf) entries and signed zeros."""
    rng = np.random.default_rng(seed)
    sims = (rng.integers(-4, 5, size=shape) / 4).astype(np.float32)
    sims[rng.random(shape) < 0.1] = -np.inf
    sims[rng.random(shape) < 0.05] = 0.0
    return sims


@pytest.mark.parametrize("k", [1, 2, 5, 9, 10, 11, 39, 40])
def test_numpy_ranks_small_blocks_exactly_as_torch(k, monkeypatch):
    monkeypatch.setattr(ranking, "_NUMPY_SORT_CELLS", -1)  # _rank_rows: the torch path, whatever is loaded
    for seed in range(3):
        sims = _with_ties(seed)
        np.testing.assert_array_equal(ranking._rank_rows_numpy(sims.copy(), k), ranking._rank_rows(sims.copy(), k))


TOP_K_SCRIPT = """
import json, sys
import numpy as np
from benchmark.ranking import top_k
rng = np.random.default_rng(7)
refs = rng.integers(-2, 3, size=(50, 8)).astype(np.float32)   # duplicate rows: tied similarities
queries = rng.integers(-2, 3, size=(20, 8)).astype(np.float32)
exclude = [{i % 50, (3 * i) % 50} for i in range(20)]
out = {k: [a.tolist() for a in top_k(queries, refs, k, exclude)] for k in (1, 5, 10, 50)}
print(json.dumps({"torch_imported": "torch" in sys.modules, "out": out}))
"""


def test_top_k_without_torch_equals_top_k_with_it(monkeypatch):
    """A fresh interpreter (torch never imported) takes the numpy path; this one, forced, the torch path."""
    done = subprocess.run(
        [sys.executable, "-c", TOP_K_SCRIPT], capture_output=True, text=True, cwd=ROOT, check=True, timeout=120
    )
    fresh = json.loads(done.stdout)
    assert fresh["torch_imported"] is False
    monkeypatch.setattr(ranking, "_NUMPY_SORT_CELLS", -1)
    rng = np.random.default_rng(7)
    refs = rng.integers(-2, 3, size=(50, 8)).astype(np.float32)
    queries = rng.integers(-2, 3, size=(20, 8)).astype(np.float32)
    exclude = [{i % 50, (3 * i) % 50} for i in range(20)]
    for k, (indices, sims) in fresh["out"].items():
        torch_indices, torch_sims = ranking.top_k(queries, refs, int(k), exclude)
        assert indices == torch_indices.tolist()
        np.testing.assert_array_equal(np.array(sims, dtype=np.float32), torch_sims)


WARM_SCRIPT = """
import json, sys, tempfile
from pathlib import Path

import numpy as np

from benchmark import embedding, embedding_workers, figures, parallel
from benchmark.cache import ArrayCache
from benchmark.data import content_hash, discover
from encoders.chroma import ChromaStats
from encoders.mfcc import MFCCStats

folder, out = Path(sys.argv[1]), Path(sys.argv[2])
report = {"started": embedding_workers.prestart_workers([MFCCStats, ChromaStats], 2, extra=figures.MODULES)}
files = discover(folder, "reference")
hashes = {f.path: content_hash(f.path) for f in files}
halves = (files[: len(files) // 2], files[len(files) // 2 :])


def embed(encoder, cache_dir, **kw):
    results = []
    for role, part in zip(("reference", "target"), halves):
        cache = ArrayCache(cache_dir, encoder.cache_identity())
        results.append(
            embedding.embed_files(part, role, encoder, cache, hashes, batch_size=3, workers=2, progress=False, **kw)
        )
    return results


def summary(results, cache_dir, encoder):
    entries = sorted(Path(cache_dir).rglob("*.npy"))
    return {
        "embeddings": {k: v.tolist() for r in results for k, v in r.embeddings.items()},
        "order": [k for r in results for k in r.embeddings],
        "failures": [f.as_row() for r in results for f in r.failures],
        "stats": [vars(r.stats) for r in results],
        "entries": {p.name: np.load(p).tolist() for p in entries},
    }


# the figures of a run, drawn in a process forked from the fork server (before the workers are done with it)
rng = np.random.default_rng(0)
import pandas as pd

targets, refs = [f"t{i}.wav" for i in range(4)], [f"r{i}.wav" for i in range(6)]
similarity = rng.uniform(-1, 1, size=(4, 6)).astype(np.float32)
topk = pd.DataFrame(
    [{"target": t, "rank": r + 1, "reference": refs[r], "similarity": float(similarity[i, r])}
     for i, t in enumerate(targets) for r in range(3)]
)
per_target = pd.DataFrame({"target": targets, "sim_top1": similarity[:, 0], "hit_rate_at_1": [1.0, 0.0, 1.0, 0.0]})
args = (similarity, targets, refs, topk, per_target, "mfcc", {"t0.wav": {"r0.wav": 1.0}})
with parallel.background_call(figures.save_run_figures, str(out / "child"), *args) as drawing:
    report["figures_in_child"] = drawing is not None and drawing.result()
for cls in (MFCCStats, ChromaStats):
    encoder = cls()
    warm_dir, thread_dir = out / f"{encoder.name}-warm", out / f"{encoder.name}-threads"
    with embedding_workers.ProcessWorkers(encoder, 3, 2) as pool:
        report[f"{encoder.name}_warm"] = pool.warm
        warm = embed(encoder, warm_dir, pool=pool, processes=True)  # (a few seconds of audio: threads otherwise)
    report[f"{encoder.name}_librosa_in_parent"] = "librosa" in sys.modules
    report[f"{encoder.name}_warm_run"] = summary(warm, warm_dir, encoder)
report["librosa_in_parent"] = "librosa" in sys.modules
report["server_after_the_workers"] = parallel.forkserver_running()  # stopped: the encoders it was started for are done

# then in the spare process (spawned, warm, no pandas), from plain columns, as tracking_result.log_result sends them
report["helper_started"] = parallel.prestart_helper(figures.MODULES, figures.warm_up)
light = (
    similarity,
    targets,
    refs,
    figures.table_columns(topk, ("target", "rank", "reference")),
    figures.table_columns(per_target, ("target", "sim_top1", "hit_rate_at_1")),
    "mfcc",
    {"t0.wav": {"r0.wav": 1.0}},
)
with parallel.background_call(figures.save_run_figures, str(out / "helper"), *light) as drawing:
    report["figures_in_helper"] = drawing.result()
report["helper_has_pandas"] = parallel._HELPER[0].submit(eval, "'pandas' in __import__('sys').modules").result()
report["mpl_in_parent_before"] = "matplotlib" in sys.modules
report["figures_here"] = figures.save_run_figures(str(out / "here"), *args)

for cls in (MFCCStats, ChromaStats):  # the simple path, last: it imports librosa here
    encoder = cls()
    thread_dir = out / f"{encoder.name}-threads"
    report[f"{encoder.name}_thread_run"] = summary(embed(encoder, thread_dir, processes=False), thread_dir, encoder)
print(json.dumps(report))
"""


@pytest.mark.slow  # a fork server imports librosa and matplotlib, then both encoders twice: ~10 s on 2 busy cores
def test_warm_workers_and_figures_in_a_child_equal_the_simple_paths(tmp_path):
    folder = tmp_path / "audio"
    folder.mkdir()
    for i, seconds in enumerate((1.5, 0.6, 1.1, 0.3, 2.0)):
        sf.write(folder / f"a{i}.wav", tone(220.0 * 2 ** (i / 5), seconds, noise=0.02, seed=i), SR)
    stereo = np.stack([tone(330.0, 1.2, 44100), tone(331.0, 1.2, 44100, noise=0.01, seed=7)], axis=1)
    sf.write(folder / "b_stereo_44k.wav", stereo, 44100)
    (folder / "c_corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really audio")
    (folder / "d_empty.wav").write_bytes(b"")
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", WARM_SCRIPT, str(folder), str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["started"] and report["mfcc_warm"] and report["chroma_warm"]
    assert not report["librosa_in_parent"], "the warm path imported librosa in the parent"
    assert report["server_after_the_workers"] is False
    for name in ("mfcc", "chroma"):
        warm, threads = report[f"{name}_warm_run"], report[f"{name}_thread_run"]
        assert warm == threads  # embeddings bit for bit (as float lists), order, failures, stats, cache entries
        assert len(warm["embeddings"]) == 6 and {f["file"] for f in warm["failures"]} == {
            "c_corrupt.wav",
            "d_empty.wav",
        }
    assert (
        report["figures_in_child"]
        == report["figures_here"]
        == [
            "figures/similarity_heatmap.png",
            "figures/top1_similarity.png",
        ]
    )
    assert report["helper_started"] and report["figures_in_helper"] == report["figures_here"]
    assert not report["mpl_in_parent_before"] and not report["helper_has_pandas"]
    for name in report["figures_here"]:
        assert (out / "child" / name).read_bytes() == (out / "here" / name).read_bytes(), name
        assert (out / "helper" / name).read_bytes() == (out / "here" / name).read_bytes(), name
