"""Window weighting (issue 14, item 6): a file's embedding is the mean of its windows' embeddings weighted by the real
audio each holds; a last window shorter than the policy's ``min_tail`` is dropped when the file has other windows; a
file a whole number of windows long pools exactly as before; whole-file, threaded, worker-process and streamed paths
agree bit for bit; and the rule is part of the cache identity, so embeddings pooled the old way are never served."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from benchmark import decoding, embedding, embedding_file
from benchmark.cache import ArrayCache
from benchmark.data import content_hash, discover
from benchmark.decoding import decode
from encoders.base import POOLING_VERSION, Encoder, ModelCard, WindowPolicy, pool
from encoders.chroma import ChromaStats
from encoders.mfcc import MFCCStats
from encoders.registry import EncoderOptions

CLAP_LIKE = WindowPolicy(window_seconds=10.0, hop_seconds=10.0, pad_last=False)  # CLAP's card policy
FAKE_SR = 1000


def old_pool(rows: np.ndarray) -> np.ndarray:
    """The pooling before issue 14: the plain mean over windows, in float64, as float32."""
    return rows.mean(axis=0, dtype=np.float64).astype(np.float32)


class Deterministic(Encoder):
    """A fake encoder whose numbers tell each window apart (its sum, length, first and last sample)."""

    parallel = "thread"
    card = ModelCard(
        name="deterministic", description="test", sample_rate=FAKE_SR, dim=4, window=CLAP_LIKE, license="-"
    )

    def embed(self, batch):
        return np.array([[np.sum(w, dtype=np.float64), len(w), w[0], w[-1]] for w in batch], dtype=np.float32)


def signal(seconds: float, sample_rate: int, extra: int = 0, seed: int = 0) -> np.ndarray:
    n = int(round(seconds * sample_rate)) + extra
    return (0.3 * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)


# --- the policy ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pad_last", [False, True])
def test_a_14_s_file_has_a_tail_window_weighing_0_4(pad_last):
    policy = WindowPolicy(10.0, 10.0, pad_last=pad_last)
    windows = policy.segment(signal(14.0, FAKE_SR), FAKE_SR)
    assert [len(w) for w in windows] == [10_000, 10_000 if pad_last else 4_000]
    np.testing.assert_array_equal(policy.weights(14_000, FAKE_SR), [1.0, 0.4])


def test_a_file_one_sample_longer_than_60_s_has_no_one_sample_window():
    audio = signal(60.0, FAKE_SR, extra=1)
    windows = CLAP_LIKE.segment(audio, FAKE_SR)
    assert [len(w) for w in windows] == [10_000] * 6  # was 7 windows, the 7th one sample (repeat-padded by CLAP)
    np.testing.assert_array_equal(CLAP_LIKE.weights(len(audio), FAKE_SR), np.ones(6))
    assert sum(len(w) for ws in CLAP_LIKE.stream(np.array_split(audio, 7), FAKE_SR) for w in ws) == 60_000


def test_the_short_tail_rule_and_its_default():
    assert CLAP_LIKE.min_tail == 1.0  # max(1 s, 10 % of 10 s)
    assert WindowPolicy(30.0).min_tail == 3.0  # 10 % of the window
    assert WindowPolicy(0.5).min_tail == 0.25  # at most half the window
    assert WindowPolicy(10.0, min_tail_seconds=2.5).min_tail == 2.5
    assert WindowPolicy().min_tail is None
    # a tail of exactly min_tail is kept (weight 0.1), one sample less is dropped
    assert len(CLAP_LIKE.segment(signal(61.0, FAKE_SR), FAKE_SR)) == 7
    np.testing.assert_allclose(CLAP_LIKE.weights(61_000, FAKE_SR)[-1], 0.1)
    assert len(CLAP_LIKE.segment(signal(61.0, FAKE_SR, extra=-1), FAKE_SR)) == 6
    # never the only window: a file shorter than min_tail still has one
    assert len(CLAP_LIKE.segment(signal(0.5, FAKE_SR), FAKE_SR)) == 1
    np.testing.assert_array_equal(CLAP_LIKE.weights(500, FAKE_SR), [0.05])
    # whole-file policies: one segment, weight 1, whatever the length (min_seconds padding included)
    np.testing.assert_array_equal(WindowPolicy(min_seconds=1.0).weights(10, 100), [1.0])


@pytest.mark.parametrize("seed", range(200))
def test_stream_segment_and_weights_agree(seed):
    """Lengths around whole windows and around min_tail, overlapping and gapped hops, min_seconds padding."""
    rng = np.random.default_rng(seed)
    window = float(rng.choice([0.3, 0.5, 1.0, 2.0]))
    policy = WindowPolicy(
        window_seconds=window,
        hop_seconds=rng.choice([None, 0.25, 0.5, 1.7]),
        pad_last=bool(rng.integers(2)),
        min_seconds=float(rng.choice([0.0, 0.2, 2.5])),
        min_tail_seconds=rng.choice([None, 0.0, 0.1, window]),
    )
    sr = 10
    length = int(rng.integers(0, 80)) if seed % 2 else int(rng.integers(1, 6)) * int(round(window * sr))
    audio = rng.standard_normal(length).astype(np.float32)
    blocks = np.split(audio, np.sort(rng.integers(0, length + 1, size=int(rng.integers(0, 6)))))
    expected = policy.segment(audio, sr)
    got = [w for windows in policy.stream(iter(blocks), sr) for w in windows]
    assert len(got) == len(expected) == len(policy.weights(length, sr)) >= 1
    for a, b in zip(got, expected):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    weights = policy.weights(length, sr)
    assert np.all((weights >= 0) & (weights <= 1))
    if length >= policy.min_seconds * sr:  # only the last can be partial (else windows of padding only weigh 0)
        assert np.all(weights[:-1] == 1.0)


def test_pool_weights():
    rows = np.random.default_rng(1).standard_normal((5, 7)).astype(np.float32)
    assert np.array_equal(pool(rows), old_pool(rows))
    assert np.array_equal(pool(rows, np.ones(5)), old_pool(rows))  # equal weights: bit-identical
    assert np.array_equal(pool(rows, np.zeros(5)), old_pool(rows))  # no real audio anywhere: the plain mean
    weights = np.array([1, 1, 1, 1, 0.4])
    np.testing.assert_allclose(pool(rows, weights), np.average(rows.astype(np.float64), axis=0, weights=weights), 1e-6)
    assert pool(rows, weights).dtype == np.float32
    with pytest.raises(ValueError, match="4 pooling weights for 5"):
        pool(rows, np.ones(4))


def test_the_rule_is_in_windowed_identities_only():
    params = CLAP_LIKE.as_params()
    assert params["pooling"] == POOLING_VERSION == 2 and params["min_tail_seconds"] == 1.0
    assert "pooling" not in WindowPolicy().as_params()  # whole file: embeddings unchanged, cache kept
    assert "window_pooling" not in ChromaStats().card.as_params()
    windowed = MFCCStats(EncoderOptions(window=WindowPolicy(10.0)))
    assert windowed.card.as_params()["window_pooling"] == POOLING_VERSION
    assert WindowPolicy(10.0).as_params() != WindowPolicy(10.0, min_tail_seconds=2.0).as_params()


# --- encoders: embed_audio and the harness -------------------------------------------------------------------------


def _manual(encoder: Encoder, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    windows = encoder.window.segment(audio, encoder.sample_rate)
    return encoder.embed(windows), encoder.window.weights(len(audio), encoder.sample_rate)


@pytest.mark.parametrize("make", [Deterministic, lambda: MFCCStats(EncoderOptions(window=CLAP_LIKE))])
def test_embed_audio_weights_the_14_s_tail_and_keeps_whole_windows_as_they_were(make):
    encoder = make()
    sr = encoder.sample_rate
    rows, weights = _manual(encoder, signal(14.0, sr, seed=1))
    np.testing.assert_array_equal(weights, [1.0, 0.4])
    expected = ((rows[0].astype(np.float64) + 0.4 * rows[1].astype(np.float64)) / 1.4).astype(np.float32)
    got = encoder.embed_audio(signal(14.0, sr, seed=1))
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)
    assert not np.allclose(got, old_pool(rows), rtol=1e-4)  # the tail no longer weighs as much as a full window
    for seconds in (10.0, 20.0, 60.0):  # a whole number of windows: exactly today's embedding
        audio = signal(seconds, sr, seed=2)
        rows, weights = _manual(encoder, audio)
        assert np.all(weights == 1.0)
        assert np.array_equal(encoder.embed_audio(audio), old_pool(rows)), seconds
    audio = signal(60.0, sr, extra=1, seed=3)  # 60 s + 1 sample: the 6 full windows, plain mean
    rows = encoder.embed(encoder.window.segment(audio[:-1], sr))
    assert len(rows) == 6 and np.array_equal(encoder.embed_audio(audio), old_pool(rows))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """At each encoder's rate (no resampling, exact lengths): a 14 s file, 60 s + 1 sample, a whole 20 s, a 10.5 s
    one (its 0.5 s tail dropped), a 3 s one (one short window)."""
    made = {}
    for name, sr in (("fake", FAKE_SR), ("mfcc", 22050)):
        root = tmp_path_factory.mktemp(name)
        for i, (seconds, extra) in enumerate(((14.0, 0), (60.0, 1), (20.0, 0), (10.5, 0), (3.0, 0))):
            sf.write(root / f"f{i}.wav", signal(seconds, sr, extra, seed=10 + i), sr, subtype="FLOAT")
        found = discover(root, "reference")
        made[name] = found, {f.path: content_hash(f.path) for f in found}
    return made


def _embed(files, encoder, cache_dir, monkeypatch, stream=False, processes=False):
    monkeypatch.setattr(embedding_file, "STREAM_MIN_SECONDS", 5.0 if stream else float("inf"))
    monkeypatch.setattr(decoding, "BLOCK_FRAMES", 777)  # many blocks, none a multiple of the window
    found, hashes = files
    cache = ArrayCache(cache_dir, encoder.cache_identity())
    return embedding.embed_files(found, "reference", encoder, cache, hashes, 3, 2, False, processes=processes)


def test_the_harness_pools_like_embed_audio_threaded_and_streamed(files, tmp_path, monkeypatch):
    encoder = Deterministic()
    threads = _embed(files["fake"], encoder, tmp_path / "t", monkeypatch)
    streamed = _embed(files["fake"], encoder, tmp_path / "s", monkeypatch, stream=True)
    assert threads.failures == streamed.failures == []
    assert threads.stats.windows == streamed.stats.windows == 2 + 6 + 2 + 1 + 1  # no 1-sample or 0.5 s window
    for item in files["fake"][0]:
        expected = encoder.embed_audio(decode(item.path, FAKE_SR))
        assert np.array_equal(threads.embeddings[item.key], expected), item.key
        assert np.array_equal(streamed.embeddings[item.key], expected), item.key
    # the 14 s file: weights 1 and 0.4 — not the old equal-weight mean
    rows, _ = _manual(encoder, decode(files["fake"][0][0].path, FAKE_SR))
    assert not np.allclose(threads.embeddings["f0.wav"], old_pool(rows))


def test_a_weight_free_encoder_in_processes_threads_and_streamed_agree(files, tmp_path, monkeypatch):
    encoder = MFCCStats(EncoderOptions(window=CLAP_LIKE))
    threads = _embed(files["mfcc"], encoder, tmp_path / "t", monkeypatch)
    processes = _embed(files["mfcc"], encoder, tmp_path / "p", monkeypatch, processes=True)
    streamed = _embed(files["mfcc"], encoder, tmp_path / "s", monkeypatch, stream=True)
    assert threads.stats.windows == processes.stats.windows == streamed.stats.windows == 12
    for item in files["mfcc"][0]:
        expected = encoder.embed_audio(decode(item.path, 22050))
        for result in (threads, processes, streamed):
            assert np.array_equal(result.embeddings[item.key], expected), item.key
    whole = files["mfcc"][0][2]  # 20 s: exactly the embedding from before the weighting
    rows, _ = _manual(encoder, decode(whole.path, 22050))
    assert np.array_equal(threads.embeddings[whole.key], old_pool(rows))


def test_embeddings_pooled_the_old_way_are_never_served(files, tmp_path, monkeypatch):
    encoder = Deterministic()
    found, hashes = files["fake"]
    identity = encoder.cache_identity()
    old = {
        **identity,
        "card": {k: v for k, v in identity["card"].items() if k not in ("window_pooling", "window_min_tail_seconds")},
    }
    stale = ArrayCache(tmp_path, old)
    for item in found:
        stale.put(hashes[item.path], np.full(4, 7.0, dtype=np.float32))  # what an old run left
    assert ArrayCache(tmp_path, identity).namespace != stale.namespace
    result = _embed(files["fake"], encoder, tmp_path, monkeypatch)
    assert result.stats.cached == 0 and result.stats.embedded == len(found)
    assert not any(np.array_equal(v, np.full(4, 7.0)) for v in result.embeddings.values())
    again = _embed(files["fake"], encoder, tmp_path, monkeypatch)  # the new entries are served
    assert again.stats.cached == len(found)


def test_min_tail_option_sets_the_shortest_kept_tail(tmp_path):
    """``--min-tail`` (with ``--window``): the 14 s file's 4 s tail is kept under the default rule (1 s) and dropped
    at ``--min-tail 5``, so the file's embedding is its first window's; the value is part of the cache identity and
    a logged input; out-of-range values and ``--min-tail`` without ``--window`` are refused in one line."""
    from click.testing import CliRunner

    from benchmark import pipeline
    from benchmark.cli import main
    from benchmark.config import OptionError, RunConfig
    from benchmark.tracking_params import run_inputs
    from encoders import registry

    sr = 22050
    audio = signal(14.0, sr, seed=3)

    def encoder_for(**kw):
        config = RunConfig(encoder="mfcc", refs=tmp_path, targets=tmp_path, window_seconds=10.0, **kw)
        return config, registry.build("mfcc", pipeline.encoder_options(config))

    config, strict = encoder_for(min_tail_seconds=5.0)
    _, default = encoder_for()
    first_window = strict.embed([audio[: 10 * sr]])[0]
    assert np.array_equal(strict.embed_audio(audio), first_window)
    assert not np.array_equal(default.embed_audio(audio), first_window)  # the 4 s tail counts, weighing 0.4
    assert strict.cache_identity() != default.cache_identity()
    assert run_inputs(config)["min_tail"] == 5.0

    with pytest.raises(OptionError, match="--min-tail 6: expected seconds between 0 and half the window"):
        RunConfig(encoder="mfcc", refs=tmp_path, targets=tmp_path, window_seconds=10.0, min_tail_seconds=6.0)
    (tmp_path / "a.wav").write_bytes(b"")
    for args in (["--min-tail", "1"], ["--window", "10", "--min-tail", "nan"]):
        result = CliRunner().invoke(main, ["run", "--encoder", "mfcc", "--refs", str(tmp_path), *args])
        assert result.exit_code == 2, result.output
        assert "--min-tail" in result.output and "Traceback" not in result.output
