"""Weight-free encoders embedded in worker processes give exactly what the threaded path gives: the same embeddings
(bit for bit), failures (same stage, same message, same order), cache entries, statistics and progress; a worker
that dies takes only its own file with it."""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
import warnings
from typing import ClassVar

import numpy as np
import pytest
import soundfile as sf
from audio_factory import SR, tone

from benchmark import data, decoding, embedding, embedding_file, embedding_workers, parallel, pipeline
from benchmark.cache import ArrayCache
from benchmark.config import RunConfig
from benchmark.data import content_hash, discover
from encoders.base import Encoder, ModelCard, WindowPolicy
from encoders.chroma import ChromaStats
from encoders.mfcc import MFCCStats
from encoders.registry import EncoderOptions

pytestmark = pytest.mark.filterwarnings("ignore:n_fft=.* is too large:UserWarning")  # g_short.wav, on purpose

NAN_SECONDS, RAISE_SECONDS, KILL_SECONDS = 0.7, 0.8, 0.9  # PoisonedMFCC recognises these files by their length


class PoisonedMFCC(MFCCStats):
    """MFCC statistics that fail the way a broken encoder would, for files of a given length: NaN output for
    the 0.7 s one, an exception for the 0.8 s one, and (with ``kill=True``) a worker killed by the 0.9 s one."""

    kill = False

    def embed(self, batch):
        out = super().embed(batch)
        for i, audio in enumerate(batch):
            if len(audio) == round(NAN_SECONDS * SR):
                out[i, 0] = np.nan
            elif len(audio) == round(RAISE_SECONDS * SR):
                raise ValueError("poisoned input")
            elif self.kill and len(audio) == round(KILL_SECONDS * SR):
                os.kill(os.getpid(), signal.SIGKILL)  # as the out-of-memory killer would
        return out


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Ten short files of every kind the embed stage meets, in a sorted order that mixes good and bad ones."""
    root = tmp_path_factory.mktemp("parallel")
    for i, seconds in enumerate((1.5, 0.6, 1.1, 0.3)):
        sf.write(root / f"a{i}.wav", tone(220.0 * 2 ** (i / 5), seconds, noise=0.02, seed=i), SR)
    stereo = np.stack([tone(330.0, 1.2, 44100), tone(331.0, 1.2, 44100, noise=0.01, seed=7)], axis=1)
    sf.write(root / "b_stereo_44k.wav", stereo, 44100)  # resampled and mixed down
    (root / "c_corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really audio")
    (root / "d_empty.wav").write_bytes(b"")
    sf.write(root / "e_nan.wav", tone(500.0, NAN_SECONDS), SR)
    sf.write(root / "f_raises.wav", tone(600.0, RAISE_SECONDS), SR)
    sf.write(root / "g_short.wav", tone(700.0, 0.04), SR)  # shorter than one FFT frame: librosa warns
    return root


@pytest.fixture(scope="module")
def files(folder):
    found = discover(folder, "reference")
    return found, {f.path: content_hash(f.path) for f in found}


class Progress:
    """Stands in for tqdm: records the bar's arguments and every update."""

    bars: ClassVar[list] = []

    def __init__(self, **kwargs):
        self.kwargs, self.updates = kwargs, 0
        Progress.bars.append(self)

    def update(self, n=1):
        self.updates += n

    def close(self):
        self.closed = True


def _embed(files, encoder, cache_dir, processes, monkeypatch, batch_size=3, **kw):
    monkeypatch.setattr(embedding, "progress_bar", lambda **kwargs: Progress(**kwargs))
    Progress.bars = []
    found, hashes = files
    cache = ArrayCache(cache_dir, encoder.cache_identity())
    result = embedding.embed_files(
        found,
        "reference",
        encoder,
        cache,
        hashes,
        batch_size=batch_size,
        workers=2,
        progress=True,
        processes=processes,
        **kw,
    )
    (bar,) = Progress.bars
    return result, cache, (bar.kwargs, bar.updates, bar.closed)


def _entries(cache):
    return {p.relative_to(cache.folder).as_posix(): np.load(p) for p in sorted(cache.folder.rglob("*.npy"))}


@pytest.mark.parametrize(
    "encoder",
    [
        PoisonedMFCC(),
        ChromaStats(),
        PoisonedMFCC(EncoderOptions(window=WindowPolicy(window_seconds=0.5, hop_seconds=0.25))),
    ],
    ids=["mfcc", "chroma", "mfcc-windows"],
)
def test_processes_give_exactly_what_threads_give(files, encoder, tmp_path, monkeypatch):
    threads, thread_cache, thread_bar = _embed(files, encoder, tmp_path / "threads", False, monkeypatch)
    processes, process_cache, process_bar = _embed(files, encoder, tmp_path / "processes", True, monkeypatch)

    assert list(processes.embeddings) == list(threads.embeddings)  # same files, same order
    for key, vector in threads.embeddings.items():
        assert processes.embeddings[key].dtype == np.float32
        np.testing.assert_array_equal(processes.embeddings[key], vector, err_msg=key)  # bit for bit
    assert processes.failures == threads.failures  # role, file, stage and message, in the same order
    assert dataclasses.asdict(processes.stats) == dataclasses.asdict(threads.stats)
    assert process_bar == thread_bar
    thread_entries, process_entries = _entries(thread_cache), _entries(process_cache)
    assert list(process_entries) == list(thread_entries)
    assert all(np.array_equal(process_entries[k], v) for k, v in thread_entries.items())

    stages = {f.key: f.stage for f in threads.failures}
    assert stages["c_corrupt.wav"] == stages["d_empty.wav"] == "decode"
    assert "empty file" in next(f.message for f in threads.failures if f.key == "d_empty.wav")
    if isinstance(encoder, PoisonedMFCC) and encoder.window.window_seconds is None:  # whole files: poisoned
        assert stages["e_nan.wav"] == stages["f_raises.wav"] == "embed"
        assert "poisoned input" in next(f.message for f in threads.failures if f.key == "f_raises.wav")
    assert threads.stats.embedded == len(threads.embeddings) >= 6


def test_second_pass_reads_the_same_cache_in_both_paths(files, tmp_path, monkeypatch):
    encoder = MFCCStats()
    first, _, _ = _embed(files, encoder, tmp_path / "cache", True, monkeypatch)
    again, _, bar = _embed(files, encoder, tmp_path / "cache", True, monkeypatch)
    assert again.stats.cached == first.stats.embedded and again.stats.embedded == 0
    assert all(np.array_equal(again.embeddings[k], v) for k, v in first.embeddings.items())
    assert bar[0]["initial"] == first.stats.embedded


def test_a_worker_killed_by_one_file_fails_that_file_only(files, folder, tmp_path, monkeypatch):
    sf.write(tmp_path / "killer.wav", tone(800.0, KILL_SECONDS), SR)
    found, hashes = files
    killer = discover(tmp_path, "reference")[0]
    hashes = {**hashes, killer.path: content_hash(killer.path)}
    encoder = PoisonedMFCC()
    encoder.kill = True
    order = found[:3] + [killer] + found[3:]
    result = embedding.embed_files(
        order,
        "reference",
        encoder,
        ArrayCache(None, {}),
        hashes,
        batch_size=3,
        workers=2,
        progress=False,
        processes=True,
    )
    threads = embedding.embed_files(
        found,
        "reference",
        PoisonedMFCC(),
        ArrayCache(None, {}),
        hashes,
        batch_size=3,
        workers=2,
        progress=False,
        processes=False,
    )
    (died,) = [f for f in result.failures if f.key == "killer.wav"]
    assert died.stage == "embed" and "worker process decoding and embedding it died" in died.message
    assert [f for f in result.failures if f.key != "killer.wav"] == threads.failures
    assert list(result.embeddings) == list(threads.embeddings)
    assert all(np.array_equal(result.embeddings[k], v) for k, v in threads.embeddings.items())


def test_warnings_raised_in_workers_are_shown_by_the_parent(files, tmp_path, monkeypatch):
    monkeypatch.setattr(embedding_workers, "_SHOWN", {})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        _embed(files, ChromaStats(), None, True, monkeypatch)  # librosa's "n_fft too large" on the short files
    assert any("n_fft" in str(w.message) for w in caught), [str(w.message) for w in caught]


@pytest.mark.slow  # two pipeline runs (ranking imports torch, so the second pool starts a forkserver): ~10 s
def test_the_pipeline_gives_the_same_run_either_way(tiny_dataset, tmp_path, monkeypatch):
    config = RunConfig(
        encoder="mfcc",
        refs=tiny_dataset["refs"],
        targets=tiny_dataset["targets"],
        ground_truth=tiny_dataset["ground_truth"],
        metrics="none",
        cache_dir=tmp_path / "threads",
    )
    threads = pipeline.run(config, progress=False)
    monkeypatch.setattr(embedding_workers, "PROCESS_MIN_BYTES", 0)
    processes = pipeline.run(config.replace(cache_dir=tmp_path / "processes"), progress=False)
    assert processes.topk.equals(threads.topk) and processes.per_target.equals(threads.per_target)
    assert np.array_equal(processes.similarity, threads.similarity)
    timing = ("_seconds", "_per_second")
    assert {k: v for k, v in processes.metrics.items() if not k.endswith(timing)} == {
        k: v for k, v in threads.metrics.items() if not k.endswith(timing)
    }


def test_who_uses_processes(files, tmp_path, monkeypatch):
    found, _ = files
    assert not embedding_workers.use_processes(MFCCStats(), found, workers=2)  # a few seconds of audio: threads
    assert embedding_workers.use_processes(MFCCStats(), found, workers=2, at_any_size=True)
    assert not embedding_workers.use_processes(MFCCStats(), found, workers=1, at_any_size=True)
    assert not embedding_workers.use_processes(MFCCStats(), found[:1], workers=2, at_any_size=True)
    neural = type("Neural", (MFCCStats,), {"parallel": "thread"})()
    assert not embedding_workers.use_processes(neural, found, workers=2, at_any_size=True)
    monkeypatch.setattr(embedding_workers, "PROCESS_MIN_BYTES", sum(os.stat(f.path).st_size for f in found))
    assert embedding_workers.use_processes(MFCCStats(), found, workers=2)


def test_torch_in_the_parent_is_never_forked(monkeypatch):
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    assert parallel.start_method() == ("fork" if sys.platform.startswith("linux") else "forkserver")
    monkeypatch.setitem(sys.modules, "torch", sys)  # any module object: "torch has been imported"
    assert parallel.start_method() in ("forkserver", "spawn")


@pytest.mark.slow  # a forkserver's workers import librosa themselves: ~3-10 s on 2 busy cores
def test_forkserver_workers_give_the_same_embeddings(files, tmp_path, monkeypatch):
    threads, _, _ = _embed(files, MFCCStats(), None, False, monkeypatch)
    monkeypatch.setattr(parallel, "start_method", lambda: "forkserver")
    processes, _, _ = _embed(files, MFCCStats(), None, True, monkeypatch)
    assert processes.failures == threads.failures
    assert all(np.array_equal(processes.embeddings[k], v) for k, v in threads.embeddings.items())


# --- long files: decoded and cut as a stream, with exactly the whole-file path's windows, batches and numbers ------


class BatchSensitive(Encoder):
    """A stand-in encoder whose numbers show the batch each window was embedded in: any change of windows
    (starts, lengths, padding) or of batches (composition, order of calls) changes the embeddings."""

    parallel = "thread"
    card = ModelCard(
        name="batch-sensitive",
        description="test",
        sample_rate=SR,
        dim=5,
        window=WindowPolicy(window_seconds=0.5, hop_seconds=0.3, pad_last=False),
        license="test",
    )

    def __init__(self):
        self.calls = 0

    def embed(self, batch):
        self.calls += 1
        return np.array(
            [[float(np.sum(w, dtype=np.float64)), len(w), len(batch), i, self.calls] for i, w in enumerate(batch)],
            dtype=np.float32,
        )


@pytest.fixture(scope="module")
def long_and_short(tmp_path_factory):
    """Short and 'long' files mixed (long: over the 3 s the tests set as STREAM_MIN_SECONDS), one of them 44.1 kHz
    stereo (resampled as a stream) and one with a length that is not a whole number of hops."""
    root = tmp_path_factory.mktemp("long")
    for i, seconds in enumerate((1.3, 4.1, 0.7, 3.55, 0.2, 2.0)):
        sf.write(root / f"f{i}.wav", tone(200.0 + 40 * i, seconds, noise=0.05, seed=i), SR)
    stereo = np.stack([tone(300.0, 3.7, 44100, noise=0.02, seed=9), tone(301.0, 3.7, 44100)], axis=1)
    sf.write(root / "f9_stereo_44k.wav", stereo, 44100, subtype="PCM_16")
    found = discover(root, "reference")
    return found, {f.path: content_hash(f.path) for f in found}


def _embed_long(files, encoder, cache_dir, monkeypatch, stream: bool, batch_size=3):
    monkeypatch.setattr(embedding_file, "STREAM_MIN_SECONDS", 3.0 if stream else float("inf"))
    monkeypatch.setattr(decoding, "BLOCK_FRAMES", 1000)  # many small blocks, none a multiple of the window or hop
    decoded = []
    real_decode = embedding_file.decode
    monkeypatch.setattr(embedding_file, "decode", lambda path, sr: decoded.append(path.name) or real_decode(path, sr))
    found, hashes = files
    result = embedding.embed_files(
        found, "reference", encoder, ArrayCache(cache_dir, encoder.cache_identity()), hashes, batch_size, 2, False
    )
    return result, decoded


@pytest.mark.parametrize("batch_size", [1, 3, 8])
def test_long_files_streamed_give_exactly_the_whole_file_embeddings(long_and_short, tmp_path, monkeypatch, batch_size):
    whole, whole_decoded = _embed_long(long_and_short, BatchSensitive(), tmp_path / "w", monkeypatch, False, batch_size)
    streamed, decoded = _embed_long(long_and_short, BatchSensitive(), tmp_path / "s", monkeypatch, True, batch_size)
    assert sorted(set(whole_decoded) - set(decoded)) == ["f1.wav", "f3.wav", "f9_stereo_44k.wav"]  # never whole
    assert list(streamed.embeddings) == list(whole.embeddings) and len(whole.embeddings) == 7
    for key, vector in whole.embeddings.items():
        np.testing.assert_array_equal(streamed.embeddings[key], vector, err_msg=key)  # same windows, same batches
    assert dataclasses.asdict(streamed.stats) == dataclasses.asdict(whole.stats)
    assert streamed.failures == whole.failures == []


def test_a_long_file_streamed_through_a_real_encoder(long_and_short, tmp_path, monkeypatch):
    encoder = MFCCStats(EncoderOptions(window=WindowPolicy(window_seconds=0.5, hop_seconds=0.25)))
    whole, _ = _embed_long(long_and_short, encoder, tmp_path / "w", monkeypatch, False)
    streamed, _ = _embed_long(long_and_short, encoder, tmp_path / "s", monkeypatch, True)
    for key, vector in whole.embeddings.items():
        np.testing.assert_array_equal(streamed.embeddings[key], vector, err_msg=key)
    # a worker (embed_one) streams the long file too, with the same rows
    monkeypatch.setattr(embedding_file, "STREAM_MIN_SECONDS", float("inf"))
    long_file = next(f for f in long_and_short[0] if f.key == "f1.wav")
    expected = embedding_file.embed_one(long_file, encoder, 3)
    monkeypatch.setattr(embedding_file, "STREAM_MIN_SECONDS", 3.0)
    assert embedding_file.streamed(encoder, long_file.path)
    got = embedding_file.embed_one(long_file, encoder, 3)
    assert (got.n_windows, got.n_samples) == (expected.n_windows, expected.n_samples)
    np.testing.assert_array_equal(got.rows, expected.rows)


def test_whole_file_policies_are_never_streamed(long_and_short, monkeypatch):
    monkeypatch.setattr(embedding_file, "STREAM_MIN_SECONDS", 0.0)
    assert not embedding_file.streamed(MFCCStats(), long_and_short[0][0].path)


def test_a_long_file_failing_mid_stream_is_a_decode_failure_and_the_others_carry_on(
    long_and_short, tmp_path, monkeypatch
):
    real_blocks = embedding_file.decode_blocks

    def failing(path, sample_rate):
        for n, block in enumerate(real_blocks(path, sample_rate)):
            if path.name == "f3.wav" and n == 40:
                raise data.AudioDecodeError(f"{path.name}: truncated or corrupt (test)")
            yield block

    monkeypatch.setattr(embedding_file, "decode_blocks", failing)
    result, _ = _embed_long(long_and_short, BatchSensitive(), tmp_path / "s", monkeypatch, True)
    assert [(f.key, f.stage, f.message) for f in result.failures] == [
        ("f3.wav", "decode", "f3.wav: truncated or corrupt (test)")
    ]
    assert "f3.wav" not in result.embeddings and len(result.embeddings) == 6
    assert result.stats.failed == 1 and result.stats.embedded == 6


@pytest.mark.parametrize("seed", range(40))
def test_window_stream_equals_segment(seed):
    rng = np.random.default_rng(seed)
    policy = WindowPolicy(
        window_seconds=float(rng.choice([0.3, 0.5, 1.0])),
        hop_seconds=rng.choice([None, 0.25, 0.5, 1.7]),
        pad_last=bool(rng.integers(2)),
        min_seconds=float(rng.choice([0.0, 0.2, 2.5])),
    )
    audio = rng.standard_normal(int(rng.integers(0, 60))).astype(np.float32)
    blocks = np.split(audio, np.sort(rng.integers(0, len(audio) + 1, size=int(rng.integers(0, 6)))))
    expected = policy.segment(audio, 10)
    got = [window for windows in policy.stream(iter(blocks), 10) for window in windows]
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    with pytest.raises(ValueError, match="whole-file"):
        next(WindowPolicy().stream(iter(blocks), 10))


@pytest.mark.slow
def test_clap_streamed_equals_clap_whole(random_weights, tmp_path, monkeypatch):
    """The real case: CLAP's 10 s windows (short last window, repeat-padded by the library) of a 44.1 kHz stereo
    file longer than STREAM_MIN_SECONDS, batched with a short file's, give bit-identical embeddings."""
    from encoders.clap import ClapEncoder

    encoder = ClapEncoder(EncoderOptions(weights=str(random_weights("clap")), batch_size=2))
    sf.write(tmp_path / "a_short.wav", tone(330.0, 4.0, 48000, noise=0.05), 48000)
    stereo = np.stack([tone(220.0, 23.5, 44100, noise=0.05, seed=1), tone(221.0, 23.5, 44100)], axis=1)
    sf.write(tmp_path / "b_long.wav", stereo, 44100, subtype="PCM_16")
    found = discover(tmp_path, "reference")
    files = (found, {f.path: content_hash(f.path) for f in found})
    monkeypatch.setattr(decoding, "BLOCK_FRAMES", 50_000)
    whole, _ = _embed_long(files, encoder, tmp_path / "w", monkeypatch, stream=False, batch_size=2)
    monkeypatch.setattr(embedding_file, "STREAM_MIN_SECONDS", 12.0)
    streamed = embedding.embed_files(
        found, "reference", encoder, ArrayCache(tmp_path / "s", encoder.cache_identity()), files[1], 2, 2, False
    )
    assert embedding_file.streamed(encoder, found[1].path)
    assert list(streamed.embeddings) == ["a_short.wav", "b_long.wav"]
    for key, vector in whole.embeddings.items():
        np.testing.assert_array_equal(streamed.embeddings[key], vector, err_msg=key)


def _faults_of_reused_arrays(rounds: int = 6) -> int:
    """Minor page faults of allocating, filling and freeing four 8 MB arrays ``rounds`` times after a first round:
    what a worker does from one file to the next (a decoded file, its frames, …)."""
    import resource

    def one_file() -> None:
        arrays = [np.ones(8 << 18, dtype=np.float32) for _ in range(4)]
        del arrays

    one_file()  # the first file (its pages are new either way)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(rounds):
        one_file()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_workers_reuse_the_memory_a_file_freed():
    """A worker's next file reuses the memory the previous one freed instead of faulting in fresh pages: with glibc's
    defaults, a fresh process faults ≈ 12,000 pages in anew for these 6 × 32 MB (measured)."""
    with parallel.process_pool(1, method="spawn") as pool:  # a fresh interpreter: glibc's default state
        in_worker = pool.submit(_faults_of_reused_arrays).result()
    assert in_worker < 6 * (32 << 20) // os.sysconf("SC_PAGE_SIZE") // 50
    assert parallel.HEAP_BLOCK_MAX >= 8 << 20  # the arrays above come from the heap
