"""The robustness scenario (benchmark/scenarios): queries made from --refs, their cache, per-deformation metrics,
bad input, and the run / suite / compare path it shares with folder-pair runs."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from click.testing import CliRunner

pytest.importorskip("pedalboard")

from benchmark import pipeline  # noqa: E402
from benchmark.cli import main  # noqa: E402
from benchmark.config import RunConfig  # noqa: E402

SR = 22050
FAST = ("identity", "gain_-10db", "noise_snr_10", "lowpass_4k")  # no Rubber Band, no codec: quick to make


def _song(seed: int, seconds: float = 6.0) -> np.ndarray:
    """A clean synthetic song: 3 notes/s from a seed-specific register and timbre."""
    rng = np.random.default_rng(seed)
    base = 110 * 2 ** (rng.integers(0, 24) / 12)
    notes = base * 2 ** (rng.integers(0, 12, size=int(seconds * 3)) / 12)
    n = int(seconds * SR)
    freq = np.repeat(notes, -(-n // len(notes)))[:n]
    phase = 2 * np.pi * np.cumsum(freq) / SR
    y = sum(np.sin(k * phase) / k ** rng.uniform(0.5, 2) for k in range(1, int(rng.integers(1, 6)) + 1))
    return (0.5 * y / np.max(np.abs(y))).astype(np.float32)


def _refs(folder: Path, n: int, seconds: float = 6.0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        sf.write(folder / f"song{i:02d}.wav", _song(i, seconds), SR)
    return folder


def _config(refs: Path, cache: Path, encoder: str = "mfcc", **kw) -> RunConfig:
    kw.setdefault("deformations", FAST)
    kw.setdefault("query_seconds", 2.0)
    return RunConfig(
        encoder=encoder,
        refs=refs,
        targets=cache / "deformed",
        metrics="none",
        cache_dir=cache,
        scenario="robustness",
        **kw,
    )


def _run(config: RunConfig) -> pipeline.RunResult:
    return pipeline.run(config, progress=False, prepared=pipeline.prepare(config, pipeline.load(config)))


def _prepare(config: RunConfig):
    dataset = pipeline.load(config)
    failures: list = []
    stats = dataset.prepare_targets(1, failures, progress=False)
    return dataset, stats, failures


# --- queries and their cache ------------------------------------------------------------------------------------


def test_queries_are_made_from_the_references_with_their_source_as_ground_truth(tmp_path):
    refs = _refs(tmp_path / "refs", 3)
    dataset, stats, failures = _prepare(_config(refs, tmp_path / "cache"))
    assert not failures
    assert stats["n_queries"] == stats["n_deformed"] == 3 * len(FAST)
    assert [t.key for t in dataset.targets[:3]] == [f"identity/song{i:02d}.wav" for i in range(3)]
    for target in dataset.targets:
        deformation, source = target.key.split("/", 1)
        assert dataset.relevance[target.key] == {source: 1.0}
        assert dataset.query_labels[target.key] == deformation
        info = sf.info(target.path)
        assert target.path.suffix == ".wav" and info.samplerate == 44100 and info.channels == 1
        assert info.frames == 2 * 44100  # query_seconds
        assert (tmp_path / "cache" / "deformed") in target.path.parents
    # the identity query is an excerpt of its (decoded) source at the seeded offset
    from benchmark.data import content_hash
    from benchmark.decoding import decode
    from benchmark.scenarios.queries import offsets

    source = decode(refs / "song00.wav", 44100)
    start, other = offsets(len(source), 2 * 44100, 0, content_hash(refs / "song00.wav"))
    query, _ = sf.read(dataset.targets[0].path, dtype="float32")
    assert np.abs(source[start : start + len(query)] - query).max() < 1e-4  # 16-bit PCM
    assert other is not None and abs(other - start) >= len(query)


def test_a_second_run_deforms_nothing_and_a_changed_parameter_deforms_again(tmp_path):
    refs = _refs(tmp_path / "refs", 3)
    cache = tmp_path / "cache"
    first, stats, _ = _prepare(_config(refs, cache))
    assert stats["n_deformed"] == 12 and stats["n_deformations_cached"] == 0
    written = {t.key: t.path.read_bytes() for t in first.targets}

    again, stats, _ = _prepare(_config(refs, cache))  # a re-run: another process, same cache
    assert stats["n_deformed"] == 0 and stats["n_deformations_cached"] == 12
    assert {t.key: t.path.read_bytes() for t in again.targets} == written

    stats = first.prepare_targets(1, [], progress=False)  # a suite's second encoder: the same dataset again
    assert stats["n_deformed"] == 0 and stats["n_deformations_cached"] == 12 and len(first.targets) == 12

    first.targets[0].path.write_bytes(b"torn")  # an invalid entry is made again
    _, stats, _ = _prepare(_config(refs, cache))
    assert stats["n_deformed"] == 1 and stats["n_deformations_cached"] == 11

    _, stats, _ = _prepare(_config(refs, cache, scenario_seed=1))  # another seed: other offsets, other noise
    assert stats["n_deformed"] == 12
    _, stats, _ = _prepare(_config(refs, cache, deformations=("gain_-6db",)))  # another strength: its own entries
    assert stats["n_deformed"] == 3


def test_a_reference_shorter_than_the_query_is_used_whole_and_said(tmp_path):
    refs = _refs(tmp_path / "refs", 2)
    sf.write(refs / "short.wav", _song(7, seconds=1.0), SR)
    dataset, stats, failures = _prepare(_config(refs, tmp_path / "cache", deformations=("identity", "excerpt")))
    assert not failures
    short = {t.key: t for t in dataset.targets}
    assert "identity/short.wav" in short and "excerpt/short.wav" not in short
    assert sf.info(short["identity/short.wav"].path).frames == 44100  # the whole second: shortened, not padded
    assert stats["n_refs_shorter_than_query"] == 1
    assert stats["n_excerpt_skipped"] == 1  # nor does a 6 s song hold two 2 s excerpts? it does: only short.wav
    assert any("shortened" in note and "short.wav" in note for note in dataset.notes)
    assert any("excerpt" in note and "short.wav" in note for note in dataset.notes)


def test_an_undecodable_reference_is_a_recorded_failure_and_the_others_carry_on(tmp_path):
    refs = _refs(tmp_path / "refs", 3)
    (refs / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00not audio at all")
    result = _run(_config(refs, tmp_path / "cache", deformations=("identity",)))
    stages = {(f.key, f.stage) for f in result.failures}
    assert ("broken.wav", "queries") in stages
    assert result.metrics["n_queries"] == 3 and result.metrics["n_refs_without_queries"] == 1
    assert result.metrics["map.identity"] == pytest.approx(result.metrics["map"])


# --- metrics by deformation -------------------------------------------------------------------------------------


def test_per_deformation_metrics_are_the_means_over_that_deformations_queries_with_bootstrap_cis():
    from benchmark.scenarios.report import per_label
    from metrics.ir import bootstrap_ci

    per_target = pd.DataFrame(
        {
            "target": ["a/1", "a/2", "a/3", "b/1", "b/2"],
            "average_precision": [1.0, 0.5, 1.0, 0.25, 1.0],
            "reciprocal_rank": [1.0, 0.5, 1.0, 0.25, 1.0],
            "hit_rate_at_1": [1.0, 0.0, 1.0, 0.0, 1.0],
            "recall_at_5": [1.0, 1.0, 1.0, 0.0, 1.0],
        }
    )
    labels = {"a/1": "a", "a/2": "a", "a/3": "a", "b/1": "b", "b/2": "b"}
    grouped = per_label(per_target, labels, order=("b", "a"), k=5)
    m = grouped.metrics
    assert m["map.a"] == pytest.approx(2.5 / 3) and m["hit_rate_at_1.b"] == 0.5 and m["recall_at_5.b"] == 0.5
    assert (m["map.a_ci_low"], m["map.a_ci_high"]) == bootstrap_ci([1.0, 0.5, 1.0])
    assert m["n_queries.a"] == 3
    assert list(grouped.table["deformation"]) == ["b", "a"]
    assert list(grouped.per_target["deformation"]) == ["a", "a", "a", "b", "b"]


def test_per_deformation_metrics_declare_their_direction():
    from benchmark.measures import has_direction, headline_metrics, lower_is_better, measure

    for name in ("hit_rate_at_1.tempo_0.9", "map.gain_-10db_ci_low", "recall_at_5.mp3_32k", "mrr.noise_snr_20"):
        assert measure(name) is not None and not lower_is_better(name), name
    assert not has_direction("n_deformed") and not has_direction("n_queries.identity")
    assert not any("." in name for name in headline_metrics([5]))


@pytest.mark.slow
def test_identity_gives_map_1_on_the_demo_references(demo_set, tmp_path):
    """With the default 20 s queries every demo piece (14-20 s) is its own query: the identity query is its
    reference's audio (resampled to 44.1 kHz, 16-bit), which any encoder must find first."""
    refs = sorted(demo_set.refs.glob("*.wav"))
    for encoder in ("mfcc", "chroma", "chroma-keyinv"):  # timbre, harmony, key-invariant harmony
        result = _run(
            _config(demo_set.refs, tmp_path / "cache", encoder, deformations=("identity",), query_seconds=20.0)
        )
        assert result.metrics["n_queries"] == len(refs)
        assert result.metrics["n_refs_shorter_than_query"] == sum(sf.info(r).duration < 20.0 for r in refs)
        assert result.metrics["map.identity"] == 1.0, encoder
        assert result.metrics["hit_rate_at_1.identity"] == 1.0
        assert result.metrics["map"] == 1.0


@pytest.mark.slow
def test_a_baselines_hit_rate_drops_as_noise_rises(tmp_path):
    refs = _refs(tmp_path / "refs", 16)
    noise = ("noise_snr_20", "noise_snr_10", "noise_snr_0")
    hits = []
    for encoder in ("mfcc", "chroma"):
        metrics = _run(_config(refs, tmp_path / "cache", encoder, deformations=noise, query_seconds=3.0)).metrics
        hits.append([metrics[f"hit_rate_at_1.{d}"] for d in noise])
    mean = np.mean(hits, axis=0)  # over the two baselines (chroma alone barely notices pink noise on pure tones)
    assert mean[0] > mean[1] > mean[2], hits


# --- the command line: refusals, and the run / suite / compare path -------------------------------------------


@pytest.mark.parametrize(
    "extra, says",
    [
        (["--targets", "{refs}"], "--targets"),
        (["--ground-truth", "{refs}/gt.csv"], "--ground-truth"),
        (["--deformations", "identity,wobble"], "unknown deformation 'wobble'"),
        (["--query-seconds", "0"], "--query-seconds"),
    ],
)
def test_bad_scenario_options_are_one_line_with_exit_2(tmp_path, extra, says):
    refs = _refs(tmp_path / "refs", 1, seconds=1.0)
    args = ["run", "--encoder", "mfcc", "--scenario", "robustness", "--refs", str(refs), "--no-progress"]
    result = CliRunner().invoke(main, args + [part.format(refs=refs) for part in extra])
    assert result.exit_code == 2, result.output
    assert says in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output


def test_scenario_options_without_a_scenario_and_an_unknown_scenario_are_refused(tmp_path):
    refs = _refs(tmp_path / "refs", 1, seconds=1.0)
    base = ["run", "--encoder", "mfcc", "--refs", str(refs), "--targets", str(refs), "--no-progress"]
    result = CliRunner().invoke(main, base + ["--deformations", "identity"])
    assert result.exit_code == 2 and "needs --scenario robustness" in result.output
    result = CliRunner().invoke(main, ["run", "--encoder", "mfcc", "--scenario", "chaos", "--refs", str(refs)])
    assert result.exit_code == 2 and "unknown scenario" in result.output


@pytest.mark.slow
def test_a_scenario_suite_logs_per_deformation_results_and_compare_draws_the_heatmap(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)
    refs = _refs(tmp_path / "refs", 4, seconds=4.0)
    experiment = f"scenario-{uuid.uuid4().hex[:8]}"
    args = ["suite", "--encoders", "mfcc,chroma", "--scenario", "robustness", "--refs", str(refs)]
    args += ["--deformations", "identity,gain_-10db,noise_snr_10", "--query-seconds", "1.5", "--metrics", "none"]
    args += ["--cache-dir", str(tmp_path / "cache"), "--experiment", experiment, "--no-progress"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "| deformation | mfcc | chroma |" in result.output  # the comparison's per-deformation hit@1 table

    client = MlflowClient()
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    parent = next(r for r in runs if r.data.tags.get("musicbench.suite") == "true")
    children = {r.data.tags["musicbench.encoder"]: r for r in runs if r is not parent}
    deformed = sorted(children[name].data.metrics["count/n_deformed"] for name in ("mfcc", "chroma"))
    assert deformed == [0, 12]  # the first encoder deformed, the second found every query cached
    for child in children.values():
        m, params = child.data.metrics, child.data.params
        for d in ("identity", "gain_-10db", "noise_snr_10"):
            for name in ("map", "mrr", "hit_rate_at_1", "recall_at_5"):
                key = f"robustness/{name}.{d}"
                assert key in m and f"{key}_ci_low" in m and f"{key}_ci_high" in m
        assert params["scenario"] == "robustness" and params["query_seconds"] == "1.5"
        assert params["deformations"] == "identity,gain_-10db,noise_snr_10" and params["scenario_seed"] == "0"
        artifacts = {
            a.path for folder in ("tables", "figures") for a in client.list_artifacts(child.info.run_id, folder)
        }
        assert {"tables/per_deformation.csv", "tables/per_deformation.json", "figures/per_deformation.png"} <= artifacts
        table = client.load_table(child.info.experiment_id, "tables/per_deformation.json", run_ids=[child.info.run_id])
        assert list(table["deformation"]) == ["identity", "gain_-10db", "noise_snr_10"]
    figures = {a.path for a in client.list_artifacts(parent.info.run_id, "comparison/figures")}
    assert "comparison/figures/deformation_heatmap.png" in figures


@pytest.mark.slow
def test_demo_runs_the_scenario_on_the_demo_references(tmp_path, monkeypatch):
    """``musicbench demo --scenario robustness``: the demo set's references (here a stand-in, and two cheap
    deformations as the default set, to stay fast), the weight-free encoders and their key-invariant forms, no
    targets."""
    import benchmark.demo
    from benchmark.demo import DemoSet
    from benchmark.scenarios import deformations

    monkeypatch.chdir(tmp_path)
    root = tmp_path / "demo"
    _refs(root / "refs", 3, seconds=15.0)
    monkeypatch.setattr(benchmark.demo, "build_demo", lambda **kw: DemoSet.at(root))
    monkeypatch.setattr(deformations, "DEFAULT_DEFORMATIONS", ("identity", "gain_-10db"))
    monkeypatch.setenv("MUSICBENCH_CACHE", str(tmp_path / "cache"))
    result = CliRunner().invoke(main, ["demo", "--scenario", "robustness", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "| deformation | mfcc | chroma | chroma-keyinv | tonal-timbre |" in result.output
    assert "| identity | 1.000 | 1.000 |" in result.output
