"""Resource limits: one enormous file in bounded memory, a folder of thousands of tiny files in bounded time and
memory with visible progress, and a decode look-ahead that never submits a whole folder at once.

Peak memory is the child's own ``ru_maxrss``: each measured command runs under a small wrapper process whose
``RUSAGE_CHILDREN`` then holds that command alone (the pytest process's own children would mix in otherwise).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import soundfile as sf
from reliability_helpers import (
    SR,
    artifact_csv,
    cli_command,
    invoke,
    run_args,
    runs,
    subprocess_env,
    tone,
    tone_folder,
    wav_bytes,
)

from benchmark.parallel import prefetch_map

MEASURE = (
    "import json, resource, subprocess, sys, time; t = time.perf_counter(); "
    "p = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
    "print(json.dumps({'rc': p.returncode, 'seconds': time.perf_counter() - t, 'stdout': p.stdout, "
    "'stderr': p.stderr, 'peak_mb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))"
)
LONG_MINUTES = 20
LONG_RATE = 44100


def measured(command: list[str], env: dict[str, str] | None = None, timeout: float = 180) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", MEASURE, *command],
        capture_output=True,
        text=True,
        env=env or subprocess_env(),
        timeout=timeout,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def long_file(tmp_path_factory):
    """A 20-minute 44.1 kHz stereo PCM_16 file (212 MB), written 10 s at a time (never held in memory)."""
    root = tmp_path_factory.mktemp("long")
    (root / "refs").mkdir()
    (root / "targets").mkdir()
    t = np.arange(10 * LONG_RATE) / LONG_RATE
    with sf.SoundFile(root / "refs" / "twenty_minutes.wav", "w", LONG_RATE, 2, "PCM_16") as handle:
        for i in range(LONG_MINUTES * 6):
            left = 0.3 * np.sin(2 * np.pi * (220 + 5 * (i % 40)) * t)
            handle.write(np.stack([left, 0.8 * left], axis=1).astype(np.float32))
    sf.write(root / "targets" / "query.wav", tone(440.0, 2.0, sr=LONG_RATE), LONG_RATE)
    return root


@pytest.mark.slow
def test_decoding_an_enormous_file_streams(long_file):
    """Decode alone peaks near the *output* (22.05 kHz mono float32 = 106 MB), not the 44.1 kHz stereo input
    (423 MB as float32; holding it whole plus its mono mix peaked at ~750 MB before decode streamed)."""
    path = long_file / "refs" / "twenty_minutes.wav"
    script = (
        f"from benchmark.decoding import decode; a = decode({str(path)!r}, {SR}); "
        f"assert abs(len(a) - {LONG_MINUTES * 60 * SR}) <= 1"
    )
    result = measured([sys.executable, "-c", script])
    assert result["rc"] == 0, result["stderr"]
    output_mb = LONG_MINUTES * 60 * SR * 4 / 2**20
    print(f"decode of {LONG_MINUTES} min: peak RSS {result['peak_mb']:.0f} MB, {result['seconds']:.1f} s")
    assert result["peak_mb"] < 150 + 2.5 * output_mb  # interpreter + numpy/soundfile ≈ 100 MB, 2× output


@pytest.mark.slow
def test_mfcc_run_on_an_enormous_file_stays_under_1_5_gb(long_file, tmp_path):
    """The whole CLI run (whole-file MFCC of 20 min) in bounded memory. ``--metrics none``: the melody metric
    (metrics/melody.py) is measured separately in the report (its chroma of the whole file at 44.1 kHz)."""
    command = cli_command(
        *run_args("mfcc", str(long_file / "refs"), str(long_file / "targets"), str(tmp_path / "cache"), "long-file"),
        "--metrics",
        "none",
        "--no-progress",
    )
    result = measured(command)
    assert result["rc"] == 0, result["stderr"]
    print(f"mfcc run on {LONG_MINUTES} min: peak RSS {result['peak_mb']:.0f} MB, {result['seconds']:.1f} s")
    assert result["peak_mb"] < 1536
    (run,) = runs("long-file")
    assert run.info.status == "FINISHED" and run.data.metrics["count/n_failed"] == 0


# 10,000 tiny files, scaled down 5× to keep the suite fast: 2,000 references of 0.05 s (+ 8 targets).
# Measured on 2 loaded cores: ~2 ms/file hash+decode+cache, ~5 ms/file MFCC (librosa per-call overhead).
N_TINY, TINY_SECONDS = 2000, 0.05


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    (root / "refs").mkdir()
    (root / "targets").mkdir()
    base = tone(440.0, TINY_SECONDS)
    header = wav_bytes(base)[:44]  # every file has the same length: one header, different samples
    rng = np.random.default_rng(0)
    for i in range(N_TINY):
        samples = (base * (0.5 + rng.random()) * 32767 * 0.9).astype("<i2")
        (root / "refs" / f"t{i:05d}.wav").write_bytes(header + samples.tobytes())
    for i in range(8):
        sf.write(root / "targets" / f"q{i}.wav", tone(300.0 + 40 * i, TINY_SECONDS, noise=0.1, seed=i), SR)
    return root


@pytest.mark.slow
def test_thousands_of_tiny_files_complete_with_progress_in_bounded_time_and_memory(tiny_folder, tmp_path):
    command = cli_command(
        *run_args("mfcc", tiny_folder / "refs", tiny_folder / "targets", tmp_path / "cache", "tiny-files"),
        "--metrics",
        "none",
    )  # progress on (stderr): a subprocess has no terminal, so it is written as lines
    result = measured(command, timeout=240)
    assert result["rc"] == 0, result["stderr"][-3000:]
    (run,) = runs("tiny-files")
    metrics = run.data.metrics
    print(
        f"{N_TINY} tiny files: peak RSS {result['peak_mb']:.0f} MB, wall {result['seconds']:.1f} s, "
        f"embed {metrics['timing/embed_seconds']:.1f} s"
    )
    assert (
        metrics["count/n_refs"] == N_TINY
        and metrics["count/n_failed"] == 0
        and metrics["count/n_embedded"] == N_TINY + 8
    )
    counts = [int(n) for n in re.findall(r"embed references \(mfcc\): (?:done, )?(\d+)/2000 files", result["stderr"])]
    assert len(set(counts)) >= 3 and counts == sorted(counts), "progress advances"
    assert result["peak_mb"] < 800
    assert metrics["timing/embed_seconds"] < 90  # ~10-25 s measured on 2 busy cores; generous for slower machines


def test_prefetch_never_has_more_than_depth_items_in_flight():
    pulled, in_flight, peak, lock = [], [0], [0], threading.Lock()

    def items():
        for i in range(10_000):
            pulled.append(i)
            yield i

    def work(i):
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
        time.sleep(0.0005)
        with lock:
            in_flight[0] -= 1
        return i

    iterator = prefetch_map(work, items(), workers=2)
    first_item, first = next(iterator)
    assert first_item == 0 and first.result() == 0
    assert len(pulled) <= 4, "submitted more than the look-ahead depth (2 × workers)"
    done = 1
    for item, future in iterator:
        assert future.result() == item
        done += 1
        assert len(pulled) - done <= 4  # never more than `depth` submitted and not yet consumed
        if done == 300:
            break
    assert peak[0] <= 2


def test_embed_stage_decodes_only_a_bounded_look_ahead(tmp_path, monkeypatch):
    """Through embed_files: when the encoder sees file n, at most ``depth`` further files have been decoded."""
    from benchmark import embedding, embedding_file
    from benchmark.cache import ArrayCache
    from benchmark.data import content_hash, discover
    from encoders.mfcc import MFCCStats

    for i in range(40):
        (tmp_path / f"f{i:02d}.wav").write_bytes(wav_bytes(tone(200.0 + 10 * i, 0.1)))
    files = discover(tmp_path, "reference")
    decoded, gaps = [], []
    original_decode, original_embed = embedding_file.decode, MFCCStats.embed

    def counting_decode(path, rate):
        decoded.append(path)
        return original_decode(path, rate)

    def recording_embed(self, batch):
        gaps.append(len(decoded) - (len(gaps) + 1))
        return original_embed(self, batch)

    monkeypatch.setattr(embedding_file, "decode", counting_decode)
    monkeypatch.setattr(MFCCStats, "embed", recording_embed)
    result = embedding.embed_files(
        files,
        "reference",
        MFCCStats(),
        ArrayCache(None, {}),
        {f.path: content_hash(f.path) for f in files},
        batch_size=1,
        workers=2,
        progress=False,
    )
    assert result.stats.embedded == 40 and len(decoded) == 40
    assert max(gaps) <= 4, gaps


def test_one_bad_file_in_a_large_folder_does_not_stop_the_rest(tmp_path):
    """A bad file in the middle of a folder: the files after it are embedded and logged too."""
    tone_folder(tmp_path / "refs", 12, 0.3)
    (tmp_path / "refs" / "f0005.wav").write_bytes(b"broken")
    tone_folder(tmp_path / "targets", 2, 0.3, start_hz=300.0, prefix="q")
    result = invoke(
        *run_args("mfcc", str(tmp_path / "refs"), str(tmp_path / "targets"), str(tmp_path / "cache"), "one-bad"),
        "--metrics",
        "none",
        "--no-progress",
    )
    assert result.exit_code == 0, result.output
    (run,) = runs("one-bad")
    assert run.info.status == "FINISHED"
    assert run.data.metrics["count/n_refs"] == 11 and run.data.metrics["count/n_failed"] == 1  # files after it included
    failures = artifact_csv(run.info.run_id, "failures.csv")
    assert list(failures["file"]) == ["f0005.wav"]
    assert len(artifact_csv(run.info.run_id, "tables/per_target.csv")) == 2
