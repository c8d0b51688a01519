"""``--index faiss``: recall against exact search is measured and logged, self-matches stay excluded, FAISS-flat
equals exact search, and a missing faiss is refused in one line (exit 2)."""

from __future__ import annotations

import numpy as np
import pytest

from benchmark.config import IndexOptions, RunConfig

faiss = pytest.importorskip("faiss", reason="faiss-cpu is not installed (pip install -e .[faiss])")


def structured(n_refs: int, n_queries: int, dim: int, seed: int = 0):
    """Embedding-like data: a 32-d latent space with 500 clusters mapped into ``dim`` plus isotropic noise; queries
    are noisy copies of references (as covers of a song are near it). Isotropic Gaussian data is the worst case of
    every ANN index and unlike any encoder's embeddings (docs/SCALING.md quotes its recall too)."""
    rng = np.random.default_rng(seed)
    basis = rng.standard_normal((32, dim)).astype(np.float32)
    centres = 2 * rng.standard_normal((500, 32)).astype(np.float32)
    latent = centres[rng.integers(0, 500, n_refs)] + rng.standard_normal((n_refs, 32), dtype=np.float32)
    refs = latent @ basis + 0.5 * rng.standard_normal((n_refs, dim), dtype=np.float32)
    picked = rng.choice(n_refs, n_queries, replace=False)
    queries = refs[picked] + 0.3 * refs.std() * rng.standard_normal((n_queries, dim), dtype=np.float32)
    return queries, refs


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_default_faiss_recall_at_10_is_high_and_matches_a_recomputation():
    from benchmark import index
    from benchmark.ranking import top_k

    queries, refs = structured(50_000, 400, 256)
    exclude = [set() for _ in range(len(queries))]
    exclude[0] = {7}  # a self-match to drop
    retrieved = index.retrieve(queries, refs, 5, exclude, IndexOptions(kind="faiss"))
    recall = retrieved.metrics["index_recall_at_10"]
    assert recall >= 0.95
    assert retrieved.params["faiss_nlist_used"] == index.auto_nlist(50_000) == 894
    assert retrieved.params["index_recall_queries"] == index.RECALL_SAMPLE >= 200
    assert retrieved.metrics["index_build_seconds"] > 0 and retrieved.metrics["index_search_seconds"] > 0
    assert 7 not in retrieved.indices[0]

    # recomputed independently: a fresh index with the logged parameters, a plain loop over the seeded sample
    x = refs / np.linalg.norm(refs, axis=1, keepdims=True)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    quantizer = faiss.IndexFlatIP(256)
    ivf = faiss.IndexIVFFlat(quantizer, 256, 894, faiss.METRIC_INNER_PRODUCT)
    ivf.cp.seed = 1234
    ivf.train(x)
    ivf.add(x)
    ivf.nprobe = 32
    sample = np.sort(np.random.default_rng(0).choice(len(queries), 256, replace=False))
    hits = []
    for i in sample:
        _, found = ivf.search(q[i : i + 1], 11)
        approx = [r for r in found[0] if r >= 0 and r not in exclude[i]][:10]
        exact, _ = top_k(queries[i : i + 1], refs, 10, [exclude[i]])
        hits.append(len(set(approx) & set(exact[0].tolist())) / 10)
    assert recall == pytest.approx(np.mean(hits), abs=1e-9)
    assert len(sample) == index.RECALL_SAMPLE


def test_faiss_flat_equals_exact_top_k_with_self_matches_excluded():
    from benchmark import index
    from benchmark.ranking import top_k

    queries, refs = structured(600, 60, 64, seed=3)
    queries[:10] = refs[:10]  # queries that are references too: excluded from their own results
    exclude = [{i} if i < 10 else set() for i in range(60)]
    exact_idx, exact_sims = top_k(queries, refs, 10, exclude)
    flat = index.retrieve(queries, refs, 10, exclude, IndexOptions(kind="faiss", faiss_type="flat"))
    assert np.array_equal(flat.indices, exact_idx)
    np.testing.assert_allclose(flat.sims, exact_sims, atol=1e-5)
    assert flat.metrics["index_recall_at_10"] == 1.0
    assert all(i not in flat.indices[i] for i in range(10))
    for kind in ("ivf", "hnsw"):  # small: approximate indexes still exclude and keep top_k's shape
        found = index.retrieve(queries, refs, 10, exclude, IndexOptions(kind="faiss", faiss_type=kind))
        assert found.indices.shape == exact_idx.shape and all(i not in found.indices[i] for i in range(10))
        assert found.metrics["index_recall_at_10"] > 0.9


def test_fewer_candidates_than_k_leave_minus_one_and_nan():
    from benchmark import index
    from benchmark.ranking import top_k

    refs = np.eye(4, 8, dtype=np.float32) + 0.01
    queries = refs[:2].copy()
    exclude = [{0, 1, 2}, set()]
    want_idx, want_sims = top_k(queries, refs, 10, exclude)
    got = index.retrieve(queries, refs, 10, exclude, IndexOptions(kind="faiss", faiss_type="flat"))
    assert np.array_equal(got.indices, want_idx)
    assert np.array_equal(np.isnan(got.sims), np.isnan(want_sims))


@pytest.mark.slow
def test_pipeline_with_faiss_flat_equals_exact_and_logs_the_index(tiny_dataset, tmp_path):
    from benchmark import pipeline

    def config(**kw):
        return RunConfig(
            encoder="mfcc",
            refs=tiny_dataset["refs"],
            targets=tiny_dataset["targets"],
            ground_truth=tiny_dataset["ground_truth"],
            cache_dir=tmp_path / "cache",
            metrics="none",
            k=3,
            **kw,
        )

    exact = pipeline.run(config(), progress=False)
    flat = pipeline.run(config(index=IndexOptions(kind="faiss", faiss_type="flat")), progress=False)
    assert exact.topk[["target", "rank", "reference"]].equals(flat.topk[["target", "rank", "reference"]])
    assert flat.metrics["map"] == exact.metrics["map"]  # ground-truth IR metrics are exact either way
    assert flat.metrics["index_recall_at_10"] == 1.0 and "index_recall_at_10" not in exact.metrics
    assert flat.params["ir_metrics_source"].startswith("exact")
    assert config(index=IndexOptions(kind="faiss", faiss_type="flat")).as_params()["index_type"] == "faiss-flat"
    assert exact.config.as_params()["index_type"] == "exact"


@pytest.mark.parametrize(
    ("args", "extra"),
    [(["--index", "faiss"], "faiss"), (["--engine", "ray"], "ray")],
)
def test_missing_extra_is_one_line_exit_2(tiny_dataset, monkeypatch, args, extra):
    import sys

    from click.testing import CliRunner

    from benchmark.cli import main

    monkeypatch.setitem(sys.modules, extra, None)  # not importable
    result = CliRunner().invoke(
        main,
        ["run", "--encoder", "mfcc", "--refs", str(tiny_dataset["refs"]), "--targets", str(tiny_dataset["targets"])]
        + args,
    )
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and f'pip install -e ".[{extra}]"' in lines[0], result.output


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_faiss_flat_equals_exact_on_the_demo_set(demo_set, tmp_path):
    """On the demo set (its references, targets and ground truth): FAISS-flat's top-5 lists are exact search's."""
    from benchmark import pipeline

    def config(**kw):
        return RunConfig(
            encoder="chroma",
            refs=demo_set.refs,
            targets=demo_set.targets,
            ground_truth=demo_set.ground_truth,
            cache_dir=tmp_path / "cache",  # shared: the second run embeds nothing
            metrics="none",
            k=5,
            **kw,
        )

    exact = pipeline.run(config(), progress=False)
    flat = pipeline.run(config(index=IndexOptions(kind="faiss", faiss_type="flat")), progress=False)
    assert len(exact.topk) == 5 * exact.metrics["n_targets"] > 0
    assert exact.topk[["target", "rank", "reference"]].equals(flat.topk[["target", "rank", "reference"]])
    np.testing.assert_allclose(flat.topk["similarity"], exact.topk["similarity"], atol=1e-5)
    assert flat.metrics["map"] == exact.metrics["map"] and flat.metrics["index_recall_at_10"] == 1.0
