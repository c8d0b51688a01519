"""The evaluate stage (benchmark/evaluation.py): IR numbers by rank counting equal the previous implementation
(full rankings as lists + ``per_query_ir``, kept in tests/reference_ranking.py); per-file metric features over
a pool of workers equal one worker's, with the content-hash cache."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import soundfile as sf
from reference_ranking import reference_retrieval_metrics

from benchmark.data import AudioFile, content_hash
from benchmark.evaluation import retrieval_metrics
from benchmark.pair_scoring import metric_features
from metrics.base import PairMetric


def _random_library(seed: int, n_refs: int = 240, n_targets: int = 70, dim: int = 8):
    """Named references and targets, some targets also references (excluded from their own results), duplicated
    references (exact ties), graded relevance, targets without any relevant reference, and relevant references
    that are not in the library (failed to embed)."""
    rng = np.random.default_rng(seed)
    refs = rng.standard_normal((n_refs, dim)).astype(np.float32)
    refs[rng.integers(0, n_refs, 30)] = refs[rng.integers(0, n_refs, 30)]
    ref_keys = [f"refs/song{i:04d}.wav" for i in range(n_refs)]
    shared = rng.choice(n_refs, size=n_targets // 3, replace=False)
    targets = np.concatenate([refs[shared], rng.standard_normal((n_targets - len(shared), dim)).astype(np.float32)])
    target_keys = [f"targets/q{i:03d}.wav" for i in range(n_targets)]
    exclude = [{int(r)} for r in shared] + [set() for _ in range(n_targets - len(shared))]
    relevance: dict[str, dict[str, float]] = {}
    for i, key in enumerate(target_keys):
        if i % 7 == 3:
            continue  # no ground truth for this target
        chosen = rng.choice(n_refs, size=rng.integers(1, 6), replace=False)
        relevance[key] = {ref_keys[r]: float(rng.choice([0.5, 1, 2, 3])) for r in chosen}
        if i % 11 == 0:
            relevance[key]["refs/failed-to-embed.wav"] = 1.0
        if i < len(shared) and i % 2 == 0:
            relevance[key][ref_keys[shared[i]]] = 1.0  # relevant, but excluded: itself
    relevance["targets/not-embedded.wav"] = {ref_keys[0]: 1.0}  # a target that failed: not a query
    return targets, refs, ref_keys, exclude, target_keys, relevance


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("k", [1, 5, 12])
def test_retrieval_metrics_equal_the_previous_implementation(seed, k):
    targets, refs, ref_keys, exclude, target_keys, relevance = _random_library(seed)
    expected, expected_rows = reference_retrieval_metrics(targets, refs, ref_keys, exclude, target_keys, relevance, k)
    got, rows = retrieval_metrics(targets, refs, ref_keys, exclude, target_keys, relevance, k, ties="index")
    assert {name: got[name] for name in expected} == expected  # every mean and CI bit for bit, same names
    assert rows.to_dict("records") == expected_rows.to_dict("records")
    assert got["n_queries_without_relevant"] > 0 and f"ndcg_at_{k}_ci_low" in got
    assert got["n_queries_ground_truth"] == got["n_queries_evaluated"] == len(rows) and got["n_queries_missing"] == 0


def test_retrieval_metrics_without_any_relevant_target():
    targets, refs, ref_keys, exclude, target_keys, _ = _random_library(3, n_targets=5)
    got, rows = retrieval_metrics(targets, refs, ref_keys, exclude, target_keys, {"elsewhere.wav": {}}, 5)
    assert got == {
        "n_queries_without_relevant": 5,
        "n_queries_ground_truth": 0,
        "n_queries_evaluated": 0,
        "n_queries_missing": 0,
    }
    assert rows.empty


def _four_queries_one_failed():
    """The issue's example: 4 ground-truth queries, the target of one failed; the other three have AP 1, 1, 0.5."""
    refs = np.eye(4, dtype=np.float32)
    targets = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0.9, 0, 0.5, 0]], dtype=np.float32)
    ref_keys = ["r0", "r1", "r2", "r3"]
    target_keys = ["t0", "t1", "t2"]  # "t3" failed to decode: no embedding
    relevance = {"t0": {"r0": 1.0}, "t1": {"r1": 1.0}, "t2": {"r2": 1.0}, "t3": {"r3": 1.0}}
    return targets, refs, ref_keys, None, target_keys, relevance


@pytest.mark.parametrize("missing, expected_map", [("miss", 0.625), ("drop", 2.5 / 3)])
def test_a_failed_target_is_a_miss_or_dropped(missing, expected_map):
    args = _four_queries_one_failed()
    got, rows = retrieval_metrics(*args, 5, missing_queries=missing, ground_truth_targets=["t0", "t1", "t2", "t3"])
    assert got["map"] == pytest.approx(expected_map)
    assert got["n_queries_ground_truth"] == 4 and got["n_queries_evaluated"] == 3 and got["n_queries_missing"] == 1
    assert got["n_queries_relevant_not_retrieved"] == 0
    if missing == "miss":  # as trec_eval -c: every measure 0 for the failed query, in the per-query table too
        row = rows.set_index("query").loc["t3"]
        assert row["average_precision"] == row["reciprocal_rank"] == row["hit_rate_at_1"] == row["ndcg_at_5"] == 0
        assert row["n_relevant"] == 1 and got["mrr"] == pytest.approx((1 + 1 + 0.5) / 4)
        assert got["hit_rate_at_1"] == pytest.approx(0.5)
    else:
        assert "t3" not in set(rows["query"])


def test_metric_values_refuse_a_second_source_for_one_name():
    from benchmark.evaluation import DuplicateMetric, MetricValues

    values = MetricValues()
    values.add({"a": 1.0, "b": 2.0}, "first")
    values.add({"c": 3.0}, "second")
    with pytest.raises(DuplicateMetric, match=r"b \(from first and third\)"):
        values.add({"b": 2.0, "d": 4.0}, "third")
    assert dict(values) == {"a": 1.0, "b": 2.0, "c": 3.0}


def test_every_metric_name_has_one_source():
    """Each pair metric's per-file means and pair-column means (and the IR measures and the harness's numbers) never
    share a name: the aesthetics collision (aes_*_ref_top1_mean from both) cannot come back."""
    import pandas as pd

    from benchmark.evaluation import MetricValues
    from benchmark.pair_scoring import aggregate, file_value_means
    from metrics import registry

    for name in registry.names():
        metric = registry.create(name)  # cheap: no model until first use
        features = {"h": np.ones(tuple(d or 1 for d in (metric.feature_shape or (1,))), dtype=np.float32)}
        topk = pd.DataFrame({"target": ["t"], "rank": [1], "reference": ["r"], "similarity": [0.5]})
        for column in metric.columns:
            topk[column] = 0.5
        values = MetricValues()
        if metric.file_value_names:
            values.add(file_value_means(metric, features, ["h"], ["h"]), f"{name} per-file values")
        values.add(aggregate(topk, list(metric.columns)), "top-k pairs")  # raises on a shared name
        for column in metric.columns:
            assert values[f"n_pairs_scored.{column}_top1"] == 1 and values[f"n_pairs_scored.{column}_topk"] == 1
    logged = [m.name for m in registry.measures()]
    assert len(logged) == len(set(logged)), sorted(n for n in logged if logged.count(n) > 1)


def test_pair_means_count_their_pairs():
    import pandas as pd

    from benchmark.pair_scoring import aggregate

    topk = pd.DataFrame(
        {
            "target": ["a", "a", "b", "b"],
            "rank": [1, 2, 1, 2],
            "reference": ["x", "y", "x", "y"],
            "similarity": [0.9, 0.8, 0.7, 0.6],
            "melody_acc": [0.5, np.nan, np.nan, 0.25],
        }
    )
    out = aggregate(topk, ["melody_acc"])
    assert out["melody_acc_top1_mean"] == 0.5 and out["n_pairs_scored.melody_acc_top1"] == 1
    assert out["melody_acc_topk_mean"] == 0.375 and out["n_pairs_scored.melody_acc_topk"] == 2


# --- per-file metric features: in worker threads for a parallel metric, cached by content hash -------------------


class _Recording(PairMetric):
    """A parallel metric that notes the thread of each call; a file of all zeros 'cannot be scored'."""

    name = "recording"
    sample_rate = 22050
    columns = ("recording",)
    parallel_files = True

    def __init__(self):
        super().__init__()
        self.calls = []

    @property
    def threads(self):
        return set(self.calls)

    def file_features(self, audio):
        self.calls.append(threading.get_ident())
        time.sleep(0.02)  # a file takes a while (and releases the GIL): the other worker starts on the next one
        if not np.any(audio):
            raise ValueError("nothing to score")
        return np.array([audio.mean(), audio.std()])

    def pair_scores(self, target, reference):
        return {"recording": float(target[0] - reference[0])}


def _files(tmp_path, n=6):
    from audio_factory import melody

    files = []
    for i in range(n):
        path = tmp_path / f"f{i}.wav"
        sf.write(path, melody(1.0 + i / 4, 22050, seed=i), 22050)
        files.append(("reference", AudioFile(path, path.name)))
    sf.write(tmp_path / "silent.wav", np.zeros(2205, np.float32), 22050)
    (tmp_path / "junk.wav").write_bytes(b"not audio" * 20)
    files += [
        ("target", AudioFile(tmp_path / "silent.wav", "silent.wav")),
        ("target", AudioFile(tmp_path / "junk.wav", "junk.wav")),
    ]
    hashes = {item.path: content_hash(item.path) for _, item in files}
    return files, hashes


def test_parallel_metric_runs_in_worker_threads_with_the_cache(tmp_path):
    files, hashes = _files(tmp_path)
    metric = _Recording()
    serial = metric_features(metric, files, None, hashes, workers=1, progress=False)
    assert metric.threads == {threading.get_ident()}  # one worker: scored here
    metric = _Recording()
    cache = tmp_path / "cache"
    parallel = metric_features(metric, files, cache, hashes, workers=2, progress=False)
    assert threading.get_ident() not in metric.threads and 1 <= len(metric.threads) <= 2
    assert parallel.features.keys() == serial.features.keys() and len(parallel.features) == 6
    for digest, features in serial.features.items():
        np.testing.assert_array_equal(parallel.features[digest], features)
    assert [(f.key, f.stage) for f in parallel.failures] == [("silent.wav", "recording"), ("junk.wav", "decode")]
    assert parallel.failures == serial.failures
    metric = _Recording()  # warm: from the cache, nothing scored (the failed files are tried again)
    warm = metric_features(metric, files, cache, hashes, workers=2, progress=False)
    assert len(metric.calls) == 1 and len(warm.failures) == 2  # only the file that failed is scored again
    for digest, features in serial.features.items():
        np.testing.assert_array_equal(warm.features[digest], features)


def test_melody_features_over_two_workers_equal_one(tmp_path):
    from metrics.melody import MelodyAccuracy

    files, hashes = _files(tmp_path, n=4)
    assert MelodyAccuracy.parallel_files
    one = metric_features(MelodyAccuracy(), files, None, hashes, workers=1, progress=False)
    two = metric_features(MelodyAccuracy(), files, None, hashes, workers=2, progress=False)
    assert one.features.keys() == two.features.keys() and len(one.features) == 5  # silence scores (as "C")
    for digest, classes in one.features.items():
        np.testing.assert_array_equal(two.features[digest], classes)
    assert [f.key for f in two.failures] == ["junk.wav"]


def test_a_run_refuses_one_metric_name_from_two_stages(tiny_dataset, tmp_path, monkeypatch):
    """Every stage's numbers reach the run's metrics through ``MetricValues``: a stage that reported a name another
    stage already gave (here the retrieval index reporting ``n_refs``) fails the run instead of overwriting it."""
    from benchmark import index, pipeline
    from benchmark.config import RunConfig
    from benchmark.evaluation import DuplicateMetric

    config = RunConfig(
        encoder="mfcc",
        refs=tiny_dataset["refs"],
        targets=tiny_dataset["targets"],
        ground_truth=tiny_dataset["ground_truth"],
        cache_dir=tmp_path / "cache",
        metrics="none",
    )
    result = pipeline.run(config, progress=False)  # every stage's names are distinct: no clash
    assert {"n_refs", "map", "n_embedded", "total_seconds"} <= set(result.metrics)

    retrieve = index.retrieve

    def clashing(*args, **kwargs):
        retrieved = retrieve(*args, **kwargs)
        retrieved.metrics["n_refs"] = 0.0
        return retrieved

    monkeypatch.setattr(index, "retrieve", clashing)
    with pytest.raises(DuplicateMetric, match=r"n_refs \(from run bookkeeping and retrieval index\)"):
        pipeline.run(config, progress=False)
