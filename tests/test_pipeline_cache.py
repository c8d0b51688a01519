"""The embedding cache, proven by counting encoder calls (not by timing)."""

import numpy as np
import pytest
import soundfile as sf

from benchmark.config import RunConfig
from encoders.mfcc import MFCCStats


@pytest.fixture
def counted(monkeypatch):
    calls = []
    original = MFCCStats.embed

    def counting(self, batch):
        calls.extend(len(x) for x in batch)
        return original(self, batch)

    monkeypatch.setattr(MFCCStats, "embed", counting)
    return calls


def _config(data, cache, **kw):
    return RunConfig(
        encoder="mfcc",
        refs=data["refs"],
        targets=data["targets"],
        ground_truth=data["ground_truth"],
        cache_dir=cache,
        **{"metrics": "none", **kw},
    )


def test_second_run_embeds_nothing_and_changed_file_alone_is_reembedded(tiny_dataset, tmp_path, counted):
    from benchmark import pipeline

    config = _config(tiny_dataset, tmp_path / "cache")
    first = pipeline.run(config, progress=False)
    assert len(counted) == 6 and first.metrics["n_embedded"] == 6
    counted.clear()
    second = pipeline.run(config, progress=False)
    assert counted == [] and second.metrics["n_cached"] == 6 and second.metrics["n_embedded"] == 0
    assert second.topk.equals(first.topk)

    sf.write(tiny_dataset["refs"] / "c5.wav", np.zeros(22050, dtype=np.float32) + 0.01, 22050)
    third = pipeline.run(config, progress=False)
    assert len(counted) == 1 and third.metrics["n_embedded"] == 1


def test_changed_preprocessing_misses_the_cache(tiny_dataset, tmp_path, counted):
    from benchmark import pipeline

    pipeline.run(_config(tiny_dataset, tmp_path / "cache"), progress=False)
    counted.clear()
    pipeline.run(_config(tiny_dataset, tmp_path / "cache", window_seconds=0.5), progress=False)
    assert len(counted) > 6  # every file again, now as several 0.5 s windows


def test_retrieval_and_ir_metrics_on_tiny_set(tiny_dataset, tmp_path):
    from benchmark import pipeline

    result = pipeline.run(_config(tiny_dataset, tmp_path / "cache", k=2), progress=False)
    assert list(result.topk.columns[:5]) == ["target", "rank", "reference", "similarity", "relevant"]
    assert len(result.topk) == 4  # 2 targets × k=2
    top1 = result.topk[result.topk["rank"] == 1].set_index("target")["reference"]
    assert top1.to_dict() == {"a4_noisy.wav": "a4.wav", "e5_noisy.wav": "e5.wav"}  # same note wins on MFCCs
    assert result.metrics["map"] == pytest.approx(1.0)
    assert result.metrics["n_queries_evaluated"] == 2
    assert "melody_acc_top1_mean" not in result.metrics  # metrics="none": absent, never zero


def _entry(cache_root, dtype):
    """The first cache entry (any namespace) of ``dtype``: float32 embeddings, int8 melody pitch classes."""
    return next(p for p in sorted(cache_root.glob("*/*/*.npy")) if np.load(p).dtype == dtype)


def test_wrong_length_embedding_and_2d_melody_entry_are_repaired_and_counted(tiny_dataset, tmp_path):
    """Each cache checks entries against what wrote them: the encoder's dim, the metric's declared features
    (melody: int8 pitch classes, 1-D, in -1..11). Valid melody entries are hits on a re-run (none repaired)."""
    from benchmark import pipeline

    cache = tmp_path / "cache"
    config = _config(tiny_dataset, cache, metrics="melody")
    first = pipeline.run(config, progress=False)
    assert first.metrics["n_cache_repaired"] == 0
    again = pipeline.run(config, progress=False)
    assert again.metrics["n_cache_repaired"] == 0 and again.metrics["n_cached"] == 6
    assert again.topk.equals(first.topk)

    np.save(_entry(cache, np.float32), np.zeros(7, dtype=np.float32))  # a wrong length: never served
    np.save(_entry(cache, np.int8), np.zeros((3, 4), dtype=np.int8))  # 2-D: not a pitch-class sequence
    third = pipeline.run(config, progress=False)
    assert third.metrics["n_cache_repaired"] == 2 and third.metrics["n_embedded"] == 1
    assert third.topk.equals(first.topk)
