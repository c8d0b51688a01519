"""``--engine ray``: decode + embed as a Ray Data pipeline (actors holding the encoder) gives what the local engine
gives — the same top-k lists, embeddings within 1e-5, the same failure records — and shares its cache: local and Ray
runs reuse each other's work, and a Ray run killed half-way resumes from the cache.

One local Ray with 2 CPUs for the module (the pipeline uses a Ray that is already initialised and leaves it
running); skipped, with the reason, only where Ray is not installed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from audio_factory import tone

from benchmark.config import RayOptions, RunConfig

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -e .[ray])")
pytest.importorskip("ray.data", reason="Ray Data is not installed (pip install -e .[ray])")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

NOTES = {"a4": 440.0, "b4": 493.88, "c5": 523.25, "d5": 587.33, "e5": 659.25, "f5": 698.46, "g5": 783.99}


@pytest.fixture(scope="module")
def local_ray():
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        yield
        ray.shutdown()
    else:  # pragma: no cover - someone else's Ray: leave it running
        yield


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> dict[str, Path]:
    """A demo-like small set: 7 references (tones of 1.5 s) and 3 noisy targets; one reference is not audio."""
    root = tmp_path_factory.mktemp("ray-library")
    sr = 22050
    refs, targets = root / "refs", root / "targets"
    refs.mkdir()
    targets.mkdir()
    for name, freq in NOTES.items():
        sf.write(refs / f"{name}.wav", tone(freq, 1.5, sr), sr)
    (refs / "broken.wav").write_bytes(b"RIFF but not really a wave file")
    for i, name in enumerate(("a4", "d5", "g5")):
        sf.write(targets / f"{name}_noisy.wav", tone(NOTES[name], 1.2, sr, noise=0.05, seed=i), sr)
    gt = root / "ground_truth.csv"
    gt.write_text("target,reference\n" + "".join(f"{n}_noisy.wav,{n}.wav\n" for n in ("a4", "d5", "g5")))
    return {"refs": refs, "targets": targets, "ground_truth": gt, "root": root}


def _config(library, cache: Path, engine: str, **kw) -> RunConfig:
    return RunConfig(
        encoder="mfcc",
        refs=library["refs"],
        targets=library["targets"],
        ground_truth=library["ground_truth"],
        cache_dir=cache,
        metrics="none",
        k=3,
        engine=engine,
        ray=RayOptions(actors=2, batch_size=2),
        **kw,
    )


def _embeddings(result, cache: Path) -> dict[str, np.ndarray]:
    from benchmark.cache import ArrayCache, EntrySpec
    from encoders import registry

    encoder = registry.build(result.config.encoder)
    store = ArrayCache(cache, encoder.cache_identity(), EntrySpec(shape=(encoder.dim,)))
    hashes = result.dataset.content_hashes
    return {f"{role}/{f.key}": store.get(hashes[f.path]) for role, f in _files(result.dataset)}


def _files(dataset):
    return [("ref", f) for f in dataset.refs] + [("target", f) for f in dataset.targets]


@pytest.fixture(scope="module")
def both(library, local_ray, tmp_path_factory):
    """The same run on the local engine and on Ray, each with a cache of its own."""
    from benchmark import pipeline

    caches = {engine: tmp_path_factory.mktemp(f"cache-{engine}") for engine in ("local", "ray")}
    return {
        engine: (pipeline.run(_config(library, caches[engine], engine), progress=False), caches[engine])
        for engine in ("local", "ray")
    }


def test_ray_equals_local(both):
    (local, local_cache), (on_ray, ray_cache) = both["local"], both["ray"]
    assert on_ray.metrics["n_embedded"] == local.metrics["n_embedded"] == 10
    columns = ["target", "rank", "reference"]
    assert on_ray.topk[columns].equals(local.topk[columns])
    np.testing.assert_allclose(on_ray.topk["similarity"], local.topk["similarity"], atol=1e-5)
    a, b = _embeddings(local, local_cache), _embeddings(on_ray, ray_cache)
    assert a.keys() == b.keys()
    for key in a:
        if a[key] is None:
            assert b[key] is None, key  # the broken file: embedded by neither
        else:
            np.testing.assert_allclose(b[key], a[key], atol=1e-5, err_msg=key)
    assert on_ray.metrics["map"] == local.metrics["map"]
    assert on_ray.config.as_params()["engine"] == "ray" and on_ray.config.as_params()["ray_actors"] == 2
    assert "ray_actors" not in local.config.as_params()


def test_undecodable_file_fails_as_on_the_local_engine(both):
    (local, _), (on_ray, _) = both["local"], both["ray"]
    assert on_ray.failures == local.failures
    assert [(f.role, f.key, f.stage) for f in on_ray.failures] == [("reference", "broken.wav", "decode")]
    assert on_ray.metrics["n_refs"] == 7 and on_ray.metrics["n_targets"] == 3  # the others finished


def _copy_entries(result, source: Path, destination: Path, roles: set[str]) -> int:
    """Copy the cache entries of ``roles``' files (an ``ArrayCache`` entry is a file named by its content hash)."""
    import shutil

    hashes = result.dataset.content_hashes
    wanted = {hashes[f.path] for role, f in _files(result.dataset) if role in roles and f.path in hashes}
    copied = 0
    for entry in source.rglob("*.npy"):
        if entry.stem in wanted:
            target = destination / entry.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(entry, target)
            copied += 1
    return copied


def test_local_and_ray_share_the_cache_and_a_killed_ray_run_resumes(both, library, local_ray, tmp_path, monkeypatch):
    from benchmark import pipeline
    from benchmark.ray_engine import RayEngine

    local, local_cache = both["local"]
    # the local run's cache serves a Ray run completely: no Ray job at all
    shared = tmp_path / "shared"
    assert _copy_entries(local, local_cache, shared, {"ref", "target"}) >= 10
    again = pipeline.run(_config(library, shared, "ray"), progress=False)
    assert again.metrics["n_embedded"] == 0 and again.metrics["n_cached"] == 10

    # the targets cached by the local engine; a Ray run killed after 4 outcomes (a4, b4, broken: a failure, c5):
    # what arrived is in the cache, and the next Ray run embeds only the rest
    cache = tmp_path / "resumed"
    assert _copy_entries(local, local_cache, cache, {"target"}) >= 3
    original = RayEngine.source

    def killed(self, todo):
        for n, pair in enumerate(original(self, todo)):
            if n == 4:
                raise KeyboardInterrupt
            yield pair

    monkeypatch.setattr(RayEngine, "source", killed)
    config = _config(library, cache, "ray", batch_size=1)  # one window per batch: cached as each file arrives
    with pytest.raises(KeyboardInterrupt):
        pipeline.run(config, progress=False)
    monkeypatch.setattr(RayEngine, "source", original)
    resumed = pipeline.run(config, progress=False)
    assert resumed.metrics["n_cached"] == 3 + 3  # 3 references from the killed run, the 3 targets
    assert resumed.metrics["n_embedded"] == 4  # d5, e5, f5, g5
    assert [(f.key, f.stage) for f in resumed.failures] == [("broken.wav", "decode")]
    assert resumed.topk[["target", "rank", "reference"]].equals(local.topk[["target", "rank", "reference"]])
    got, want = _embeddings(resumed, cache), _embeddings(local, local_cache)
    assert all(np.allclose(got[key], want[key], atol=1e-5) for key in want if want[key] is not None)


def test_cluster_without_the_gpus_asked_for_is_refused(library, local_ray, tmp_path):
    from benchmark import pipeline
    from benchmark.ray_engine import EngineUnavailable

    config = _config(library, tmp_path / "cache", "ray").replace(ray=RayOptions(num_gpus=1))
    with pytest.raises(EngineUnavailable, match="--ray-num-gpus 1: the Ray cluster has 0 GPUs"):
        pipeline.run(config, progress=False)


def test_ray_equals_local_on_the_demo_set(demo_set, local_ray, tmp_path):
    """The demo set (references, targets, ground truth): the same top-5 lists and embeddings within 1e-5."""
    from benchmark import pipeline

    runs = {}
    for engine in ("local", "ray"):
        config = RunConfig(
            encoder="mfcc",
            refs=demo_set.refs,
            targets=demo_set.targets,
            ground_truth=demo_set.ground_truth,
            cache_dir=tmp_path / f"cache-{engine}",
            metrics="none",
            k=5,
            engine=engine,
            ray=RayOptions(actors=2, batch_size=8),
        )
        runs[engine] = (pipeline.run(config, progress=False), tmp_path / f"cache-{engine}")
    (local, local_cache), (on_ray, ray_cache) = runs["local"], runs["ray"]
    n_files = len(local.dataset.refs) + len(local.dataset.targets)
    assert on_ray.metrics["n_embedded"] == local.metrics["n_embedded"] == n_files and not on_ray.failures
    columns = ["target", "rank", "reference"]
    assert on_ray.topk[columns].equals(local.topk[columns])
    a, b = _embeddings(local, local_cache), _embeddings(on_ray, ray_cache)
    assert a.keys() == b.keys() and all(a[key] is not None for key in a)
    for key in a:
        np.testing.assert_allclose(b[key], a[key], atol=1e-5, err_msg=key)
    assert on_ray.metrics["map"] == local.metrics["map"]
